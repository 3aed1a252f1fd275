"""Keyword IDs for sentences: words mapped into the shared tag/keyword ID space (SPEC 2.1, 2.2).

The Keyword model (paper section 4.3) represents a conversation by the multi-hot of its sentences' keyword IDs and
a web session by the multi-hot of its actions' tags; both live in one ID space, which is how one vocabulary
serves both modalities. When sentences arrive as raw text, a mapping file says which words are keywords.

Mapping file format (``keyword_mapping.csv``; the synthetic generator writes one next to its data):

    word,keyword_id
    claim,17
    car,4
    travel,31

- ``word``: one lowercase word or lemma (letters only, no spaces); a word occurs at most once. Several words
  may share a keyword ID (``car`` and ``vehicle`` -> 4).
- ``keyword_id``: a positive integer in the same ID space as the ``action_tags`` of ``data_sessions.csv``.

Matching (``extract_keywords``): lowercase the text, split on anything that is not a letter, skip stop words,
and look each token up as written, then with a plural/suffix stripped (``claims`` -> ``claim``,
``policies`` -> ``policy``, ``travelling`` -> ``travel``, ``insured`` -> ``insure``). A sentence's keyword IDs are unique,
in order of first appearance.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path

import pandas as pd

from mmrec_ray.errors import DataError

MAPPING_COLUMNS = ("word", "keyword_id")

# Function words that carry no product signal; never matched even if a mapping lists them.
STOP_WORDS = frozenset(
    """
    a about above after again against all am an and any are as at be because been before being below between both
    but by can could did do does doing down during each few for from further had has have having he her here hers
    him his how i if in into is it its itself just me more most my myself no nor not now of off on once only or
    other our ours out over own same she should so some such than that the their theirs them then there these they
    this those through to too under until up very was we were what when where which while who whom why will with
    would you your yours yourself yes yeah ok okay hello hi thanks thank please um uh
    """.split()
)

_TOKEN = re.compile(r"[^\W\d_]+")  # runs of letters (Unicode-aware: æ, ø, å are letters)
_WORD = re.compile(r"^[^\W\d_]+$")


def load_keyword_mapping(path: str | Path) -> dict[str, int]:
    """Read a ``word,keyword_id`` CSV into ``{word: keyword_id}``; bad rows raise ``DataError`` naming row and column."""
    path = Path(path)
    if not path.is_file():
        raise DataError(str(path), "keyword mapping file not found")
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DataError(str(path), f"not a readable CSV: {exc}") from exc
    for column in MAPPING_COLUMNS:
        if column not in frame.columns:
            raise DataError(
                str(path), f"missing column (expected columns: {', '.join(MAPPING_COLUMNS)})", column=column
            )
    mapping: dict[str, int] = {}
    for position, (word, raw_id) in enumerate(zip(frame["word"], frame["keyword_id"], strict=True)):
        row = position + 2  # header is row 1
        word = word.strip()
        if not _WORD.match(word) or word != word.lower():
            raise DataError(
                str(path), f"'{word}' is not one lowercase word (letters only)", row=row, column="word"
            )
        try:
            keyword_id = int(raw_id.strip())
        except ValueError:
            raise DataError(
                str(path), f"'{raw_id}' is not an integer", row=row, column="keyword_id"
            ) from None
        if keyword_id < 1:
            raise DataError(
                str(path), f"keyword id must be positive; got {keyword_id}", row=row, column="keyword_id"
            )
        if word in mapping:
            raise DataError(str(path), f"word '{word}' is listed twice", row=row, column="word")
        mapping[word] = keyword_id
    return mapping


def _candidates(token: str) -> Iterable[str]:
    """The token, then de-suffixed forms, most specific first (a light stemmer; no dictionary needed)."""
    yield token
    if len(token) > 4 and token.endswith("ies"):
        yield token[:-3] + "y"  # policies -> policy
    if len(token) > 4 and token.endswith("es"):
        yield token[:-2]  # businesses -> business
    if len(token) > 3 and token.endswith("s") and not token.endswith("ss"):
        yield token[:-1]  # claims -> claim
    for suffix in ("ing", "ed", "er"):
        if len(token) > len(suffix) + 2 and token.endswith(suffix):
            stem = token[: -len(suffix)]
            yield stem  # covered -> cover
            yield stem + "e"  # insured -> insure
            if len(stem) > 2 and stem[-1] == stem[-2]:
                yield stem[:-1]  # travelling -> travel


def _keyword_for(token: str, mapping: Mapping[str, int]) -> int | None:
    for candidate in _candidates(token):
        if candidate in mapping:
            return mapping[candidate]
    return None


def extract_keywords(texts: Iterable[str], mapping: Mapping[str, int]) -> list[list[int]]:
    """Keyword IDs per text: unique, in order of first appearance; ``[]`` for a text without keywords."""
    cache: dict[str, int | None] = {}
    result: list[list[int]] = []
    for text in texts:
        ids: list[int] = []
        seen: set[int] = set()
        for token in _TOKEN.findall(str(text).lower()):
            if token in STOP_WORDS:
                continue
            if token not in cache:
                cache[token] = _keyword_for(token, mapping)
            keyword_id = cache[token]
            if keyword_id is not None and keyword_id not in seen:
                seen.add(keyword_id)
                ids.append(keyword_id)
        result.append(ids)
    return result
