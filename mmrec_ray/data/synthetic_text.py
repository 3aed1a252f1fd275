"""Vocabulary of the synthetic insurer: items, website tags, services and the English sentence templates.

Everything here is a constant (independent of the generator's seed), so tag and keyword IDs are stable across
seeds and scales. ``mmrec_ray.data.synthetic`` turns these tables into numpy lookup arrays.

The tag ID space is shared by action tags (website section / object / type) and conversation keywords: a keyword
for a concept gets the ID of the website tag for the same concept (e.g. the word "roadside" maps to the tag of the
roadside-assistance product page). Concepts that only exist on the phone (some coverages) get keyword IDs that no
action uses. A few rare legacy tags exist so that the 0.1 % frequency filter has something to remove.
"""

from __future__ import annotations

import re

import numpy as np

# ------------------------------------------------------------------------------------------------ items
# item_id -> (name, base item_id or None for a base product, visibility, surface forms used in sentences,
#             distinctive words that the keyword extractor maps to this item's ID)
# visibility: "both" = named on the website and on the phone; "conversation" = no product page (sessions only
# show the base product); "session" = agents never name it (conversations only mention the base product).
ITEMS: dict[int, tuple[str, int | None, str, tuple[str, ...], tuple[str, ...]]] = {
    1: (
        "roadside assistance",
        4,
        "both",
        ("roadside assistance", "roadside help", "towing cover"),
        ("roadside", "towing"),
    ),
    2: ("glass cover", 4, "session", ("windscreen cover",), ("windscreen",)),
    3: (
        "rental car cover",
        4,
        "both",
        ("rental car cover", "replacement vehicle cover"),
        ("rental", "replacement"),
    ),
    4: (
        "car insurance",
        None,
        "both",
        ("car insurance", "motor insurance", "insurance for my car"),
        ("car", "motor"),
    ),
    5: ("pipe damage cover", 18, "both", ("pipe damage cover", "cover for burst pipes"), ("pipe", "pipes")),
    6: (
        "electronics cover",
        8,
        "both",
        ("electronics cover", "cover for my laptop and phone"),
        ("electronics", "laptop"),
    ),
    7: ("accident insurance", None, "both", ("accident insurance", "personal accident cover"), ("accident",)),
    8: (
        "contents insurance",
        None,
        "both",
        ("contents insurance", "household contents insurance"),
        ("contents", "household"),
    ),
    9: (
        "chewing injury cover",
        7,
        "conversation",
        ("chewing injury cover", "cover for broken teeth when chewing"),
        ("chewing",),
    ),
    10: (
        "extreme sports cover",
        7,
        "conversation",
        ("extreme sports cover", "cover for climbing and diving"),
        ("sports", "climbing"),
    ),
    11: ("dental injury cover", 7, "both", ("dental injury cover", "dental cover"), ("dental",)),
    12: ("bicycle cover", 8, "session", ("bike cover",), ("bike",)),
    13: ("dog insurance", None, "both", ("dog insurance", "pet insurance for my dog"), ("dog", "pet")),
    14: ("vet expenses cover", 13, "both", ("vet expenses cover", "veterinary cover"), ("vet", "veterinary")),
    15: (
        "dog liability cover",
        13,
        "conversation",
        ("dog liability cover", "liability cover for the dog"),
        ("liability",),
    ),
    16: ("travel insurance", None, "both", ("travel insurance", "insurance for my trip"), ("travel", "trip")),
    17: (
        "motorcycle insurance",
        None,
        "both",
        ("motorcycle insurance", "motorbike insurance"),
        ("motorcycle", "motorbike"),
    ),
    18: (
        "house insurance",
        None,
        "both",
        ("house insurance", "homeowner insurance", "building insurance"),
        ("house", "homeowner", "building"),
    ),
    19: (
        "cancellation cover",
        16,
        "both",
        ("cancellation cover", "cover if I have to cancel"),
        ("cancellation", "cancel"),
    ),
    20: ("motorcycle roadside cover", 17, "session", ("breakdown cover",), ("breakdown",)),
    21: ("legal aid cover", 18, "both", ("legal aid cover", "legal expenses cover"), ("legal",)),
    22: (
        "holiday home insurance",
        None,
        "both",
        ("holiday home insurance", "cottage insurance"),
        ("holiday", "cottage"),
    ),
    23: ("storm flood cover", 22, "both", ("storm and flood cover", "flood cover"), ("storm", "flood")),
    24: (
        "home emergency cover",
        18,
        "both",
        ("home emergency cover", "emergency plumber cover"),
        ("emergency", "plumber"),
    ),
}
NUM_ITEMS = 24
# What a caller says about an item without naming it (no word of the keyword mapping): the situation, not the
# product. Only items that are talked about on the phone have them. A keyword extractor finds nothing here; a
# sentence encoder still places each near its product.
UNNAMED: dict[int, tuple[str, ...]] = {
    1: ("someone who comes out if I break down on the motorway", "help when the engine stops on the road"),
    3: ("another vehicle while mine is at the garage", "something to drive while mine is being repaired"),
    4: ("the new Volvo I just got", "the vehicle I drive to work every day"),
    5: ("water leaking inside the walls", "a leak under the kitchen sink"),
    6: ("my phone and tablet if they get broken", "a cracked screen on my tablet"),
    7: ("getting hurt in my spare time", "an injury that keeps me off work"),
    8: ("my furniture and belongings", "someone stealing my things from the flat"),
    9: ("breaking a tooth on something hard while eating",),
    10: ("getting hurt while skiing or paragliding",),
    11: ("knocking out a tooth in a fall",),
    13: ("our new puppy", "the puppy we just got from the breeder"),
    14: ("the animal clinic bills when the puppy is ill",),
    15: ("our puppy biting someone in the park",),
    16: ("falling ill abroad this summer", "when we fly to Spain in July"),
    17: ("my new Harley", "the scooter I ride to work"),
    18: ("the roof and walls of the place we own", "the place we just bought"),
    19: ("getting my money back if we cannot fly after all",),
    21: ("a lawyer if I end up in a dispute",),
    22: ("our summer place by the sea", "the little place we rent out in summer"),
    23: ("heavy rain filling the basement with water", "wind tearing tiles off the roof"),
    24: ("someone to fix the boiler at night", "a broken heating system in winter"),
}
BASE_ITEMS = tuple(i for i, spec in ITEMS.items() if spec[1] is None)

# ------------------------------------------------------------------------------------------------ website tags
SECTIONS = ("frontpage", "ecommerce", "claims", "information", "account")
ACTION_TYPES = ("view", "click", "calculate_price", "select_coverage", "add_to_basket", "checkout", "submit_form",
                "download", "search", "login")  # fmt: skip
# Services: name -> (website section, conversation surface forms, keyword words). Empty surfaces = web only.
SERVICES: dict[str, tuple[str, tuple[str, ...], tuple[str, ...]]] = {
    "payment": ("information", ("my payment", "the monthly payment", "my invoice"), ("payment", "invoice")),
    "contact": ("information", (), ()),
    "address": ("account", ("my address", "my new address"), ("address",)),
    "documents": (
        "account",
        ("my policy documents", "the insurance certificate"),
        ("documents", "certificate"),
    ),
    "faq": ("information", (), ()),
    "claim_form": ("claims", (), ()),
    "price_overview": ("ecommerce", ("the prices", "a price overview"), ("prices", "overview")),
    "newsletter": ("account", (), ()),
    "profile": ("account", ("my profile", "my login"), ("profile", "login")),
    "password": ("account", ("my password",), ("password",)),
    "policy_overview": ("account", ("my policies", "the insurances I have"), ("policies",)),
    "bank_details": ("account", ("my bank details", "my account number"), ("bank",)),
    "opening_hours": ("information", (), ()),
    "damage_photos": ("claims", (), ()),
    "discount": ("ecommerce", ("a discount", "the customer discount"), ("discount",)),
    "moving": ("information", ("moving to a new place", "my move"), ("move", "moving")),
    "family": ("account", ("my family members", "my partner"), ("family", "partner")),
    "renewal": ("account", ("the renewal", "renewing my policy"), ("renewal", "renewing")),
    "cancel_policy": ("information", ("terminating an insurance",), ("terminating",)),
}
# Claim keywords: "claim" -> the claim form tag, "damage" -> the claims section tag.
CLAIM_WORDS = {"claim": "object:claim_form", "damage": "section:claims"}
# Generic words that a noun-based extractor would also pick up (map to the matching action type tags).
GENERIC_WORDS = {"price": "type:calculate_price", "quote": "type:calculate_price", "buy": "type:checkout"}
NUM_RARE_TAGS = 20  # legacy website objects, used so rarely that the 0.1 % filter drops them


def _tag_names() -> list[str]:
    names = [f"section:{s}" for s in SECTIONS] + [f"type:{t}" for t in ACTION_TYPES]
    names += [f"object:{s}" for s in SERVICES]
    names += [f"object:item{i}" for i, spec in ITEMS.items() if spec[2] != "conversation"]
    names += [
        f"keyword:item{i}" for i, spec in ITEMS.items() if spec[2] == "conversation"
    ]  # phone-only concepts
    names += [f"object:legacy{r}" for r in range(NUM_RARE_TAGS)]
    return names


TAG_NAMES: tuple[str, ...] = tuple(_tag_names())
# A fixed permutation spreads the IDs over 1..150 so nothing can rely on them being contiguous.
_ID_LAYOUT = np.random.default_rng(20240714).permutation(np.arange(1, 151))
TAG_ID: dict[str, int] = {name: int(_ID_LAYOUT[i]) for i, name in enumerate(TAG_NAMES)}


def item_tag_name(item_id: int) -> str:
    kind = "keyword" if ITEMS[item_id][2] == "conversation" else "object"
    return f"{kind}:item{item_id}"


def keyword_mapping() -> dict[str, int]:
    """Content word -> keyword ID (shared with the action tag ID space)."""
    mapping: dict[str, int] = {}
    for item_id, (_, _, _, _, words) in ITEMS.items():
        for word in words:
            mapping[word] = TAG_ID[item_tag_name(item_id)]
    for service, (_, _, words) in SERVICES.items():
        for word in words:
            mapping[word] = TAG_ID[f"object:{service}"]
    for word, tag in {**CLAIM_WORDS, **GENERIC_WORDS}.items():
        mapping[word] = TAG_ID[tag]
    return mapping


_WORD = re.compile(r"[a-z]+")


def extract_keywords(text: str, mapping: dict[str, int]) -> list[int]:
    """Keyword IDs of the mapped words in ``text``, in order of first appearance, without repeats."""
    found: list[int] = []
    for word in _WORD.findall(text.lower()):
        keyword_id = mapping.get(word)
        if keyword_id is not None and keyword_id not in found:
            found.append(keyword_id)
    return found


# ------------------------------------------------------------------------------------------------ sentences
# "{x}" is the concept's surface form. Separate pools per speaker; both mention the concept.
ITEM_TEMPLATES = {
    "user": (
        "I would like to hear about {x}.",
        "I'm calling because I'm thinking about {x}.",
        "How much would {x} cost me?",
        "Can I add {x} to what I already have?",
        "My neighbour told me I should get {x}.",
        "What exactly does {x} cover?",
        "I was looking at {x} on your website yesterday.",
        "Is {x} worth it in my situation?",
        "Do you have a good price on {x}?",
        "I think I want to buy {x} today.",
        "We just talked about {x} at home.",
        "Could you send me an offer for {x}?",
    ),
    "agent": (
        "Let me find a price for {x}.",
        "I can set up {x} for you right away.",
        "With {x} you are covered from tomorrow.",
        "Would you like me to add {x}?",
        "Many customers in your situation choose {x}.",
        "I'll send you a quote for {x} by email.",
        "Let me explain what {x} includes.",
        "The price of {x} depends on a few details.",
        "You can also buy {x} online if you prefer.",
        "I can see that you asked about {x} before.",
    ),
}
UNNAMED_TEMPLATES = {
    "user": (
        "I'm worried about {x}.",
        "What happens with {x}?",
        "We need something for {x}.",
        "I want to be covered for {x}.",
        "Is there anything you can do about {x}?",
        "My neighbour said you have something for {x}.",
    ),
    "agent": (
        "We have something for {x}.",
        "Let me see what covers {x}.",
        "Many customers ask about {x}.",
        "I can set that up for {x} right away.",
    ),
}
SERVICE_TEMPLATES = {
    "user": (
        "I have a question about {x}.",
        "I need to change {x}.",
        "Something is wrong with {x}.",
        "Can you help me with {x}?",
        "I couldn't find {x} on the website.",
    ),
    "agent": (
        "I can help you with {x}.",
        "Let me look at {x} for you.",
        "I have updated {x} now.",
        "You can also manage {x} in your account online.",
    ),
}
CLAIM_TEMPLATES = {
    "user": (
        "I need to report a claim on my {x}.",
        "There was damage covered by my {x}.",
        "Something happened and I want to use my {x}.",
        "I'm calling about the claim on my {x}.",
        "Will my {x} pay for this damage?",
    ),
    "agent": (
        "I have registered the claim on your {x}.",
        "Let me check what your {x} covers for this damage.",
        "Your {x} covers this, we will contact you about the claim.",
        "Please send us photos of the damage for your {x} claim.",
    ),
}
FILLERS = {
    "greeting": {
        "user": ("Hello?", "Hi, can you hear me?", "Hello, yes, good morning.", "Hi there."),
        "agent": (
            "Welcome to customer service, how can I help you?",
            "Good morning, you are speaking with customer service.",
            "Hello, thank you for calling, what can I do for you?",
            "Can you hear me?",
        ),
    },
    "hold": {
        "user": ("Just a second, I need to find my papers.", "Sorry, could you repeat that?", "Hold on."),
        "agent": (
            "One moment please.",
            "Let me check that for you.",
            "Thank you for waiting.",
            "Can I have your customer number?",
            "I'm just looking at your details.",
            "Bear with me, the system is a little slow today.",
        ),
    },
    "acknowledge": {
        "user": (
            "Yes.",
            "Okay.",
            "Yes, that's right.",
            "No, that's fine.",
            "Mm-hmm.",
            "Alright, thank you.",
            "I see.",
        ),
        "agent": ("Okay.", "Perfect.", "Yes, exactly.", "Great, thank you.", "I understand.", "Of course."),
    },
    "closing": {
        "user": ("Thank you, goodbye.", "That was all, thanks.", "Bye."),
        "agent": (
            "Is there anything else I can help you with?",
            "Have a nice day, goodbye.",
            "Thank you for calling, goodbye.",
        ),
    },
}
FILLER_KINDS = tuple(FILLERS)
