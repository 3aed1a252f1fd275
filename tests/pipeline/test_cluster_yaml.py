"""cluster.yaml is checked offline against Ray's own schema and validator (from the installed wheel)."""

import json
from pathlib import Path

import jsonschema
import ray
import yaml

CLUSTER = Path(__file__).resolve().parents[2] / "cluster.yaml"


def test_cluster_yaml_matches_ray_schema():
    schema = json.loads((Path(ray.__file__).parent / "autoscaler" / "ray-schema.json").read_text())
    config = yaml.safe_load(CLUSTER.read_text())
    jsonschema.validate(config, schema)


def test_cluster_yaml_passes_ray_validator():
    from ray.autoscaler._private.util import prepare_config, validate_config

    # The launcher fills the provider's defaults first, then validates; both run offline.
    validate_config(prepare_config(yaml.safe_load(CLUSTER.read_text())))


def test_cluster_installs_project_and_has_gpu_workers():
    config = yaml.safe_load(CLUSTER.read_text())
    commands = " ".join(config["setup_commands"])
    assert commands.index("torch==") < commands.index("pip install -q -e .")
    assert config["available_node_types"]["gpu_worker"]["max_workers"] > 0
