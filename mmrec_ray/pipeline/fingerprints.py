"""Which config fields each stage's outputs depend on, so that a changed config never reuses stale outputs.

Every stage that runs records a fingerprint in ``RUN_DIR/manifest.json``: a hash of the values of exactly the
config fields it reads (``STAGE_FIELDS``) and of the fingerprint of the stage before it, so a change reaches every
stage downstream of the one it affects and no stage upstream. Resource settings (CPUs, GPUs, actors, threads,
concurrency) change how fast a stage runs, not what it writes, and are left out.

When a run finds outputs whose recorded fingerprint differs from the config's, it refuses in one line naming the
changed fields and the first stale stage; ``mmrec run --from STAGE`` removes the outputs of that stage and of
every stage after it, and runs them again. A run made before fingerprints existed is compared through the
``config.yaml`` it left (the config of its last run).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

from mmrec_ray.config import ExperimentConfig

STAGES = ("generate", "prepare", "embed", "tensors", "tune", "fit", "aggregate", "analyses", "report")

_MODEL_FIELDS = ("seed", "models", "hyperparameters", "training", "fidelity")
# Left out of a stage's own values: resources change how fast a stage runs, not what it writes; an `enabled`
# switch decides whether the stage runs, not what it wrote (fit reads tune.enabled: it is in fit's fields).
_NOT_CONTENT = {
    "tune.enabled",
    "analyses.enabled",
    "embed.batch_size",
    "embed.token_budget",
    "embed.num_gpus",
    "embed.num_actors",
    "embed.num_cpus_per_actor",
    "embed.threads_per_actor",
    "embed.cache_size",
    "training.device",
    "training.num_threads",
    "training.fidelity",  # a copy of the top-level `fidelity`, which is fingerprinted where it is read
    "tune.cpus_per_trial",
    "tune.gpus_per_trial",
    "tune.max_concurrent_trials",
    "fit.cpus_per_worker",
    "fit.gpus_per_worker",
    "fit.max_concurrent_seeds",
    "analyses.use_ray",
    "analyses.cpus_per_task",
}
STAGE_FIELDS: dict[str, tuple[str, ...]] = {
    "generate": ("data",),
    "prepare": ("fidelity.vocabulary", "fidelity.keyword"),
    "embed": ("embed",),
    "tensors": (),
    "tune": (*_MODEL_FIELDS, "tune"),
    "fit": (*_MODEL_FIELDS, "tune.enabled", "fit"),
    "aggregate": ("evaluation",),
    "analyses": ("analyses",),
    "report": (),
}
# What each stage writes (relative to the run dir); `--from` removes these for the stages it re-runs.
STAGE_OUTPUTS: dict[str, tuple[str, ...]] = {
    "generate": ("data",),
    "prepare": ("prepared",),
    "embed": ("prepared/parquet/conversation_embeddings",),
    "tensors": ("prepared/tensors", "prepared/prepared.json"),
    "tune": ("tune", "ray/tune"),
    "fit": ("predictions", "checkpoints", "ray/train"),
    "aggregate": ("results", "figures"),
    "analyses": ("analyses",),
    "report": ("report.md", "report.html"),
}


def _flatten(prefix: str, value: Any) -> dict[str, Any]:
    if dataclasses.is_dataclass(value):
        value = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    if isinstance(value, dict) and value and all(isinstance(k, str) for k in value):
        out: dict[str, Any] = {}
        for key, item in value.items():
            name = f"{prefix}.{key}" if prefix else key
            if name not in _NOT_CONTENT:
                out.update(_flatten(name, item))
        return out
    if dataclasses.is_dataclass(value):
        value = dataclasses.asdict(value)
    return {prefix: value}


def stage_values(cfg: ExperimentConfig, stage: str) -> dict[str, Any]:
    """The leaf config values ``stage`` depends on, by dotted name (``tune.units``: [64, 128]). The tune stage
    also depends on what the models declare in their files (``declared_values``)."""
    values: dict[str, Any] = {}
    for field in STAGE_FIELDS[stage]:
        node: Any = cfg
        for part in field.split("."):
            node = getattr(node, part)
        values.update(_flatten(field, node))
    if stage == "tune":
        values.update(declared_values(cfg))
    return values


def declared_values(cfg: ExperimentConfig) -> dict[str, Any]:
    """What the tune stage searches that lives in the model files, not in the config: each tuned model's search
    space as the config resolves it (``tune.search_space.{model}.{field}``: ``grid([64, 128])``) and the defaults
    of the model's own hyperparameters (``tune.model_defaults.{model}.{name}``). Editing a model's declared space
    or defaults makes the tune stage (and everything after it) stale, as a config change would."""
    from mmrec_ray.models import registry
    from mmrec_ray.models import space as spaces

    try:
        names = registry.dependency_order(list(cfg.tune.models or cfg.models))
    except (KeyError, ValueError):  # an unknown model: the config check names it; nothing to add here
        return {}
    values: dict[str, Any] = {}
    for name in names:
        try:
            resolved = spaces.resolve(cfg.tune, name)
        except Exception as error:  # a space the config cannot apply: stale whatever it was, and say why
            values[f"tune.search_space.{name}"] = f"unresolvable: {error}"
            continue
        values.update({f"tune.search_space.{name}.{f}": repr(d) for f, d in resolved.items()})
        if not resolved:
            values[f"tune.search_space.{name}"] = "nothing searched"
        own = registry.get(name).hyperparameters
        values.update({f"tune.model_defaults.{name}.{k}": v for k, v in own.items()})
    return values


def fingerprints(cfg: ExperimentConfig) -> dict[str, str]:
    """Stage -> sha256 of its own values and the previous stage's fingerprint."""
    out: dict[str, str] = {}
    previous = ""
    for stage in STAGES:
        payload = json.dumps(
            {"values": stage_values(cfg, stage), "upstream": previous}, sort_keys=True, default=str
        )
        previous = out[stage] = "sha256:" + hashlib.sha256(payload.encode()).hexdigest()
    return out


def changed_fields(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """``name: old -> new`` for every dotted field whose value differs."""
    keys = sorted(set(old) | set(new))
    return [f"{k}: {old.get(k, 'unset')} -> {new.get(k, 'unset')}" for k in keys if old.get(k) != new.get(k)]


def first_stale(recorded: dict[str, dict], current: dict[str, str]) -> str | None:
    """The first stage whose recorded fingerprint (of outputs it wrote) differs from the config's."""
    for stage in STAGES:
        stored = (recorded.get(stage) or {}).get("fingerprint")
        if stored is not None and stored != current[stage]:
            return stage
    return None


def stale_message(stage: str, previous: ExperimentConfig | None, cfg: ExperimentConfig, run_dir: str) -> str:
    """One line: what changed, which stage's outputs it makes stale, and the two ways on."""
    changes: list[str] = []
    if previous is not None:
        for s in STAGES[STAGES.index(stage) :]:
            changes += [
                c for c in changed_fields(stage_values(previous, s), stage_values(cfg, s)) if c not in changes
            ]
    detail = "; ".join(changes[:6]) + (f"; and {len(changes) - 6} more" if len(changes) > 6 else "")
    if not detail and stage == "tune":
        # The config's fields are the same: what differs is declared in a model file (its search space or
        # defaults; config.yaml cannot tell what they were), or the outputs predate their fingerprinting.
        detail = (
            "no config field differs: a model file's declared search space or hyperparameter defaults changed, "
            "or the outputs predate fingerprinting them"
        )

    return (
        f"{run_dir}: the outputs of the {stage} stage and after were made with another config"
        + (f" ({detail})" if detail else "")
        + f"; re-run with --from {stage} to redo them, or use another run directory"
    )


def remove_outputs(run_dir: Path, stages: list[str], log=print) -> list[str]:
    """Delete what ``stages`` wrote in the local run dir (a URI run's staging copy and its Ray state are handled
    by the caller through ``ray_env``); returns the removed relative paths."""
    removed = []
    for stage in stages:
        for relative in STAGE_OUTPUTS[stage]:
            path = Path(run_dir) / relative
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
            else:
                continue
            removed.append(relative)
    if removed:
        log(f"[--from {stages[0]}] removed {', '.join(removed)}")
    return removed
