import dataclasses

import pytest

from mmrec_ray.config import ModelParams
from mmrec_ray.errors import ConfigError
from mmrec_ray.models import registry
from mmrec_ray.models.params import HYPERPARAMETERS_FILE, TABLE_2, _table, default_params


def test_yaml_file_holds_table_2():
    table = _table(str(HYPERPARAMETERS_FILE))
    assert set(table) == set(TABLE_2)
    for name, values in TABLE_2.items():
        assert dataclasses.asdict(table[name]) == dataclasses.asdict(
            dataclasses.replace(ModelParams(), **values)
        )


def test_every_trained_reported_model_has_table_2_values():
    # The paper's models start from its Table 2; models beyond the paper start from ModelParams and are tuned.
    trained = [n for n in registry.PAPER_MODELS if registry.get(n).tunable]
    assert set(trained) <= set(TABLE_2)
    assert default_params("conversation") == ModelParams(batch_size=512, units=64, dropout=0.2)
    assert default_params("latent_feature").dropout == 0.3


def test_fallbacks_and_copies(tmp_path):
    missing = tmp_path / "none.yaml"
    assert default_params("session", missing) == default_params("session")  # the Python table
    assert default_params("popular") == ModelParams()
    params = default_params("keyword")
    params.units = 1
    assert default_params("keyword").units == 256
    bad = tmp_path / "bad.yaml"
    bad.write_text("hyperparameters:\n  keyword:\n    width: 3\n")
    with pytest.raises(ConfigError, match="width"):
        default_params("keyword", bad)
