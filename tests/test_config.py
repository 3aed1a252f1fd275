import pytest

from mmrec_ray.config import (
    ExperimentConfig,
    ModelParams,
    apply_overrides,
    dump_config,
    from_dict,
    load_config,
)
from mmrec_ray.errors import ConfigError


def test_defaults_match_the_paper_protocol():
    cfg = ExperimentConfig()
    assert cfg.training.max_epochs == 100
    assert cfg.training.patience == 5
    assert cfg.training.learning_rate == pytest.approx(1e-3)
    assert cfg.fit.seeds == [0, 1, 2, 3, 4]
    assert len(cfg.models) == 10


def test_unknown_key_is_rejected_with_its_path():
    with pytest.raises(ConfigError, match=r"config\.training: unknown key\(s\) \['epochs'\]"):
        from_dict(ExperimentConfig, {"training": {"epochs": 3}})


def test_wrong_type_is_rejected():
    with pytest.raises(ConfigError, match="training.max_epochs: expected an integer"):
        from_dict(ExperimentConfig, {"training": {"max_epochs": "many"}})
    with pytest.raises(ConfigError, match="not one of"):
        from_dict(ExperimentConfig, {"data": {"source": "kaggle"}})


def test_nested_model_params_and_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("hyperparameters:\n  keyword: {batch_size: 512, units: 256, dropout: 0.2}\n")
    cfg = load_config(path, ["training.max_epochs=3", "hyperparameters.keyword.units=64"])
    assert cfg.training.max_epochs == 3
    assert cfg.hyperparameters["keyword"] == ModelParams(batch_size=512, units=64, dropout=0.2)
    # ints are accepted where floats are expected, not the reverse
    assert from_dict(ModelParams, {"dropout": 0}).dropout == 0.0


def test_round_trip_through_yaml(tmp_path):
    cfg = load_config(None, ["name=x", "fit.seeds=[3, 4]"])
    path = tmp_path / "resolved.yaml"
    path.write_text(dump_config(cfg))
    assert load_config(path) == cfg


def test_bad_override_syntax():
    with pytest.raises(ConfigError, match="expected key=value"):
        apply_overrides({}, ["training.max_epochs"])


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")


def test_fidelity_switches_load_typed_and_reach_the_models_training_config():
    from mmrec_ray.config import ConfigError, load_config

    cfg = load_config(None, ["fidelity.latent_feature.sample_weights=none", "fidelity.init=torch"])
    assert cfg.training.fidelity.latent_feature.sample_weights == "none"
    assert cfg.training.fidelity.init == "torch"
    for bad in (
        "fidelity.latent_feature.sample_weights=sometimes",
        "fidelity.knowledge_distillation.validation_fraction=1.5",
        "fidelity.adam_epsilon=0",
        "fidelity.vocabulary.spelling=per_row",
        "training.fidelity.init=torch",  # the switches live in the top-level section only
    ):
        with pytest.raises(ConfigError):
            load_config(None, [bad])


@pytest.mark.parametrize(
    "override, field",
    [
        ("training.max_epochs=-1", "training.max_epochs"),
        ("training.max_epochs=0", "training.max_epochs"),
        ("tune.units=[]", "tune.units"),
        ("fit.seeds=[]", "fit.seeds"),
        ("data.scale=0", "data.scale"),
        ("fit.cpus_per_worker=-1", "fit"),
        ("evaluation.ks=[0, 100]", "evaluation.ks"),
        ("name=../../evil", "name"),
        ("models=[popular, sesion]", "models"),
        ("evaluation.main_k=7", "evaluation.main_k"),
        ("tune.dropout=[1.5]", "tune.dropout"),
    ],
)
def test_impossible_values_are_refused_at_load_naming_the_field(override, field):
    with pytest.raises(ConfigError) as error:
        load_config(None, [override])
    assert str(error.value).startswith(f"config: {field}") or f"{field}:" in str(error.value)


def test_a_key_given_twice_in_a_yaml_file_is_an_error(tmp_path):
    path = tmp_path / "twice.yaml"
    path.write_text("name: a\ntraining:\n  max_epochs: 3\n  max_epochs: 4\n")
    with pytest.raises(ConfigError, match=r"twice.yaml: line 4: key 'max_epochs' is given twice"):
        load_config(path)
