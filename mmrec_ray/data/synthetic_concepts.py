"""The generator's concepts as numpy lookup tables: 24 items, the services, a claim per base product and the filler
kinds, with the website tags each shows in a session and the sentence pools (named and unnamed) each is said with.

Built from the constant vocabulary of ``synthetic_text``, so it is the same for every seed and scale; ``synthetic``
draws from it, ``synthetic_files`` embeds its phrases.
"""

from __future__ import annotations

import numpy as np

from mmrec_ray.data import synthetic_text as vocab

SPEAKERS = ("user", "agent")


class Concepts:
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
        texts: list[str] = []

        def add_pools(pool_of) -> tuple[np.ndarray, np.ndarray]:
            """Append pool_of(concept, speaker) for every pair to ``texts``: (n, 2) offsets and counts."""
            offsets = np.zeros((self.n, 2), dtype=np.int64)
            counts = np.zeros((self.n, 2), dtype=np.int64)
            for c in range(self.n):
                for s, speaker in enumerate(SPEAKERS):
                    pool = pool_of(c, speaker)
                    offsets[c, s], counts[c, s] = len(texts), len(pool)
                    texts.extend(pool)
            return offsets, counts

        self.phrase_offset, self.phrase_count = add_pools(self._phrases)
        self.n_named_phrases = len(texts)
        # Item mentions that do not name the item (vocab.UNNAMED), after the named ones; count 0 = none.
        self.unnamed_offset, self.unnamed_count = add_pools(self._unnamed_phrases)
        self.phrase_text = np.array(texts, dtype=object)
        mapping = vocab.keyword_mapping()
        self.phrase_keywords = np.array(
            [",".join(str(k) for k in vocab.extract_keywords(t, mapping)) for t in texts], dtype=object
        )

    def _unnamed_phrases(self, c: int, speaker: str) -> list[str]:
        situations = vocab.UNNAMED.get(c + 1, ()) if c < self.service0 else ()
        return [t.format(x=x) for t in vocab.UNNAMED_TEMPLATES[speaker] for x in situations]

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
