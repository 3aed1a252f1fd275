"""The paper's qualitative findings on the calibrated generator (issue #11): a change to a model or to the
generator that breaks one of them fails here. Scale 0.1 without text (D = 64), seed 0, one fit per model (batch
64, at most 40 epochs) — deterministic, so a failure is a changed result, not bad luck. Asserted, as the paper:

- the models that read sessions beat Popular by a wide margin on the union, sessions-only and the intersection;
  on conversations-only (88 test PEs) and for Conversation (without text and with ~900 conversations-only training
  PEs the weakest model, as in the paper) nothing falls below Popular;
- Keyword beats Conversation on conversations-only (the paper: 0.694 vs 0.662);
- the keyword joint model beats Late Fusion on the union and on the intersection.
  At this size without text Latent Feature is level with or below Late Fusion (union 0.618 vs 0.621, intersection
  0.623 vs 0.646 on the current generator): it needs the text and more PEs; at scale 1 with MiniLM it is first on
  the union and ahead of Late Fusion most on the intersection (docs/calibration.md, third pass).

Not asserted: Latent Feature or Relative Representation best on the union (Keyword is here; at scale 1 with text
Latent Feature is, level with Keyword: docs/calibration.md); "joint models gain most over Late Fusion on the
intersection" — the paper's own Table 3 has Latent Feature's largest gain over Late Fusion on conversations-only
(+0.05 HR@3; intersection +0.03).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from mmrec_ray.config import TrainingConfig
from mmrec_ray.data.prepare import prepare
from mmrec_ray.data.synthetic_files import generate
from mmrec_ray.data.tensors import SUBSET_NAMES, PreparedData
from mmrec_ray.evaluation.metrics import per_pe_metrics
from mmrec_ray.models.params import default_params
from mmrec_ray.training.runner import fit_models

pytestmark = pytest.mark.slow

MODELS = ["popular", "conversation", "session", "late_fusion", "keyword", "latent_feature"]
SERVES = {
    "conversation": ("conversations_only", "intersection"),
    "session": ("sessions_only", "intersection"),
}
HR_AT = 3


@pytest.fixture(scope="module")
def hit_rates(tmp_path_factory) -> dict[str, dict[str, float]]:
    """HR@3 per model and subset (and the union)."""
    root = tmp_path_factory.mktemp("qualitative")
    generate(root / "data", scale=0.1, seed=0, text=False, embedding_dim=64)
    prepare(root / "data", root / "run", log=lambda _: None)
    data = PreparedData.load(root / "run" / "prepared" / "tensors")
    training = TrainingConfig(max_epochs=40, patience=5, num_threads=1)
    # Small batches: a few hundred conversations-only training PEs need many steps per epoch.
    params = {name: dataclasses.replace(default_params(name), batch_size=64) for name in MODELS}
    fitted = fit_models(data, MODELS, [0], params=params, training=training)
    test = data.test_indices()
    subsets = np.asarray(data.subset)[test]
    targets = np.asarray(data.targets)[test]
    post_filter = np.asarray(data.post_filter)[test]
    from mmrec_ray.data.features import FeatureStore

    store = FeatureStore(data)
    out: dict[str, dict[str, float]] = {}
    for name in MODELS:
        scores = fitted[(name, 0)][0].predict(store, test)
        served = ~np.isnan(scores).any(axis=1)
        hits = per_pe_metrics(np.nan_to_num(scores), targets, post_filter, ks=(HR_AT,)).hits[:, 0]
        rates = {"union": float(hits[served].mean())} if served.all() else {}
        for label, subset in SUBSET_NAMES.items():
            rows = (subsets == label) & served
            if rows.any():
                rates[subset] = float(hits[rows].mean())
        out[name] = rates
    print(out)
    return out


def test_every_neural_model_beats_popular_on_what_it_serves(hit_rates):
    popular = hit_rates["popular"]
    for name, rates in hit_rates.items():
        for subset in SERVES.get(name, ("union", *SUBSET_NAMES.values())) if name != "popular" else ():
            # Conversation clears Popular only narrowly at this size, and the 88 conversations-only test PEs move
            # HR@3 by 0.011 each: there the test asks only that nothing collapses below Popular (a few PEs of
            # slack, so that another CPU's float rounding cannot flip it); elsewhere for a wide margin.
            narrow = name == "conversation" or subset == "conversations_only"
            assert rates[subset] > popular[subset] + (-0.03 if narrow else 0.05), (
                name,
                subset,
                rates,
                popular,
            )


def test_keyword_beats_conversation_on_conversations_only(hit_rates):
    assert hit_rates["keyword"]["conversations_only"] > hit_rates["conversation"]["conversations_only"] + 0.05


def test_keyword_beats_late_fusion_on_the_union_and_the_intersection(hit_rates):
    for subset in ("union", "intersection"):
        assert hit_rates["keyword"][subset] > hit_rates["late_fusion"][subset], (subset, hit_rates)
