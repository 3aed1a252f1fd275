"""Relative Representation, stage 2: choosing the anchors X (section 4.3.4, section 5.2).

Candidates: PEs of the pool with exactly one conversation and exactly one session (the reference's "exactly two
events, one of each kind"; model_relative_representation_step_3.py lines 40-42). The pool is chosen by the caller
(switch ``fidelity.relative_representation.anchor_pool``: all training PEs as the reference, or the fitting part).

Two quota rules, switch ``fidelity.relative_representation.anchor_quotas``:

``reference`` (default; step_3.py lines 43-52), with n = ``num_anchors`` and J items:

    share_j = (#pool PEs that bought j / #pool PEs) / Σ_k (#pool PEs that bought k / #pool PEs)
    quota_j = max(1, round_half_even(n · share_j))   for every item bought at least once in the pool, else 0
    class(candidate) = the item it bought with the smallest quota (the rarest); ties -> the first item in the
                       reference's column order (item ids sorted as strings, MultiLabelBinarizer's order)
    per item j: quota_j candidates of class j drawn without replacement (run seed; the reference: pandas
                ``sample(random_state=42)``)

    |X| = Σ_j quota_j, which is not n in general (124 for n = 125 on the release). Rounding is half-to-even
    because the reference rounds a pandas Series (numpy's rounding). Each candidate has one class, so no PE is
    drawn twice.

    Defects of the reference, corrected here (no switch: the reference fails or cannot reach them):
    * a class with fewer candidates than its quota makes pandas raise ("Cannot take a larger sample than
      population"); here it takes all its candidates, the shortfall is reported (``Anchors.shortfall``, a
      warning) and not redistributed, so |X| = Σ_j quota_j − shortfall.
    * the reference finds the rarest item by replacing the zeros of (bought × quota) by 99 before ``idxmin``, so
      a candidate whose every bought item has a quota of 99 or more (share ≳ 0.79 at n = 125, ≳ 0.40 at
      n = 250) can be put in the class of an item it did not buy; here the minimum is over the bought items.

``equal`` (this project's earlier rule): exactly n anchors split as evenly as possible over the items that have
candidates (⌊n/K⌋ each, one extra for n mod K items drawn at random); rarest classes first; a class with too few
candidates takes them all and the shortfall is drawn one at a time from classes with spares, so |X| = n. A PE
that bought several items is a candidate of each and drawn at most once.

Both draw with ``numpy.random.default_rng(seed)``: deterministic per seed, different across seeds.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Literal

import numpy as np

from mmrec_ray.data.tensors import EVENT_CONVERSATION, EVENT_SESSION

QuotaRule = Literal["reference", "equal"]


@dataclass
class Anchors:
    """The selected anchor PEs (row indices into the prepared arrays), each with the item class it was drawn for."""

    pes: np.ndarray  # (|X|,) int64
    classes: np.ndarray  # (|X|,) int64: item column j the anchor was drawn for (-1: no class)
    requested: int  # n = num_anchors
    quotas: np.ndarray | None = None  # (J,) int64: anchors wanted per item class
    shortfall: int = 0  # anchors wanted by the quotas that no candidate could fill


def anchor_candidates(data, pe_indices: np.ndarray) -> np.ndarray:
    """PEs among ``pe_indices`` with exactly one conversation and exactly one session."""
    pe_indices = np.asarray(pe_indices)
    kinds = np.asarray(data.event_kind)[pe_indices]
    conversations = (kinds == EVENT_CONVERSATION).sum(axis=1)
    sessions = (kinds == EVENT_SESSION).sum(axis=1)
    return pe_indices[(conversations == 1) & (sessions == 1)]


def reference_quotas(bought: np.ndarray, num_pes: int, num_anchors: int) -> np.ndarray:
    """quota_j = max(1, round_half_even(n · share_j)) for items bought in the pool, 0 otherwise.

    bought (J,): how many pool PEs bought each item; num_pes: pool size N -> (J,) int64. The share is computed in
    the reference's order of operations (divide by N, then by the sum), so that ties at .5 round as there.
    """
    bought = np.asarray(bought, dtype=np.float64)
    if bought.sum() == 0:
        return np.zeros(bought.shape, dtype=np.int64)
    share = bought / num_pes
    share = share / share.sum()
    quotas = np.maximum(np.rint(share * num_anchors), 1).astype(np.int64)
    return np.where(bought > 0, quotas, 0)


def reference_classes(candidate_targets: np.ndarray, quotas: np.ndarray, item_ids: np.ndarray) -> np.ndarray:
    """The class of each candidate: the item it bought with the smallest quota; ties -> the item whose id comes
    first as a string (the reference's column order). (K, J), (J,), (J,) -> (K,) int64; -1 if it bought nothing."""
    bought = np.asarray(candidate_targets) > 0
    string_rank = np.empty(len(item_ids), dtype=np.int64)
    string_rank[np.argsort(np.asarray(item_ids).astype(str), kind="stable")] = np.arange(len(item_ids))
    # (J,): the quota first, the reference's column order on ties.
    key = np.asarray(quotas, dtype=np.int64) * (len(item_ids) + 1) + string_rank
    keyed = np.where(bought, key[None, :], np.iinfo(np.int64).max)
    return np.where(bought.any(axis=1), keyed.argmin(axis=1), -1).astype(np.int64)


def select_anchors(
    data, pe_indices: np.ndarray, num_anchors: int, seed: int, quotas: QuotaRule = "reference"
) -> Anchors:
    """Stage 2: anchors from the candidates among the pool ``pe_indices`` (module docstring for the rules)."""
    if num_anchors < 1:
        raise ValueError(f"relative_representation: num_anchors must be >= 1, got {num_anchors}")
    candidates = np.sort(anchor_candidates(data, pe_indices))
    if len(candidates) == 0:
        raise ValueError(
            "relative_representation: no training PE has exactly one conversation and one session to anchor on"
        )
    if quotas == "reference":
        return _select_reference(data, np.asarray(pe_indices), candidates, num_anchors, seed)
    if quotas == "equal":
        return _select_equal(data, candidates, num_anchors, seed)
    raise ValueError(f"unknown anchor quota rule {quotas!r}; expected 'reference' or 'equal'")


def _select_reference(data, pool: np.ndarray, candidates: np.ndarray, num_anchors: int, seed: int) -> Anchors:
    rng = np.random.default_rng(seed)
    targets = np.asarray(data.targets)
    quotas = reference_quotas((targets[pool] > 0).sum(axis=0), len(pool), num_anchors)
    classes = reference_classes(targets[candidates], quotas, np.asarray(data.item_ids))
    chosen_pes: list[np.ndarray] = []
    chosen_classes: list[np.ndarray] = []
    short: dict[int, int] = {}
    for j in np.flatnonzero(quotas):
        members = candidates[classes == j]
        count = min(int(quotas[j]), len(members))
        if count < quotas[j]:
            short[int(j)] = int(quotas[j]) - count
        if count:
            chosen_pes.append(rng.choice(members, size=count, replace=False))
            chosen_classes.append(np.full(count, j, dtype=np.int64))
    shortfall = sum(short.values())
    if shortfall:
        warnings.warn(
            f"relative_representation: the reference anchor quotas ask for {int(quotas.sum())} anchors but "
            f"{len(short)} item class(es) have fewer candidates than their quota (item column: missing "
            f"{short}); using {int(quotas.sum()) - shortfall} anchors",
            stacklevel=3,
        )
    if not chosen_pes:
        raise ValueError("relative_representation: no anchor candidate bought an item with a quota")
    return Anchors(
        pes=np.concatenate(chosen_pes).astype(np.int64),
        classes=np.concatenate(chosen_classes),
        requested=num_anchors,
        quotas=quotas,
        shortfall=shortfall,
    )


def _select_equal(data, candidates: np.ndarray, num_anchors: int, seed: int) -> Anchors:
    rng = np.random.default_rng(seed)
    wanted = num_anchors
    if len(candidates) < num_anchors:
        warnings.warn(
            f"relative_representation: {num_anchors} anchors asked for but only {len(candidates)} training PEs "
            "have exactly one conversation and one session; using all of them",
            stacklevel=3,
        )
        wanted = len(candidates)
    targets = np.asarray(data.targets)[candidates] > 0  # (K_candidates, J)
    classes = np.flatnonzero(targets.any(axis=0))
    quota = dict.fromkeys(classes.tolist(), wanted // len(classes)) if len(classes) else {}
    for j in rng.permutation(classes)[: wanted % len(classes) if len(classes) else 0]:
        quota[int(j)] += 1

    taken = np.zeros(len(candidates), dtype=bool)
    chosen_pes: list[int] = []
    chosen_classes: list[int] = []

    def draw(j: int, count: int) -> int:
        pool = np.flatnonzero(targets[:, j] & ~taken)
        count = min(count, len(pool))
        if count:
            picked = rng.choice(pool, size=count, replace=False)
            taken[picked] = True
            chosen_pes.extend(candidates[picked].tolist())
            chosen_classes.extend([j] * count)
        return count

    # Rarest classes first, so that common classes do not use up the PEs a rare class needs.
    sizes = targets.sum(axis=0)
    for j in sorted(quota, key=lambda c: (sizes[c], c)):
        draw(j, quota[j])
    # Shortfall (classes with fewer candidates than their quota): one more at a time from classes with spares.
    while len(chosen_pes) < wanted:
        progressed = False
        for j in rng.permutation(classes):
            if len(chosen_pes) >= wanted:
                break
            progressed |= draw(int(j), 1) > 0
        if not progressed:  # candidates that bought nothing (no class) fill the rest
            rest = np.flatnonzero(~taken)
            picked = rng.choice(rest, size=wanted - len(chosen_pes), replace=False)
            taken[picked] = True
            chosen_pes.extend(candidates[picked].tolist())
            chosen_classes.extend([-1] * len(picked))
    per_class = np.zeros(targets.shape[1], dtype=np.int64)
    for j, count in quota.items():
        per_class[j] = count
    return Anchors(
        pes=np.asarray(chosen_pes, dtype=np.int64),
        classes=np.asarray(chosen_classes, dtype=np.int64),
        requested=num_anchors,
        quotas=per_class,
    )
