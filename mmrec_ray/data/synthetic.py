"""Synthetic insurance data in the released format (SPEC 2.1) plus raw text (SPEC 2.2) — the embedded default.

``generate(out_dir, scale, seed, text=True)`` writes ``data_users.csv``, ``data_purchase_events.csv``,
``data_post_filter.csv``, ``data_sessions.csv``, ``data_conversations_keyword.csv``, ``keyword_mapping.csv``,
``generation_info.json`` and either ``data_conversations_text.csv`` (text mode: the project's encoder embeds it
later) or ``data_conversations_embedding/data_conversations_embedding_{1..N}.csv`` (``text=False``: vectors that
carry the same signal as the text would). At ``scale=1`` every statistic of SPEC 2.1 is reproduced: counts of
users, purchase events (PEs), purchases per item, items per PE, events per PE, PE types, unique conversations and
sessions are exact up to rounding (they are apportioned, not sampled); smaller scales keep the proportions.

What is planted where (all strengths are fields of ``SyntheticParams``)
-----------------------------------------------------------------------
* **Latent need.** Each PE has a need: a primary item and, for multi-item PEs, further items mostly of the same
  product family (a base product and its coverages; ``family_affinity``). Purchases are drawn from the need so
  that the per-item totals are exact. Every informative event below is generated *from* the need.
* **Sessions** (3 tags per action: section, object, type). A new session is about the need with probability
  ``session_signal × recency_decay^age`` (age = events between it and the purchase); then its actions show the
  item's product page (ecommerce section; view / calculate price / select coverage / basket types), a share
  ``action_noise`` of actions being background browsing. Other sessions browse a background topic (another
  product, a service page such as payment or address, a claim).
* **Conversations** (English sentences, both speakers). A new conversation is about the need with probability
  ``conversation_signal × recency_decay^age``; a share ``filler_rate`` of its body is filler ("One moment
  please", "Can you hear me?"), and a share ``sentence_noise`` of its topical sentences mention a background
  concept. The need shows in the text (product names, several surface forms each) and in the keywords, which are
  extracted from that text with ``keyword_mapping.csv`` and live in the action-tag ID space (the word "roadside"
  has the ID of the roadside-assistance page tag).
* **Single-modality signal.** Coverages 9, 10, 15 have no product page: sessions can only show their base
  product, so only conversations tell them apart. Coverages 2, 12, 20 are never named on the phone (agents
  talk about the base product), so only sessions tell them apart.
* **Cross-modal order.** With probability ``order_signal`` a PE that buys a coverage and has both modalities gets
  a claim call about the coverage's base product *followed by* a session browsing that coverage. With
  probability ``order_decoy`` a PE gets the same pair in the *reverse* order (browsing a coverage, then a claim
  call) for a coverage it does not buy. Only a model that sees event order can tell these apart.
* **History.** A later PE of a user re-includes the most recent events of the user's previous PE (the release's
  behaviour); those events were generated from the earlier need, so they are mostly noise for the later PE.
* **Embeddings** (``text=False``): sentence vector = ``embedding_signal`` × direction of the sentence's concept
  (coverages lean towards their base product, fillers have their own directions) + ``phrase_jitter`` × a
  per-phrase direction + isotropic noise of norm ≈ ``embedding_noise``; float32 with 4 decimals.
* **Post-filter.** Items are 8 base products and 16 coverages, each coverage belonging to one base. Before their
  first PE, users own each base product with probability ``base_ownership``; a coverage bought without its base
  implies the base is owned; purchases accumulate over a user's PEs. As in the paper only coverages are
  filtered: a PE's post-filter = every base product (a second car, a new house) + the coverages not owned yet
  whose base is owned or bought in the PE + everything bought in the PE. Multi-item PEs bundle base products
  with weight ``bundle_affinity``, which calibrates Popular's HR@3 on the test split (≈ 0.46 at scale 1).
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from mmrec_ray.data import synthetic_text as vocab
from mmrec_ray.io import atomic_write, atomic_write_json

# ------------------------------------------------------------------------------------------------ targets
# SPEC 2.1: statistics of the released dataset, reproduced at scale 1.
RELEASE_STATS = {
    "users": 51_877,
    "purchase_events": 62_401,
    "purchase_rows": 93_006,
    "pe_types": {"conversations_only": 8_266, "sessions_only": 42_530, "intersection": 11_605},
    "events_per_pe": [29_543, 13_630, 7_062, 4_002, 2_483, 1_568, 1_001, 720, 561, 1_831],
    "items_per_pe": [45_325, 9_143, 4_183, 2_330, 1_085, 269, 52, 7, 3, 4],
    "purchases_per_item": [
        3745,
        2499,
        2057,
        10223,
        1974,
        3970,
        8704,
        8304,
        622,
        569,
        1060,
        1959,
        5164,
        1754,
        1372,
        5627,
        4783,
        12429,
        2295,
        554,
        2993,
        5039,
        1030,
        4280,
    ],  # fmt: skip
    "unique_conversations": 25_515,
    "conversation_events": 27_343,
    "unique_sessions": 115_045,
    "session_events": 124_603,
}
MAX_EVENTS = 10
MAX_SENTENCES = 541
MIN_SENTENCES = 4
MIN_ACTIONS, MAX_ACTIONS = 3, 40
EMBEDDING_DIR = "data_conversations_embedding"
FILES = {
    "data_users.csv": ["user_id", "purchase_event_id", "event_number", "conversation_id", "session_id"],
    "data_purchase_events.csv": ["purchase_event_id", "item_id"],
    "data_post_filter.csv": ["purchase_event_id", "item_id"],
    "data_sessions.csv": ["session_id", "action_number", "action_tags"],
    "data_conversations_keyword.csv": ["conversation_id", "sentence_number", "sentence_speaker", "keywords"],
    "data_conversations_text.csv": ["conversation_id", "sentence_number", "sentence_speaker", "text"],
    "keyword_mapping.csv": ["word", "keyword_id"],
}
SPEAKERS = ("user", "agent")


@dataclass(frozen=True)
class SyntheticParams:
    """Knobs of the generator. Signal strengths first (the ones to calibrate), then shapes."""

    # Calibrated in docs/calibration.md: 0.6 put Web Session at HR@3 0.76 on sessions-only at scale 0.2 (paper 0.66).
    session_signal: float = 0.45  # P(a new session is about the PE's need), event right before purchase
    conversation_signal: float = 0.65  # same for a new conversation
    recency_decay: float = 0.85  # the P above is multiplied by this per event further back in time
    reveal_primary: float = 0.75  # an informative event shows the primary item (else another purchased item)
    action_noise: float = 0.35  # share of actions of a session drawn from background browsing
    sentence_noise: float = 0.3  # share of topical sentences that mention a background concept
    filler_rate: float = 0.5  # share of a conversation's body sentences that are filler
    order_signal: float = 0.35  # P(a both-modality PE buying a coverage gets claim call -> browse coverage)
    order_decoy: float = 0.2  # P(a both-modality PE gets browse coverage -> claim call, coverage not bought)
    family_affinity: float = 25.0  # multi-item PEs: weight of same-family items relative to other items
    bundle_affinity: float = (
        4.0  # multi-item PEs: weight of another base product (bundles); calibrates Popular
    )
    base_ownership: float = 0.3  # P(a user owns a base product before the first PE): shapes the post-filter
    history_reuse: float = 0.8  # P(each slot of a later PE re-includes the previous PE's event), budgeted
    phone_preference: float = (
        1.0  # spread of a per-user propensity for calls (a user's PEs alike in modality)
    )
    history_length_bias: float = 1.5  # later PEs of a user get more events (Gumbel-key bonus)
    embedding_signal: float = 1.0  # text=False: weight of the concept direction in a sentence vector
    phrase_jitter: float = 0.5  # text=False: weight of the per-phrase direction (templates differ)
    embedding_noise: float = 1.0  # text=False: norm of the isotropic Gaussian noise
    conversation_length_median: float = 26.0  # sentences (lognormal body, capped at 541)
    conversation_length_sigma: float = 1.0
    session_length_median: float = 7.0  # actions (lognormal, clipped to 3..40)
    session_length_sigma: float = 0.7
    rare_tag_rate: float = 1e-4  # share of actions whose object is a rare legacy tag (filtered at 0.1 %)


# ------------------------------------------------------------------------------------------------ concepts
class _Concepts:
    """Numpy lookup tables over concepts: 24 items, services, a claim per base product, filler kinds."""

    def __init__(self) -> None:
        tag = vocab.TAG_ID
        self.items = list(range(1, vocab.NUM_ITEMS + 1))
        self.services = list(vocab.SERVICES)
        self.bases = list(vocab.BASE_ITEMS)
        n_items, n_serv, n_base = len(self.items), len(self.services), len(self.bases)
        self.service0 = n_items
        self.claim0 = n_items + n_serv
        self.filler0 = self.claim0 + n_base
        self.n = self.filler0 + len(vocab.FILLER_KINDS)
        self.base_of_item = np.array([vocab.ITEMS[i][1] or 0 for i in self.items]) - 1  # -1 for base products
        self.is_base = self.base_of_item < 0
        self.claim_of_base_item = {b - 1: self.claim0 + k for k, b in enumerate(self.bases)}
        visibility = [vocab.ITEMS[i][2] for i in self.items]
        # Concept shown in a session / said in a conversation when an event is about item index j.
        self.session_concept_of_item = np.array(
            [self.base_of_item[j] if visibility[j] == "conversation" else j for j in range(n_items)]
        )
        self.conversation_concept_of_item = np.array(
            [self.base_of_item[j] if visibility[j] == "session" else j for j in range(n_items)]
        )
        # Session tables: section tag, two candidate object tags, allowed type tags.
        types = {t: tag[f"type:{t}"] for t in vocab.ACTION_TYPES}
        self.section = np.zeros(self.n, dtype=np.int64)
        self.objects = np.zeros((self.n, 2), dtype=np.int64)
        self.type_table = np.zeros((self.n, 6), dtype=np.int64)
        self.type_count = np.zeros(self.n, dtype=np.int64)

        def set_types(c: int, names: tuple[str, ...]) -> None:
            self.type_table[c, : len(names)] = [types[t] for t in names]
            self.type_count[c] = len(names)

        shop_types = ("view", "click", "calculate_price", "select_coverage", "add_to_basket", "checkout")
        for j in range(n_items):
            shown = self.session_concept_of_item[j]
            self.section[j] = tag["section:ecommerce"]
            self.objects[j] = tag[vocab.item_tag_name(shown + 1)]
            set_types(j, shop_types)
        for k, name in enumerate(self.services):
            c = self.service0 + k
            self.section[c] = tag[f"section:{vocab.SERVICES[name][0]}"]
            self.objects[c] = tag[f"object:{name}"]
            set_types(c, ("view", "click", "search", "submit_form", "download"))
        for k, b in enumerate(self.bases):
            c = self.claim0 + k
            self.section[c] = tag["section:claims"]
            self.objects[c] = (tag[vocab.item_tag_name(b)], tag["object:claim_form"])
            set_types(c, ("view", "click", "submit_form", "download"))
        # Which concepts a conversation can be about, and its phrase pools.
        self.conversation_ok = np.zeros(self.n, dtype=bool)
        self.conversation_ok[:n_items] = True
        self.conversation_ok[self.claim0 : self.filler0] = True
        for k, name in enumerate(self.services):
            self.conversation_ok[self.service0 + k] = bool(vocab.SERVICES[name][1])
        self._build_phrases()

    def _build_phrases(self) -> None:
        mapping = vocab.keyword_mapping()
        texts: list[str] = []
        offsets = np.zeros((self.n, 2), dtype=np.int64)
        counts = np.zeros((self.n, 2), dtype=np.int64)
        for c in range(self.n):
            for s, speaker in enumerate(SPEAKERS):
                pool = self._phrases(c, speaker)
                offsets[c, s], counts[c, s] = len(texts), len(pool)
                texts.extend(pool)
        self.phrase_text = np.array(texts, dtype=object)
        self.phrase_keywords = np.array(
            [",".join(str(k) for k in vocab.extract_keywords(t, mapping)) for t in texts], dtype=object
        )
        self.phrase_concept = np.repeat(np.arange(self.n), counts.sum(axis=1))
        self.phrase_offset, self.phrase_count = offsets, counts

    def _phrases(self, c: int, speaker: str) -> list[str]:
        if c < self.service0:
            surfaces = vocab.ITEMS[c + 1][3]
            templates = vocab.ITEM_TEMPLATES[speaker]
        elif c < self.claim0:
            surfaces = vocab.SERVICES[self.services[c - self.service0]][1]
            templates = vocab.SERVICE_TEMPLATES[speaker]
        elif c < self.filler0:
            surfaces = vocab.ITEMS[self.bases[c - self.claim0]][3][:1]
            templates = vocab.CLAIM_TEMPLATES[speaker]
        else:
            return list(vocab.FILLERS[vocab.FILLER_KINDS[c - self.filler0]][speaker])
        return [t.format(x=s) for t in templates for s in surfaces]

    def filler(self, kind: str) -> int:
        return self.filler0 + vocab.FILLER_KINDS.index(kind)


# ------------------------------------------------------------------------------------------------ helpers
def apportion(weights, total: int) -> np.ndarray:
    """Integer counts proportional to ``weights`` summing exactly to ``total`` (largest remainder)."""
    weights = np.asarray(weights, dtype=np.float64)
    raw = weights / weights.sum() * total
    counts = np.floor(raw).astype(np.int64)
    short = int(total - counts.sum())
    if short > 0:
        counts[np.argsort(-(raw - counts), kind="stable")[:short]] += 1
    return counts


def _weighted_top(
    rng: np.random.Generator, candidates: np.ndarray, weights: np.ndarray, k: int
) -> np.ndarray:
    """Sample ``k`` of ``candidates`` without replacement with probability ∝ weights (Gumbel top-k)."""
    k = min(k, len(candidates))
    keys = np.log(weights) + rng.gumbel(size=len(candidates))
    return candidates[np.argsort(-keys, kind="stable")[:k]]


def _draw(rng: np.random.Generator, probabilities: np.ndarray, size: int) -> np.ndarray:
    return np.searchsorted(
        np.cumsum(probabilities / probabilities.sum()), rng.random(size), side="right"
    ).clip(0, len(probabilities) - 1)


@dataclass
class SyntheticData:
    """In-memory result of ``build`` (all ids 1-based as in the files)."""

    users: pa.Table
    purchases: pa.Table
    post_filter: pa.Table
    sessions: pa.Table
    conversations: pa.Table  # conversation_id, sentence_number, sentence_speaker, keywords, text
    sentence_concept: np.ndarray  # (sentences,) concept index, for the embeddings
    sentence_phrase: np.ndarray  # (sentences,) phrase index
    sentence_speaker: np.ndarray  # (sentences,) 0 = user, 1 = agent
    info: dict


# ------------------------------------------------------------------------------------------------ build
def build(scale: float = 1.0, seed: int = 0, params: SyntheticParams | None = None) -> SyntheticData:
    """Generate every table in memory (no embeddings). Deterministic for (scale, seed, params)."""
    if not scale > 0:
        raise ValueError(f"scale must be positive, got {scale}")
    params = params or SyntheticParams()
    rng = np.random.default_rng(seed)
    concepts = _Concepts()
    stats = RELEASE_STATS

    # --- users and purchase events, ids in time order ------------------------------------------------
    n_users = max(1, round(scale * stats["users"]))
    n_pe = max(n_users, round(scale * stats["purchase_events"]))
    pes_per_user = np.ones(n_users, dtype=np.int64)
    extra = n_pe - n_users
    n_multi = min(n_users, round(extra * 0.7))
    multi = rng.choice(n_users, n_multi, replace=False)
    pes_per_user[multi] += 1
    if extra > n_multi:
        np.add.at(pes_per_user, rng.choice(multi, extra - n_multi), 1)
    user_of = np.repeat(np.arange(n_users), pes_per_user)
    starts = np.cumsum(pes_per_user) - pes_per_user
    gaps = rng.exponential(0.04, n_pe)
    gaps[starts] = 0.0
    cum = np.cumsum(gaps)
    times = rng.random(n_users)[user_of] + cum - cum[starts][user_of]
    user_of = user_of[np.argsort(times, kind="stable")]  # row r = PE id r + 1
    by_user = np.lexsort((np.arange(n_pe), user_of))
    previous = np.full(n_pe, -1)
    same = user_of[by_user[1:]] == user_of[by_user[:-1]]
    previous[by_user[1:][same]] = by_user[:-1][same]
    user_ids = rng.permutation(n_users) + 1

    # --- events per PE, PE types, modality of each slot ------------------------------------------------
    # Later PEs of a user re-include earlier history, so they tend to have more events.
    event_counts = np.repeat(np.arange(MAX_EVENTS, 0, -1), apportion(stats["events_per_pe"], n_pe)[::-1])
    n_events = np.empty(n_pe, dtype=np.int64)
    n_events[
        np.argsort(-(rng.gumbel(size=n_pe) + params.history_length_bias * (previous >= 0)), kind="stable")
    ] = event_counts
    n_conv_only, n_sess_only, n_both = apportion(list(stats["pe_types"].values()), n_pe)
    pe_type = np.full(n_pe, 2)  # 1 conversations only, 2 sessions only, 3 both
    multi_event = np.flatnonzero(n_events >= 2)
    # Some customers prefer the phone: a per-user propensity makes a user's PEs alike in modality.
    phone = np.exp(params.phone_preference * rng.standard_normal(n_users))[user_of]
    both = _weighted_top(rng, multi_event, n_events[multi_event] * phone[multi_event], n_both)
    pe_type[both] = 3
    rest = np.flatnonzero(pe_type == 2)
    conv_only = _weighted_top(rng, rest, phone[rest] / n_events[rest].astype(float) ** 2, n_conv_only)
    pe_type[conv_only] = 1
    n_conv = np.where(pe_type == 1, n_events, 0)
    n_conv[both] = 1
    conv_target = round(scale * stats["conversation_events"])
    capacity = np.repeat(both, n_events[both] - 2)
    extra_conv = int(np.clip(conv_target - n_conv.sum(), 0, len(capacity)))
    n_conv += np.bincount(capacity[rng.choice(len(capacity), extra_conv, replace=False)], minlength=n_pe)

    # --- purchases: exact per-item totals, multi-item PEs mostly within one product family -----------
    n_items_pe = rng.permutation(np.repeat(np.arange(1, 11), apportion(stats["items_per_pe"], n_pe)))
    quota = apportion(stats["purchases_per_item"], int(n_items_pe.sum())).tolist()
    family = np.where(concepts.is_base, np.arange(vocab.NUM_ITEMS), concepts.base_of_item)
    affinity = np.where(family[:, None] == family[None, :], params.family_affinity, 1.0)
    affinity[np.ix_(concepts.is_base, concepts.is_base)] = params.bundle_affinity  # house + car + contents
    np.fill_diagonal(affinity, 0.0)
    affinity_rows = affinity.tolist()
    purchased = np.zeros((n_pe, vocab.NUM_ITEMS), dtype=bool)
    primary = np.zeros(n_pe, dtype=np.int64)
    quota_violations = 0
    # Primary items come from a shuffled urn of all purchases (= sampling ∝ remaining quota); further items
    # of a basket are drawn ∝ remaining quota × family affinity. Big baskets go first, while every item has
    # quota left, so the per-item totals come out exact.
    urn = rng.permutation(np.repeat(np.arange(vocab.NUM_ITEMS), quota)).tolist()
    urn_at = 0
    order = np.lexsort((rng.random(n_pe), -n_items_pe))
    uniforms = rng.random(int(n_items_pe.sum())).tolist()
    n_items_list = n_items_pe.tolist()
    all_items = range(vocab.NUM_ITEMS)
    for u_at, pe in enumerate(order.tolist()):
        while quota[urn[urn_at]] == 0:
            urn_at += 1
        first = urn[urn_at]
        urn_at += 1
        quota[first] -= 1
        chosen = [first]
        row = affinity_rows[first]
        for _ in range(n_items_list[pe] - 1):
            weights = [0.0 if j in chosen else quota[j] * row[j] for j in all_items]
            total = sum(weights)
            if total <= 0:  # no quota left among allowed items: exceed a quota rather than fail
                quota_violations += 1
                weights = [0.0 if j in chosen else 1.0 for j in all_items]
                total = sum(weights)
            target, acc, pick = uniforms[u_at] * total, 0.0, 0
            for j, w in enumerate(weights):
                acc += w
                if w > 0:
                    pick = j
                    if acc > target:
                        break
            chosen.append(pick)
            quota[pick] = max(0, quota[pick] - 1)
        primary[pe] = first
        purchased[pe, chosen] = True

    # --- ownership and post-filter ---------------------------------------------------------------------
    is_base = concepts.is_base
    coverage = np.flatnonzero(~is_base)
    base_of_cov = concepts.base_of_item[coverage]
    implied = np.zeros_like(purchased)  # a coverage bought without its base: the base is owned
    implied[:, base_of_cov] |= purchased[:, coverage] & ~purchased[:, base_of_cov]
    sorted_purchases = purchased[by_user].astype(np.int32)
    sorted_implied = implied[by_user].astype(np.int32)
    group_start = np.r_[True, ~same]
    cum_p = np.cumsum(sorted_purchases, axis=0)
    cum_i = np.cumsum(sorted_implied, axis=0)
    start_row = np.maximum.accumulate(np.where(group_start, np.arange(n_pe), 0))
    before_p = cum_p - sorted_purchases - (cum_p - sorted_purchases)[start_row]
    upto_i = cum_i - (cum_i - sorted_implied)[start_row]
    owned = np.zeros_like(purchased)
    owned[by_user] = (before_p > 0) | (upto_i > 0)
    initially = (rng.random((n_users, vocab.NUM_ITEMS)) < params.base_ownership) & is_base
    ever_bought = np.zeros((n_users, vocab.NUM_ITEMS), dtype=bool)
    np.logical_or.at(ever_bought, user_of, purchased)
    owned |= (initially & ~ever_bought)[user_of]
    have_base = owned | purchased
    # As in the paper, only additional coverages are filtered: base products stay purchasable (a second car,
    # a new house); a coverage needs its base product owned or bought in the same PE, and not owned already.
    post_filter = np.broadcast_to(is_base, purchased.shape) | purchased
    post_filter[:, coverage] |= ~owned[:, coverage] & have_base[:, base_of_cov]

    # --- history: slots, re-included events, new events -------------------------------------------------
    reuse_budget = [
        max(0, int(n_conv.sum()) - round(scale * stats["unique_conversations"])),
        max(0, int((n_events - n_conv).sum()) - round(scale * stats["unique_sessions"])),
    ]  # [conversations, sessions]
    slot_key = rng.random(int(n_events.sum()))
    pe_of_slot = np.repeat(np.arange(n_pe), n_events)
    slot_order = np.lexsort((slot_key, pe_of_slot))
    rank = np.empty_like(slot_order)
    rank[slot_order] = np.arange(len(slot_order)) - np.repeat(np.cumsum(n_events) - n_events, n_events)
    slot_kind = np.where(rank < n_conv[pe_of_slot], 0, 1)  # 0 conversation, 1 session; random order
    slot_kinds = slot_kind.tolist()
    slot_offset = (np.cumsum(n_events) - n_events).tolist()
    n_events_list = n_events.tolist()
    reuse_wish = rng.binomial(n_events, params.history_reuse).tolist()
    events_of: list[list[int]] = [[] for _ in range(n_pe)]
    event_kind: list[int] = []
    event_owner: list[int] = []
    event_age: list[int] = []
    user_order = np.argsort(rng.random(n_users))
    by_user_list = by_user.tolist()
    user_offset = (np.cumsum(pes_per_user) - pes_per_user).tolist()
    user_n_pes = pes_per_user.tolist()
    previous_list = previous.tolist()
    for u in user_order.tolist():
        for pe in by_user_list[user_offset[u] : user_offset[u] + user_n_pes[u]]:
            kinds = slot_kinds[slot_offset[pe] : slot_offset[pe] + n_events_list[pe]]
            taken: list[int] = []
            prev = previous_list[pe]
            if prev >= 0:
                # The most recent earlier events that fit this PE's modalities (a conversation-only PE skips
                # the previous PE's sessions).
                for event in reversed(events_of[prev]):
                    if len(taken) >= reuse_wish[pe]:
                        break
                    kind = event_kind[event]
                    if kind not in kinds or reuse_budget[kind] <= 0:
                        continue
                    kinds.remove(kind)
                    reuse_budget[kind] -= 1
                    taken.append(event)
            taken.reverse()
            new_events = list(range(len(event_kind), len(event_kind) + len(kinds)))
            event_kind.extend(kinds)
            event_owner.extend([pe] * len(kinds))
            event_age.extend(range(len(kinds) - 1, -1, -1))
            events_of[pe] = taken + new_events
    event_kind_a = np.array(event_kind)
    event_owner_a = np.array(event_owner)
    event_age_a = np.array(event_age)
    n_unique = len(event_kind)

    # --- what each new event is about ----------------------------------------------------------------
    is_conv_event = event_kind_a == 0
    p_signal = np.where(is_conv_event, params.conversation_signal, params.session_signal)
    informative = rng.random(n_unique) < p_signal * params.recency_decay**event_age_a
    items_flat = np.flatnonzero(purchased.ravel()) % vocab.NUM_ITEMS  # row-major: grouped by PE
    item_offset = np.cumsum(n_items_pe) - n_items_pe
    other = items_flat[
        item_offset[event_owner_a] + (rng.random(n_unique) * n_items_pe[event_owner_a]).astype(int)
    ]
    shown_item = np.where(rng.random(n_unique) < params.reveal_primary, primary[event_owner_a], other)
    session_background, conversation_background = _backgrounds(concepts)
    topic = np.where(
        is_conv_event,
        np.where(informative, concepts.conversation_concept_of_item[shown_item], 0),
        np.where(informative, concepts.session_concept_of_item[shown_item], 0),
    )
    background = np.where(
        is_conv_event,
        _draw(rng, conversation_background, n_unique),
        _draw(rng, session_background, n_unique),
    )
    topic = np.where(informative, topic, background)
    planted_order = _plant_order(
        rng, params, concepts, events_of, event_kind_a, event_owner_a, pe_type, purchased
    )
    for event, concept in planted_order["topics"]:
        topic[event] = concept

    # --- ids in order of first appearance (PE id, then event number) -------------------------------------
    first_seen = np.lexsort((event_age_a * -1, event_owner_a))
    conv_events = first_seen[is_conv_event[first_seen]]
    sess_events = first_seen[~is_conv_event[first_seen]]
    external_id = np.zeros(n_unique, dtype=np.int64)
    external_id[conv_events] = np.arange(1, len(conv_events) + 1)
    external_id[sess_events] = np.arange(1, len(sess_events) + 1)

    users = _users_table(events_of, n_events, user_ids[user_of], external_id, event_kind_a)
    purchase_rows = np.nonzero(purchased)
    purchases = pa.table({"purchase_event_id": purchase_rows[0] + 1, "item_id": purchase_rows[1] + 1})
    filter_rows = np.nonzero(post_filter)
    post_filter_table = pa.table({"purchase_event_id": filter_rows[0] + 1, "item_id": filter_rows[1] + 1})
    sessions = _sessions_table(rng, params, concepts, topic[sess_events], session_background)
    conversations, sentence_concept, sentence_phrase, sentence_speaker = _conversations_table(
        rng, params, concepts, topic[conv_events], conversation_background
    )

    info = {
        "scale": scale,
        "seed": seed,
        "params": dataclasses.asdict(params),
        "counts": {
            "users": n_users,
            "purchase_events": n_pe,
            "purchase_rows": int(purchased.sum()),
            "pe_types": {
                "conversations_only": int(n_conv_only),
                "sessions_only": int(n_sess_only),
                "intersection": int((pe_type == 3).sum()),
            },  # fmt: skip
            "conversation_events": int(n_conv.sum()),
            "session_events": int((n_events - n_conv).sum()),
            "unique_conversations": len(conv_events),
            "unique_sessions": len(sess_events),
            "sentences": conversations.num_rows,
            "actions": sessions.num_rows,
            "quota_violations": quota_violations,
            "informative_conversations": int(informative[is_conv_event].sum()),
            "informative_sessions": int(informative[~is_conv_event].sum()),
            "order_signal_pes": planted_order["signal"],
            "order_decoy_pes": planted_order["decoy"],
        },
        "items": {
            str(i): {
                "name": vocab.ITEMS[i][0],
                "base_item_id": vocab.ITEMS[i][1],
                "visibility": vocab.ITEMS[i][2],
            }
            for i in concepts.items
        },
        "tags": dict(vocab.TAG_ID),
        "planted": __doc__.split("What is planted where")[1].split("\n", 2)[2].strip(),
    }
    return SyntheticData(
        users, purchases, post_filter_table, sessions, conversations, sentence_concept, sentence_phrase,
        sentence_speaker, info,
    )  # fmt: skip


def _backgrounds(concepts: _Concepts) -> tuple[np.ndarray, np.ndarray]:
    """Topic distributions of events that are not about the need: (sessions, conversations) over concepts."""
    popularity = np.sqrt(np.asarray(RELEASE_STATS["purchases_per_item"], dtype=float))
    session = np.zeros(concepts.n)
    np.add.at(session, concepts.session_concept_of_item, popularity / popularity.sum() * 0.5)
    session[concepts.service0 : concepts.claim0] = 0.4 / len(concepts.services)
    session[concepts.claim0 : concepts.filler0] = 0.1 / len(concepts.bases)
    conversation = np.zeros(concepts.n)
    np.add.at(conversation, concepts.conversation_concept_of_item, popularity / popularity.sum() * 0.5)
    services = concepts.conversation_ok[concepts.service0 : concepts.claim0]
    conversation[concepts.service0 : concepts.claim0] = services * 0.3 / services.sum()
    conversation[concepts.claim0 : concepts.filler0] = 0.2 / len(concepts.bases)
    return session, conversation


def _plant_order(rng, params, concepts, events_of, event_kind, event_owner, pe_type, purchased) -> dict:
    """Claim call -> browse coverage (bought) and the reverse order as a decoy (not bought). See module doc."""
    topics: list[tuple[int, int]] = []
    n_signal = n_decoy = 0
    session_visible = np.flatnonzero(~concepts.is_base & (concepts.session_concept_of_item == np.arange(24)))
    both = np.flatnonzero(pe_type == 3)
    draws = rng.random((len(both), 4))
    event_owner, event_kind = event_owner.tolist(), event_kind.tolist()
    session_visible = session_visible.tolist()
    bought_rows = purchased[both][:, session_visible].tolist()
    for pe, (u_signal, u_decoy, u_pick, u_slot), bought_row in zip(
        both.tolist(), draws.tolist(), bought_rows
    ):
        new = [e for e in events_of[pe] if event_owner[e] == pe]
        convs = [i for i, e in enumerate(new) if event_kind[e] == 0]
        sesss = [i for i, e in enumerate(new) if event_kind[e] == 1]
        bought = [j for j, b in zip(session_visible, bought_row) if b]
        if bought and u_signal < params.order_signal:
            pairs = [(c, s) for c in convs for s in sesss if c < s]
            if pairs:
                c, s = pairs[int(u_slot * len(pairs))]
                item = bought[int(u_pick * len(bought))]
                topics += [(new[c], concepts.claim_of_base_item[concepts.base_of_item[item]]), (new[s], item)]
                n_signal += 1
                continue
        if u_decoy < params.order_decoy:
            pairs = [(s, c) for c in convs for s in sesss if s < c]
            candidates = [j for j, b in zip(session_visible, bought_row) if not b]
            if pairs and candidates:
                s, c = pairs[int(u_slot * len(pairs))]
                item = candidates[int(u_pick * len(candidates))]
                topics += [(new[s], item), (new[c], concepts.claim_of_base_item[concepts.base_of_item[item]])]
                n_decoy += 1
    return {"topics": topics, "signal": n_signal, "decoy": n_decoy}


def _users_table(events_of, n_events, user_id_of_pe, external_id, event_kind) -> pa.Table:
    flat = np.fromiter((e for events in events_of for e in events), dtype=np.int64, count=int(n_events.sum()))
    pe = np.repeat(np.arange(len(n_events)), n_events)
    event_number = np.arange(len(flat)) - np.repeat(np.cumsum(n_events) - n_events, n_events) + 1
    ids = external_id[flat].astype(np.float64)
    is_conv = event_kind[flat] == 0
    return pa.table({
        "user_id": user_id_of_pe[pe],
        "purchase_event_id": pe + 1,
        "event_number": event_number,
        "conversation_id": pa.array(ids, mask=~is_conv),
        "session_id": pa.array(ids, mask=is_conv),
    })  # fmt: skip


def _lengths(rng, median: float, sigma: float, size: int, low: int, high: int) -> np.ndarray:
    return np.clip(np.rint(rng.lognormal(math.log(median), sigma, size)), low, high).astype(np.int64)


def _sessions_table(rng, params, concepts, topics, background) -> pa.Table:
    """(S,) session topics -> one row per action with its 'section,object,type' tags; no consecutive repeats."""
    n_sessions = len(topics)
    lengths = _lengths(rng, params.session_length_median, params.session_length_sigma, n_sessions,
                       MIN_ACTIONS, MAX_ACTIONS)  # fmt: skip
    n_actions = int(lengths.sum())
    session = np.repeat(np.arange(n_sessions), lengths)
    first = np.cumsum(lengths) - lengths
    position = np.arange(n_actions) - first[session]
    concept = np.where(
        rng.random(n_actions) < params.action_noise, _draw(rng, background, n_actions), topics[session]
    )
    section = concepts.section[concept]
    obj = concepts.objects[concept, (rng.random(n_actions) < 0.3).astype(int)]
    type_index = (rng.random(n_actions) * concepts.type_count[concept]).astype(np.int64)
    action_type = concepts.type_table[concept, type_index]
    # Sessions often open with a login or a front-page banner for what the user came for.
    opening = rng.random(n_sessions)
    tag = vocab.TAG_ID
    login = first[opening < 0.3]
    section[login], obj[login], action_type[login] = (
        tag["section:account"],
        tag["object:profile"],
        tag["type:login"],
    )
    banner = first[(opening >= 0.3) & (opening < 0.5)]
    section[banner], action_type[banner] = tag["section:frontpage"], tag["type:click"]
    rare = np.flatnonzero(rng.random(n_actions) < params.rare_tag_rate)
    obj[rare] = [tag[f"object:legacy{r}"] for r in rng.integers(0, vocab.NUM_RARE_TAGS, len(rare))]
    # The release drops consecutive repeated actions; change the type of a repeat until none is left.
    all_types = np.array([tag[f"type:{t}"] for t in vocab.ACTION_TYPES])
    type_position = {int(t): k for k, t in enumerate(all_types)}
    for _ in range(50):
        repeat = (
            np.flatnonzero(
                (position[1:] > 0)
                & (section[1:] == section[:-1])
                & (obj[1:] == obj[:-1])
                & (action_type[1:] == action_type[:-1])
            )
            + 1
        )
        if len(repeat) == 0:
            break
        shift = rng.integers(1, len(all_types), len(repeat))
        current = np.array([type_position[int(t)] for t in action_type[repeat]])
        action_type[repeat] = all_types[(current + shift) % len(all_types)]
    # Unique (section, object, type) triples via a dense lookup (IDs are < 256): far faster than np.unique.
    code = (section * 256 + obj) * 256 + action_type
    present = np.zeros(256**3, dtype=bool)
    present[code] = True
    unique_codes = np.flatnonzero(present)
    lookup = np.zeros(256**3, dtype=np.int32)
    lookup[unique_codes] = np.arange(len(unique_codes), dtype=np.int32)
    inverse = lookup[code]
    labels = np.array([f"{c >> 16},{(c >> 8) & 255},{c & 255}" for c in unique_codes.tolist()], dtype=object)
    return pa.table({
        "session_id": session + 1,
        "action_number": position + 1,
        "action_tags": pa.array(labels.tolist()).take(pa.array(inverse.astype(np.int32))),
    })  # fmt: skip


def _conversations_table(rng, params, concepts, topics, background):
    """(C,) conversation topics -> one row per sentence (speaker, text, keywords) plus concept/phrase arrays."""
    n_conv = len(topics)
    body_median = max(params.conversation_length_median - MIN_SENTENCES, 1.0)
    lengths = MIN_SENTENCES + _lengths(rng, body_median, params.conversation_length_sigma, n_conv, 0,
                                       MAX_SENTENCES - MIN_SENTENCES)  # fmt: skip
    n_sent = int(lengths.sum())
    conv = np.repeat(np.arange(n_conv), lengths)
    first = np.cumsum(lengths) - lengths
    position = np.arange(n_sent) - first[conv]
    last = position == lengths[conv] - 1
    background_conv = background.copy()
    background_conv[~concepts.conversation_ok] = 0.0
    topical = np.where(
        rng.random(n_sent) < params.sentence_noise, _draw(rng, background_conv, n_sent), topics[conv]
    )
    filler_kind = np.where(rng.random(n_sent) < 0.6, concepts.filler("acknowledge"), concepts.filler("hold"))
    concept = np.where(rng.random(n_sent) < params.filler_rate, filler_kind, topical)
    # Every call opens with a greeting from both sides and ends with a closing line; the topic comes early.
    concept[position < 2] = concepts.filler("greeting")
    concept[(position == 2) & ~last] = topics[conv][(position == 2) & ~last]
    concept[last] = concepts.filler("closing")
    speaker = np.where(position % 2 == 0, 1, 0)  # agent opens
    flip = (position >= 2) & (rng.random(n_sent) < 0.25)
    speaker[flip] = 1 - speaker[flip]
    count = concepts.phrase_count[concept, speaker]
    phrase = concepts.phrase_offset[concept, speaker] + (rng.random(n_sent) * count).astype(np.int64)
    speaker_names = pa.array(SPEAKERS).take(pa.array(speaker.astype(np.int8)))
    phrase32 = pa.array(phrase.astype(np.int32))
    table = pa.table({
        "conversation_id": conv + 1,
        "sentence_number": position + 1,
        "sentence_speaker": speaker_names,
        "keywords": pa.array(concepts.phrase_keywords.tolist()).take(phrase32),
        "text": pa.array(concepts.phrase_text.tolist()).take(phrase32),
    })  # fmt: skip
    return table, concept, phrase, speaker


# ------------------------------------------------------------------------------------------------ embeddings
def sentence_embeddings(
    data: SyntheticData, dim: int, seed: int, params: SyntheticParams, start: int, stop: int
) -> np.ndarray:
    """(stop - start, dim) float32 sentence vectors for rows [start, stop): concept + phrase + noise directions."""
    concepts = _Concepts()
    directions = np.random.default_rng([seed, 7]).standard_normal(
        (concepts.n + len(concepts.phrase_text) + 2, dim)
    )
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    concept_dir = directions[: concepts.n].copy()
    cov = np.flatnonzero(~concepts.is_base)
    concept_dir[cov] = 0.6 * concept_dir[concepts.base_of_item[cov]] + 0.8 * concept_dir[cov]
    claims = np.arange(concepts.claim0, concepts.filler0)
    claim_bases = np.array(concepts.bases) - 1
    concept_dir[claims] = 0.5 * concept_dir[claim_bases] + 0.866 * concept_dir[claims]
    concept_dir = (params.embedding_signal * concept_dir).astype(np.float32)
    phrase_dir = (
        params.phrase_jitter * directions[concepts.n : concepts.n + len(concepts.phrase_text)]
    ).astype(np.float32)
    speaker_dir = (0.2 * directions[-2:]).astype(np.float32)
    noise_rng = np.random.default_rng([seed, 11, start])
    vectors = noise_rng.standard_normal((stop - start, dim), dtype=np.float32)
    vectors *= np.float32(params.embedding_noise / math.sqrt(dim))
    vectors += concept_dir[data.sentence_concept[start:stop]]
    vectors += phrase_dir[data.sentence_phrase[start:stop]]
    vectors += speaker_dir[data.sentence_speaker[start:stop]]
    return np.round(vectors, 4)


# ------------------------------------------------------------------------------------------------ writing
def _write_csv(path: Path, table: pa.Table) -> None:
    options = pacsv.WriteOptions(quoting_header="none", batch_size=65_536)
    atomic_write(path, lambda tmp: pacsv.write_csv(table, tmp, options))
    path.chmod(0o644)  # the temporary file was private; the dataset is meant to be shared


def generate(
    out_dir: str | Path,
    scale: float = 1.0,
    seed: int = 0,
    text: bool = True,
    embedding_dim: int = 64,
    params: SyntheticParams | None = None,
    rows_per_part: int = 200_000,
) -> dict:
    """Write the synthetic dataset to ``out_dir`` (see the module docstring); returns generation_info.

    A folder already holding a complete dataset with the same settings is left as it is (stage resume).
    """
    params = params or SyntheticParams()
    if embedding_dim < 1:
        raise ValueError(f"embedding_dim must be >= 1, got {embedding_dim}")
    out = Path(out_dir)
    info_path = out / "generation_info.json"
    settings = {"scale": scale, "seed": seed, "text": text, "embedding_dim": None if text else embedding_dim,
                "params": dataclasses.asdict(params)}  # fmt: skip
    if info_path.exists():
        previous = json.loads(info_path.read_text())
        if previous.get("settings") == settings:
            previous["skipped"] = True
            return previous
    info_path.unlink(missing_ok=True)  # the marker goes last: a crash leaves no half-valid folder behind
    started = time.perf_counter()
    data = build(scale, seed, params)
    out.mkdir(parents=True, exist_ok=True)
    _write_csv(out / "data_users.csv", data.users)
    _write_csv(out / "data_purchase_events.csv", data.purchases)
    _write_csv(out / "data_post_filter.csv", data.post_filter)
    _write_csv(out / "data_sessions.csv", data.sessions)
    _write_csv(out / "data_conversations_keyword.csv", data.conversations.drop_columns(["text"]))
    mapping = vocab.keyword_mapping()
    _write_csv(
        out / "keyword_mapping.csv", pa.table({"word": list(mapping), "keyword_id": list(mapping.values())})
    )
    embedding_dir = out / EMBEDDING_DIR
    for stale in sorted(embedding_dir.glob("data_conversations_embedding_*.csv")):
        stale.unlink()
    if text:
        _write_csv(out / "data_conversations_text.csv", data.conversations.drop_columns(["keywords"]))
        if embedding_dir.exists() and not any(embedding_dir.iterdir()):
            embedding_dir.rmdir()
        parts = 0
    else:
        (out / "data_conversations_text.csv").unlink(missing_ok=True)
        embedding_dir.mkdir(exist_ok=True)
        n_rows = data.conversations.num_rows
        keys = data.conversations.select(["conversation_id", "sentence_number", "sentence_speaker"])
        names = [f"embedding_{d + 1}" for d in range(embedding_dim)]
        parts = max(1, math.ceil(n_rows / rows_per_part))
        for part in range(parts):
            start, stop = part * rows_per_part, min(n_rows, (part + 1) * rows_per_part)
            vectors = sentence_embeddings(data, embedding_dim, seed, params, start, stop)
            columns = keys.slice(start, stop - start).columns + [
                pa.array(vectors[:, d]) for d in range(embedding_dim)
            ]
            table = pa.table(columns, names=keys.column_names + names)
            _write_csv(embedding_dir / f"data_conversations_embedding_{part + 1}.csv", table)
    info = dict(data.info)
    info.update(settings=settings, text=text, embedding_dim=None if text else embedding_dim,
                embedding_parts=parts, seconds=round(time.perf_counter() - started, 2))  # fmt: skip
    atomic_write_json(info_path, info)
    return info
