"""Every shipped config loads with the typed loader (unknown keys and wrong types would raise)."""

from pathlib import Path

import pytest

from mmrec_ray.config import load_config

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "configs").glob("*.yaml"))
RUN_CONFIGS = [p for p in CONFIGS if p.name in {"demo.yaml", "paper.yaml", "tiny.yaml"}]


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
