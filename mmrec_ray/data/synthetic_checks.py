"""Model-free calibration checks of the synthetic generator against the released dataset (docs/calibration.md).

Everything here is computed from ``synthetic.build`` in memory, with the project's own split
(``tensors.test_mask``) and metrics (``evaluation.metrics``), so it needs no ``prepare`` and no training:

* the test split's composition (conversations-only / sessions-only / intersection PEs),
* how many test PEs share an event with a training PE (re-included history),
* Popular (training purchase counts, post-filtered) HR@3 and MAP@3 on the union and on each subset,
* where the calls sit: calls per conversations-only PE (and the share with more than one), and how often an
  intersection PE's newest event is a call,
* basket sizes per stratum (split x subset), exact at scale 1 (the report shows the test split's single-item share).

``python -m mmrec_ray.data.synthetic_checks --scale 1 --seeds 0,1,2`` prints the table of docs/calibration.md.
"""

from __future__ import annotations

import argparse

import numpy as np

from mmrec_ray.data.synthetic import RELEASE_ITEMS_PER_PE_BY_STRATUM
from mmrec_ray.data.tensors import test_mask

SUBSETS = ("conversations_only", "sessions_only", "intersection")
# The released files (issue #11): test-split composition, test PEs sharing an event with a training PE, and
# Popular with the paper's split on the real purchases (union equals the paper's Table 3).
RELEASE_TEST_COMPOSITION = {"conversations_only": 883, "sessions_only": 4_064, "intersection": 1_294}
RELEASE_SHARED_TEST_PES = 150
RELEASE_POPULAR = {
    "union": (0.4595, 0.2742),
    "conversations_only": (0.5243, 0.3314),
    "sessions_only": (0.4284, 0.2425),
    "intersection": (0.5131, 0.3349),
}

# From the released data_users.csv: conversations-only PEs hold 1.282 calls on average, 19.3 % of them more than
# one; 57.0 % of intersection PEs end with a call (38 % would if calls and sessions were in random order).
RELEASE_CALLS = {
    "calls_per_conversations_only_pe": 1.282,
    "several_calls_share": 0.193,
    "newest_is_call": 0.570,
}


def _per_pe(data) -> dict[str, np.ndarray]:
    users = data.users
    pe = users.column("purchase_event_id").to_numpy() - 1
    is_conv = users.column("conversation_id").is_valid().to_numpy(zero_copy_only=False)
    n_pe = int(pe.max()) + 1
    has_conv = np.bincount(pe, weights=is_conv, minlength=n_pe) > 0
    has_sess = np.bincount(pe, weights=~is_conv, minlength=n_pe) > 0
    subset = np.where(has_conv & has_sess, 2, np.where(has_conv, 0, 1))
    return {"pe": pe, "is_conv": is_conv, "subset": subset, "is_test": test_mask(np.arange(1, n_pe + 1))}


def test_composition(data) -> dict[str, int]:
    """Test PEs per subset."""
    per = _per_pe(data)
    test_subset = per["subset"][per["is_test"]]
    return {name: int((test_subset == k).sum()) for k, name in enumerate(SUBSETS)}


test_composition.__test__ = False  # not a pytest test, despite its name


def shared_test_pes(data) -> int:
    """Test PEs with at least one event (conversation or session id) that a training PE also lists."""
    per = _per_pe(data)
    users = data.users
    ids = np.where(
        per["is_conv"],
        users.column("conversation_id").fill_null(0).to_numpy(),
        users.column("session_id").fill_null(0).to_numpy(),
    ).astype(np.int64)
    code = ids * 2 + per["is_conv"]
    row_test = per["is_test"][per["pe"]]
    in_train = np.isin(code, np.unique(code[~row_test]))
    return int(np.unique(per["pe"][row_test & in_train]).size)


def call_placement(data) -> dict[str, float]:
    """The RELEASE_CALLS statistics over every PE (both splits)."""
    per = _per_pe(data)
    pe, is_conv = per["pe"], per["is_conv"]
    n_pe = len(per["subset"])
    calls = np.bincount(pe, weights=is_conv, minlength=n_pe)
    users = data.users
    order = np.lexsort((users.column("event_number").to_numpy(), pe))
    newest = np.zeros(n_pe, dtype=bool)
    newest[pe[order]] = is_conv[order]  # the last write per PE is its highest event number
    conv_only, both = per["subset"] == 0, per["subset"] == 2
    return {
        "calls_per_conversations_only_pe": float(calls[conv_only].mean()),
        "several_calls_share": float((calls[conv_only] > 1).mean()),
        "newest_is_call": float(newest[both].mean()),
    }


def basket_sizes(data) -> np.ndarray:
    """(6, 10) PEs per stratum (training then test, each conversations-only / sessions-only / intersection) and
    basket size 1..10: the layout of ``synthetic.RELEASE_ITEMS_PER_PE_BY_STRATUM``."""
    per = _per_pe(data)
    pe = data.purchases.column("purchase_event_id").to_numpy() - 1
    size = np.bincount(pe, minlength=len(per["subset"]))
    stratum = per["is_test"] * 3 + per["subset"]
    table = np.zeros((6, 10), dtype=np.int64)
    np.add.at(table, (stratum, np.clip(size, 1, 10) - 1), 1)
    return table


def popular_by_subset(data) -> dict[str, tuple[float, float]]:
    """Popular's (HR@3, MAP@3) on the test PEs: union and each subset."""
    from mmrec_ray.evaluation.metrics import per_pe_metrics

    per = _per_pe(data)
    n_pe, n_items = len(per["is_test"]), 24
    bought = np.zeros((n_pe, n_items), dtype=bool)
    bought[
        data.purchases.column("purchase_event_id").to_numpy() - 1,
        data.purchases.column("item_id").to_numpy() - 1,
    ] = True
    allowed = np.zeros((n_pe, n_items), dtype=bool)
    allowed[
        data.post_filter.column("purchase_event_id").to_numpy() - 1,
        data.post_filter.column("item_id").to_numpy() - 1,
    ] = True
    test = per["is_test"]
    counts = bought[~test].sum(axis=0).astype(np.float64)
    metrics = per_pe_metrics(
        np.broadcast_to(counts, (int(test.sum()), n_items)), bought[test], allowed[test], (3,)
    )
    hits, ap = metrics.hits[:, 0], metrics.ap[:, 0]
    out = {"union": (float(hits.mean()), float(ap.mean()))}
    subset = per["subset"][test]
    for k, name in enumerate(SUBSETS):
        out[name] = (float(hits[subset == k].mean()), float(ap[subset == k].mean()))
    return out


def report(scale: float, seeds: list[int], params=None) -> str:
    from mmrec_ray.data.synthetic import build

    lines = [
        "| seed | conv-only / sess-only / both test PEs | shared | Popular HR@3, MAP@3: union | conv-only | sess-only "
        "| intersection | calls per conv-only PE (share > 1) | intersection PEs ending with a call "
        "| single-item test PEs: conv-only / sess-only / both |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    release = " / ".join(str(RELEASE_TEST_COMPOSITION[s]) for s in SUBSETS)
    cells = " | ".join(f"{RELEASE_POPULAR[k][0]:.4f}, {RELEASE_POPULAR[k][1]:.4f}" for k in RELEASE_POPULAR)
    lines.append(
        f"| release | {release} | {RELEASE_SHARED_TEST_PES} | {cells} | {_calls_cells(RELEASE_CALLS)} "
        f"| {_single_cells(np.asarray(RELEASE_ITEMS_PER_PE_BY_STRATUM))} |"
    )
    for seed in seeds:
        data = build(scale, seed, params)
        composition = " / ".join(str(v) for v in test_composition(data).values())
        popular = popular_by_subset(data)
        cells = " | ".join(f"{popular[k][0]:.4f}, {popular[k][1]:.4f}" for k in RELEASE_POPULAR)
        calls = _calls_cells(call_placement(data))
        singles = _single_cells(basket_sizes(data))
        lines.append(f"| {seed} | {composition} | {shared_test_pes(data)} | {cells} | {calls} | {singles} |")
    return "\n".join(lines)


def _single_cells(sizes: np.ndarray) -> str:
    return " / ".join(f"{row[0] / max(row.sum(), 1):.3f}" for row in sizes[3:])


def _calls_cells(calls: dict[str, float]) -> str:
    return (
        f"{calls['calls_per_conversations_only_pe']:.3f} ({calls['several_calls_share']:.3f}) | "
        f"{calls['newest_is_call']:.3f}"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--seeds", default="0", help="comma-separated generator seeds")
    parser.add_argument("--param", action="append", default=[], metavar="NAME=VALUE")
    args = parser.parse_args(argv)
    from mmrec_ray.commands.generate import parse_params

    print(report(args.scale, [int(s) for s in args.seeds.split(",")], parse_params(args.param)))


if __name__ == "__main__":
    main()
