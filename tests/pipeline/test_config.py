"""Every shipped config loads with the typed loader (unknown keys and wrong types would raise)."""

from pathlib import Path

import pytest

from mmrec_ray.config import load_config

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "configs").glob("*.yaml"))
RUN_CONFIGS = [p for p in CONFIGS if p.name in {"demo.yaml", "paper.yaml", "tiny.yaml", "reference.yaml"}]


@pytest.mark.parametrize("path", RUN_CONFIGS, ids=lambda p: p.name)
def test_config_loads(path):
    cfg = load_config(path)
    assert cfg.name == path.stem
    assert cfg.fit.seeds


@pytest.mark.parametrize("path", RUN_CONFIGS, ids=lambda p: p.name)
def test_every_key_has_a_why_comment(path):
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if line.strip() and not line.lstrip().startswith("#") and not line.rstrip().endswith(":"):
            assert "  # " in line, f"{path.name}:{number} has no why-comment: {line!r}"


def test_paper_uses_fractional_gpus():
    cfg = load_config(RUN_CONFIGS[[p.name for p in RUN_CONFIGS].index("paper.yaml")])
    assert 0 < cfg.tune.gpus_per_trial < 1
    assert cfg.embed.num_gpus == 1


def _leaves(prefix, value):
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _leaves(f"{prefix}.{key}", item)
    else:
        yield prefix


def test_reference_config_sets_every_fidelity_switch_explicitly():
    """configs/reference.yaml is the reference code's behaviour: a switch added later must be set there too."""
    import dataclasses

    import yaml

    from mmrec_ray.config import FidelityConfig

    path = CONFIGS[[p.name for p in CONFIGS].index("reference.yaml")]
    written = set(_leaves("fidelity", yaml.safe_load(path.read_text())["fidelity"]))
    assert written == set(_leaves("fidelity", dataclasses.asdict(FidelityConfig())))
    cfg = load_config(path)
    assert cfg.fidelity.latent_feature.padding == "reference"  # the one defect a switch reproduces
    assert (cfg.evaluation.hr_test, cfg.evaluation.map_test) == ("mcnemar_majority", "anova")
    assert cfg.training.fidelity == cfg.fidelity  # what every model sees
