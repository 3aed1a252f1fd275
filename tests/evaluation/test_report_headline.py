"""The report's one-sentence headline (issue 11): what the table shows and how sure it is, each claim one family of
paired tests Holm-corrected on its own."""

from __future__ import annotations

import pandas as pd

from mmrec_ray.evaluation.report.summary import headline
from tests.evaluation.helpers import bootstrap_row, pairwise_row

# union HR@3 means; Popular is the floor, Late Fusion the baseline of the joint models
UNION = {
    "popular": 0.46,
    "late_fusion": 0.60,
    "keyword": 0.66,
    "latent_feature": 0.68,
    "relative_representation": 0.44,
}
# uncorrected p of each union pair the sentence uses
P_UNION = {
    ("late_fusion", "popular"): 0.02,  # the largest of the four vs Popular: Holm's last step, < 0.05 passes
    ("keyword", "popular"): 0.001,
    ("latent_feature", "popular"): 0.0001,
    ("relative_representation", "popular"): 0.0001,  # significant, but below Popular: does not "beat" it
    ("latent_feature", "keyword"): 0.30,
    ("latent_feature", "late_fusion"): 0.001,
    ("latent_feature", "relative_representation"): 1e-6,
    ("keyword", "late_fusion"): 0.04,
    ("late_fusion", "relative_representation"): 1e-5,
    ("keyword", "relative_representation"): 1e-6,
}


def _write(results, p_union=P_UNION, union=UNION):
    rows = [
        pairwise_row(
            "union",
            a,
            b,
            union[a],
            union[b],
            p,
            600,
            statistic=1.0,
            p_holm=min(1.0, p * 10),
            significant=p * 10 < 0.05,
        )
        for (a, b), p in p_union.items()
    ]
    # one subset cell: Conversation on conversations-only, clearly above Popular
    rows.append(
        pairwise_row(
            "conversations_only",
            "conversation",
            "popular",
            0.66,
            0.52,
            0.003,
            90,
            statistic=9.0,
            p_holm=0.1,
            significant=False,
        )
    )
    pd.DataFrame(rows).to_csv(results / "pairwise_tests.csv", index=False)
    boot = [bootstrap_row(m, "union", v, v - 0.03, v + 0.03, 600) for m, v in union.items()]
    boot.append(bootstrap_row("conversation", "conversations_only", 0.66, 0.56, 0.75, 90))
    pd.DataFrame(boot).to_csv(results / "bootstrap_ci.csv", index=False)


def test_headline_claims_follow_holm_within_each_family(tmp_path):
    _write(tmp_path)
    [(kind, text)] = headline(tmp_path, 3, 0.05)
    assert kind == "p"
    # vs Popular, Holm over the four learned models, sorted p: 1e-4 (< 0.0125), 1e-4 (< 0.0167), 0.001
    # (< 0.025), 0.02 (< 0.05): all reject, but Relative Representation is below Popular, so three beat it
    assert (
        "3 of 4 learned models beat Popular on the union of 600 test PEs (not: Relative Representation)"
        in text
    )
    assert "(by subset: conversations-only 1 of 1)" in text  # each subset's family is corrected on its own
    assert "**Latent Feature** (HR@3 0.680, 95% CI [0.650, 0.710]), level with Keyword" in text
    # vs Late Fusion, Holm over the three joint models: 1e-5 (Relative Representation, below) and 0.001 pass,
    # Keyword's 0.04 passes as the largest (< 0.05)
    assert "Keyword +0.060 (significant)" in text
    assert "Latent Feature +0.080 (significant)" in text
    assert "Relative Representation -0.160 (significant)" in text


def test_headline_a_borderline_model_fails_once_the_family_is_corrected(tmp_path):
    p_union = dict(P_UNION)
    p_union[("late_fusion", "popular")] = (
        0.03  # alone significant; Holm's last step needs < 0.05, so still passes
    )
    p_union[("keyword", "popular")] = (
        0.04  # now two p in (0.0167, 0.05): the third step needs < 0.025 and fails
    )
    _write(tmp_path, p_union)
    [(_, text)] = headline(tmp_path, 3, 0.05)
    assert "1 of 4 learned models beat Popular" in text
    assert "(not: Late Fusion, Keyword and Relative Representation)" in text


def test_headline_says_every_model_when_all_clear_popular(tmp_path):
    union = dict(UNION, relative_representation=0.64)
    _write(tmp_path, union=union)
    [(_, text)] = headline(tmp_path, 3, 0.05)
    assert text.startswith("**In one sentence:** Every learned model beats Popular on the union")


def test_headline_is_absent_without_tests(tmp_path):
    assert headline(tmp_path, 3, 0.05) == []


def test_headline_names_a_tie_at_the_top_in_the_papers_order(tmp_path):
    _write(tmp_path, union=dict(UNION, keyword=0.68))  # Keyword and Latent Feature share the best mean
    [(_, text)] = headline(tmp_path, 3, 0.05)
    assert "the best on the union is **Keyword** (HR@3 0.680" in text
    # Holm over Keyword vs the other four: 1e-6 and 0.001 pass, Late Fusion's 0.04 needs < 0.025 and fails
    assert "tied with Latent Feature, level with Late Fusion;" in text
