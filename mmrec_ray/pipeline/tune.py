"""The `tune` stage (Ray Tune): every model's search space, ASHA on validation loss, best config per model.

* A model declares what Tune searches (``Recommender.search_space``: hyperparameter -> grid / choice / uniform /
  loguniform / randint, ``mmrec_ray.models.space``); the paper's models declare the paper's grid. A config changes
  it per model (``tune.spaces``) or per field for every model (``tune.batch_size`` ... lists). Nothing here lists
  fields: a hyperparameter a model declares is searched, recorded and selected like the paper's four.
* ``tune.search`` walks the spaces. ``grid`` (the paper's protocol): every combination of each model's lists.
  ``random`` (Optuna's RandomSampler) and ``optuna`` (TPE): ``tune.num_samples`` trials per model, drawn by a
  searcher seeded from the run's seed and the model's name, so a run with the same seed proposes the same trials.
* Models run in dependency levels (level 0: no dependencies — Conversation, Web Session, generators, encoders;
  level 1: their dependents — Late Fusion, Knowledge Distillation, ...). A dependent's trials use its
  dependencies fitted at their best config with seed 0. Grid search runs ONE Tune run per level over all of its
  models' points (models tune side by side). A sampling searcher runs one Tune run per (level, model), one after
  the other: each model needs its own space and searcher, and a searcher that learns from losses (TPE) must see
  only its own model's, which are not comparable with another model's.
* ASHA (metric ``val_loss``, mode ``min``, time attribute ``epoch``) runs one bracket set per model: losses of
  different models are not comparable (Knowledge Distillation adds teacher terms), so one model's trials never
  stop another's. ``tune.scheduler: none`` runs every trial to its end.
* Only the final stage is compared, by ASHA, by the searcher and by selection: epochs of a model's
  ``preliminary_stages`` (a pre-trained encoder's MSE, say, before the BCE the model is judged on) are reported
  under other keys, and ``epoch`` counts final-stage epochs. A trial stopped before its final stage has no loss
  and cannot win.
* The prepared arrays enter the object store once (``tune.with_parameters``); trials map them zero-copy.
* Packing: a trial reserves ``tune.cpus_per_trial`` CPUs and ``tune.gpus_per_trial`` GPUs, fractions included
  (0.25: four trials share a GPU), and runs torch with as many threads as CPUs it reserved (``trial_threads``;
  one for a fractional CPU), so many 1-CPU trials side by side do not oversubscribe the cores.
* Only validation loss is seen here; the test split is never touched.
* Resume: experiment names are ``{run name}_tune_level{k}`` (grid) or ``{run name}_tune_level{k}_{model}`` (no
  timestamps); an interrupted run is restored with ``Tuner.restore`` (the searcher's state with it); a finished
  level (``RUN_DIR/tune/levels/level{k}.parquet``) or model (``level{k}.{model}.parquet``) is skipped. Trial
  directories are ``{model}_{index}``: the grid point's index, or the searcher's proposal number.

Outputs: ``RUN_DIR/tune/best_configs.yaml`` and ``RUN_DIR/tune/trials.csv`` (one row per trial), which the
aggregate stage summarises in ``RUN_DIR/tune/sweep.{json,md}`` (``mmrec_ray.evaluation.sweep``).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import signal
import tempfile
import zlib
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from mmrec_ray.config import ExperimentConfig, ModelParams, TrainingConfig, from_dict
from mmrec_ray.data.tensors import PreparedData
from mmrec_ray.errors import ConfigError
from mmrec_ray.io import atomic_write_parquet, atomic_write_text
from mmrec_ray.models import registry
from mmrec_ray.models import space as spaces
from mmrec_ray.models.base import FitResult
from mmrec_ray.pipeline import console, fitting, tracking
from mmrec_ray.pipeline.ray_env import ray_storage_path
from mmrec_ray.training.runner import fit_one

PARAM_COLUMNS = ModelParams.core_fields()  # every trial row has these; models' own hyperparameters follow
TRIAL_COLUMNS = ["model", "trial", *PARAM_COLUMNS, "best_val_loss", "epochs", "status"]


# --------------------------------------------------------------------------------------------------- planning
def tuned_models(cfg: ExperimentConfig) -> list[str]:
    """The models to tune plus every component they depend on, each after its dependencies."""
    return registry.dependency_order(list(cfg.tune.models or cfg.models))


def dependency_levels(names: list[str]) -> list[list[str]]:
    """Group ``names`` (dependency-ordered) so that each model's dependencies sit in earlier levels."""
    level: dict[str, int] = {}
    for name in names:
        level[name] = 1 + max((level[d] for d in registry.get(name).depends_on), default=-1)
    return [[n for n in names if level[n] == k] for k in range(max(level.values(), default=-1) + 1)]


def search_space(cfg: ExperimentConfig, name: str) -> dict[str, spaces.Space]:
    """What Tune searches for ``name``: the space the model declares, as the config changes it. Empty when it has
    nothing to tune (Popular): it then keeps its configured parameters."""
    return spaces.resolve(cfg.tune, name)


def grid(cfg: ExperimentConfig, name: str) -> list[dict[str, Any]]:
    """The grid points of one model: the product of its space's lists, in declaration order, each the model's
    full params as a dict (``extra`` included)."""
    dimensions = search_space(cfg, name)
    if not dimensions:
        return []
    ranges = [f for f, d in dimensions.items() if not d.is_list]
    if ranges:  # the config check refuses this at load; a space changed since then must not half-run
        raise ConfigError(
            f"tune.spaces.{name}: grid search cannot walk the ranges {ranges}; use tune.search=random"
        )
    base = fitting.base_params(cfg, name)
    return [
        dataclasses.asdict(base.with_values(dict(zip(dimensions, values))))
        for values in itertools.product(*(d.values for d in dimensions.values()))
    ]


def sampled_params(cfg: ExperimentConfig, name: str) -> dict[str, Any]:
    """The params of one model for a sampling searcher: its configured values, with the Ray Tune domain of each
    searched field (``tune.choice``, ``tune.uniform``, ``tune.loguniform``, ``tune.randint``) in its place."""
    params = dataclasses.asdict(fitting.base_params(cfg, name))
    for field, dimension in search_space(cfg, name).items():
        (params if field in PARAM_COLUMNS else params["extra"])[field] = dimension.to_ray(cfg.tune.search)
    return params


def trial_threads(cfg: ExperimentConfig) -> int:
    """torch's intra-op threads in one trial: its CPU allocation (at least one; ``training.num_threads``, when
    set, may only lower it). Trials pack without oversubscription: 1-CPU trials on a 16-core node run sixteen
    single-threaded trials, not sixteen trials of sixteen threads each."""
    threads = max(1, int(cfg.tune.cpus_per_trial))
    return min(threads, cfg.training.num_threads) if cfg.training.num_threads > 0 else threads


def trial_resources(cfg: ExperimentConfig) -> dict[str, float]:
    """What each trial reserves from Ray: ``tune.cpus_per_trial`` and ``tune.gpus_per_trial`` as given, fractions
    included (``gpus_per_trial: 0.25`` puts four trials on one GPU)."""
    return {"cpu": float(cfg.tune.cpus_per_trial), "gpu": float(cfg.tune.gpus_per_trial)}


def _trial_training(cfg: ExperimentConfig) -> TrainingConfig:
    training = dataclasses.replace(cfg.training, num_threads=trial_threads(cfg))
    return fitting.trial_training(training, cfg.tune.max_epochs, cfg.tune.cpus_per_trial)


def param_space(cfg: ExperimentConfig, names: list[str]) -> dict[str, Any]:
    """The ``param_space`` of one Tune run. Grid search: every grid point of every model in ``names`` (a level),
    as one ``tune.grid_search``. Random / optuna: the one model in ``names``, its searched fields as domains (the
    searcher adds ``index``, its proposal number)."""
    from ray import tune

    training = dataclasses.asdict(_trial_training(cfg))
    if cfg.tune.search == "grid":
        points = [
            {"model": name, "index": index, "params": point, "training": training}
            for name in names
            for index, point in enumerate(grid(cfg, name))
        ]
        return {"trial": tune.grid_search(points)}
    (name,) = names
    return {"trial": {"model": name, "params": sampled_params(cfg, name), "training": training}}


def searcher_seed(cfg: ExperimentConfig, name: str) -> int:
    """One model's searcher seed: from the run's seed and the model's name, so that a re-run proposes the same
    trials and two models do not draw the same sequence."""
    return zlib.crc32(f"{cfg.seed}:{name}".encode())


def searcher(cfg: ExperimentConfig, name: str):
    """The searcher of one model's Tune run: Optuna's RandomSampler (``random``) or TPE (``optuna``) behind
    Ray's ``OptunaSearch``, seeded by ``searcher_seed``. One implementation for both, so that both number their
    trials and resume alike. TPE's first 10 proposals are seeded draws; later ones follow the losses of the trials
    finished so far, so they repeat exactly only when trials finish in the same order (max_concurrent_trials=1)."""
    import optuna
    from ray.tune.search.optuna import OptunaSearch

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # a line per trial otherwise, in the stage's display
    seed = searcher_seed(cfg, name)
    sampler = (
        optuna.samplers.RandomSampler(seed=seed)
        if cfg.tune.search == "random"
        else optuna.samplers.TPESampler(seed=seed)
    )
    # best_val_loss: what selection compares (the best final-stage epoch), also on a trial ASHA stopped.
    return _model_searcher(OptunaSearch(metric="best_val_loss", mode="min", sampler=sampler))


def _model_searcher(inner):
    from ray.tune.search import Searcher

    class ModelSearcher(Searcher):
        """``inner`` for one model's run. It numbers its proposals (``config["trial"]["index"]``: the trial's
        directory name, stable across re-runs and resumes), and passes a trial's result on only when the trial
        ends: preliminary-stage reports carry no final-stage loss, and there is no pruner to feed (ASHA stops
        trials). Its own metric stays unset, so Tune does not require one in every report."""

        def __init__(self, searcher) -> None:
            super().__init__(metric=None, mode=None)
            self.searcher = searcher  # Tune saves and restores wrappers through this attribute
            self.proposed = 0

        def set_search_properties(self, metric, mode, config, **spec) -> bool:
            return self.searcher.set_search_properties(metric, mode, config, **spec)

        def suggest(self, trial_id: str):
            config = self.searcher.suggest(trial_id)
            if isinstance(config, dict):
                config.setdefault("trial", {})["index"] = self.proposed
                self.proposed += 1
            return config

        def on_trial_result(self, trial_id: str, result: dict) -> None:
            pass

        def on_trial_complete(self, trial_id: str, result=None, error: bool = False) -> None:
            self.searcher.on_trial_complete(trial_id, result=result, error=error)

        def get_state(self) -> dict:
            return {"proposed": self.proposed}

        def set_state(self, state: dict) -> None:
            self.proposed = state["proposed"]

        def save(self, checkpoint_path: str) -> None:
            self.searcher.save(checkpoint_path)

        def restore(self, checkpoint_path: str) -> None:
            self.searcher.restore(checkpoint_path)

    return ModelSearcher(inner)


def _scheduler(cfg: ExperimentConfig, state_path: Path):
    if cfg.tune.scheduler == "none":
        from ray.tune.schedulers import FIFOScheduler

        return FIFOScheduler()
    return _per_model_asha(cfg, state_path)


# --------------------------------------------------------------------------------------------------- scheduler
class AshaState:
    """What ASHA has decided so far in one tune level, kept as JSON beside the run (``RUN_DIR/tune/asha``).

    ``Tuner.restore`` brings back the trials but not the scheduler's state (Ray issue #30838): a restored ASHA
    would start with empty rungs and stop different trials than the uninterrupted sweep. This file holds, per
    model, every rung's recorded rewards, each trial's bracket and the trials it stopped (with the epoch), and
    is rewritten after each decision, so a sweep killed at any point resumes with the rungs it had.
    JSON, not pickle: a file on shared storage must not be able to run code when it is read.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def load(self) -> dict[str, Any]:
        if not self.path.exists():
            return {}
        try:
            return json.loads(self.path.read_text())
        except (OSError, ValueError) as error:
            raise ConfigError(
                f"{self.path}: unreadable ASHA state ({error}); delete it to re-run the level"
            ) from None

    def save(self, models: dict[str, Any]) -> None:
        atomic_write_text(self.path, json.dumps(models, sort_keys=True))


def _per_model_asha(cfg: ExperimentConfig, state_path: str | Path):
    from ray.tune.schedulers import AsyncHyperBandScheduler, FIFOScheduler, TrialScheduler

    class PerModelASHA(FIFOScheduler):
        """ASHA with one bracket set per model (``trial.config["trial"]["model"]``), its state in ``AshaState``."""

        def __init__(self) -> None:
            super().__init__()
            self._state = AshaState(state_path)
            self._by_model: dict[str, AsyncHyperBandScheduler] = {}
            self._stopped: dict[str, dict[str, int]] = {}  # model -> trial id -> epoch ASHA stopped it at
            self._loaded = False

        def _new(self) -> AsyncHyperBandScheduler:
            return AsyncHyperBandScheduler(
                time_attr="epoch",
                metric="val_loss",
                mode="min",
                # "epoch" counts final-stage epochs only, so at most max_epochs; one more, so that ASHA
                # never stops a trial at its last epoch, before the trial saves its checkpoint.
                max_t=max(cfg.tune.max_epochs + 1, cfg.tune.grace_period),
                grace_period=cfg.tune.grace_period,
                reduction_factor=cfg.tune.reduction_factor,
            )

        def _restore(self) -> None:
            """Once, before the first decision: the rungs an interrupted run of this level had reached."""
            self._loaded = True
            for name, saved in self._state.load().items():
                scheduler = self._new()
                milestones = [[m for m, _ in bracket._rungs] for bracket in scheduler._brackets]
                if milestones != [[m for m, _ in rungs] for rungs in saved["rungs"]]:
                    raise ConfigError(
                        f"{self._state.path}: ASHA rungs of {name} were {saved['rungs']} when interrupted, the "
                        f"config now gives {milestones}; delete {self._state.path.parent} to re-run the sweep"
                    )
                for bracket, rungs in zip(scheduler._brackets, saved["rungs"]):
                    bracket._rungs = [(milestone, dict(recorded)) for milestone, recorded in rungs]
                scheduler._trial_info = {t: scheduler._brackets[i] for t, i in saved["trial_bracket"].items()}
                scheduler._num_stopped = saved["num_stopped"]
                self._by_model[name] = scheduler
                self._stopped[name] = dict(saved["stopped"])

        def _save(self) -> None:
            models = {}
            for name, scheduler in self._by_model.items():
                index = {id(b): i for i, b in enumerate(scheduler._brackets)}
                models[name] = {
                    "rungs": [[[m, recorded] for m, recorded in b._rungs] for b in scheduler._brackets],
                    "trial_bracket": {t: index[id(b)] for t, b in scheduler._trial_info.items()},
                    "num_stopped": scheduler._num_stopped,
                    "stopped": self._stopped.get(name, {}),
                }
            self._state.save(models)

        def _of(self, trial) -> tuple[str, AsyncHyperBandScheduler]:
            if not self._loaded:
                self._restore()
            name = trial.config["trial"]["model"]
            if name not in self._by_model:
                self._by_model[name] = self._new()
            return name, self._by_model[name]

        def set_search_properties(self, metric, mode, **spec) -> bool:
            return True

        def on_trial_add(self, tune_controller, trial) -> None:
            name, scheduler = self._of(trial)
            if trial.trial_id not in scheduler._trial_info:  # a restored trial keeps its bracket
                scheduler.on_trial_add(tune_controller, trial)
                self._save()

        def on_trial_result(self, tune_controller, trial, result):
            name, scheduler = self._of(trial)
            stopped_at = self._stopped.get(name, {}).get(trial.trial_id)
            if stopped_at is not None and result.get("epoch", -1) >= stopped_at:
                # Stopped before the interruption, restarted by the restore: the same decision again.
                return TrialScheduler.STOP
            action = scheduler.on_trial_result(tune_controller, trial, result)
            if action == TrialScheduler.STOP:
                self._stopped.setdefault(name, {})[trial.trial_id] = int(result["epoch"])
            self._save()
            return action

        def on_trial_complete(self, tune_controller, trial, result) -> None:
            _, scheduler = self._of(trial)
            if trial.trial_id in scheduler._trial_info:
                scheduler.on_trial_complete(tune_controller, trial, result)
                self._save()

        def on_trial_remove(self, tune_controller, trial) -> None:
            _, scheduler = self._of(trial)
            scheduler._trial_info.pop(trial.trial_id, None)
            self._save()

        def on_trial_error(self, tune_controller, trial) -> None:
            _, scheduler = self._of(trial)
            scheduler._trial_info.pop(trial.trial_id, None)
            self._save()

        def debug_string(self) -> str:
            return "PerModelASHA: " + ", ".join(sorted(self._by_model))

    return PerModelASHA()


# --------------------------------------------------------------------------------------------------- trial
class _StageReports:
    """The metrics one trial reports, built so that ASHA and selection only ever see final-stage losses.

    An epoch of one of the model's ``preliminary_stages`` is reported as ``stage_epoch`` / ``stage_val_loss``:
    it measures something else (an MSE over embedding dimensions, against the final stage's BCE), so neither
    ASHA's metric (``val_loss``) nor its time attribute (``epoch``) is set and ASHA lets the trial continue.
    ``epoch`` counts final-stage epochs, so every trial of a model reaches a rung at the same final-stage epoch.
    """

    def __init__(self, model: str, preliminary: tuple[str, ...]) -> None:
        self.model, self.preliminary = model, tuple(preliminary)
        self.final_stage: str | None = None
        self.epochs, self.best = 0, math.inf

    def epoch(self, stage: str, epoch: int, train_loss: float, val_loss: float) -> dict[str, Any]:
        if stage in self.preliminary:
            return {
                "model": self.model,
                "stage": stage,
                "stage_epoch": epoch,
                "train_loss": train_loss,
                "stage_val_loss": val_loss,
                "done": False,
            }
        if self.final_stage is not None and stage != self.final_stage:
            # Two criterion stages would put two kinds of loss under one key again: refuse rather than mix.
            raise ValueError(
                f"{self.model} reported epochs of stages {self.final_stage!r} and {stage!r}; list every stage "
                f"but the last in its `preliminary_stages` (now {self.preliminary})"
            )
        self.final_stage = stage
        self.epochs += 1
        self.best = min(self.best, val_loss)
        return {
            "model": self.model,
            "stage": stage,
            "epoch": self.epochs,
            "train_loss": train_loss,
            "val_loss": val_loss,
            "best_val_loss": self.best,
            "done": False,
        }

    def done(self, result: FitResult) -> dict[str, Any]:
        """The last report. Its loss is the best final-stage epoch's: a FitResult may combine the losses of
        several stages; only a model that reported no final-stage epoch falls back to it."""
        best = self.best if math.isfinite(self.best) else result.best_validation_loss
        return {
            "model": self.model,
            "stage": self.final_stage or "fit",
            "epoch": max(self.epochs, 1),
            "val_loss": best,
            "best_val_loss": best,
            "done": True,
            # Set by the trial itself: Tune also marks the result that ASHA stops a trial on with done=True.
            "fit_complete": True,
        }


def _trial(config: dict[str, Any], data: PreparedData = None, dependencies: dict[str, bytes] = None) -> None:
    """One Tune trial: fit ``config["trial"]["model"]`` with its ``params`` at seed 0, report every epoch."""
    from ray import tune

    config = config["trial"]
    name = config["model"]
    params = ModelParams(**config["params"])
    training = from_dict(TrainingConfig, config["training"], where="training")
    _set_threads(training)  # before anything computes: loading dependencies too
    store = fitting.make_store(data, training)
    deps = {
        d: fitting.load_checkpoint_bytes(dependencies[d], store, training)
        for d in registry.get(name).depends_on
    }
    reports = _StageReports(name, registry.get(name).preliminary_stages)

    def report(stage: str, epoch: int, train_loss: float, val_loss: float) -> None:
        tune.report(reports.epoch(stage, epoch, train_loss, val_loss))

    model, result = fit_one(name, 0, store, params, training, deps, report)
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / fitting.CHECKPOINT_FILE).write_bytes(fitting.checkpoint_bytes(model, result, training))
        tune.report(reports.done(result), checkpoint=tune.Checkpoint.from_directory(tmp))


def _set_threads(training: TrainingConfig) -> None:
    """torch's threads in this worker process: the trial's CPU allocation (``trial_threads``). An actor Tune
    reuses for the next trial keeps them; the training loop sets them again per fit."""
    import torch

    if training.num_threads > 0:
        torch.set_num_threads(training.num_threads)


# --------------------------------------------------------------------------------------------------- stage
def tune_dir(run_dir: Path) -> Path:
    return Path(run_dir) / "tune"


def is_done(run_dir: Path) -> bool:
    return (tune_dir(run_dir) / "best_configs.yaml").exists() and (tune_dir(run_dir) / "trials.csv").exists()


def run_tune(cfg: ExperimentConfig, run_dir: Path, log=print) -> dict[str, dict[str, Any]]:
    """Tune every model (dependency level by level); write best_configs.yaml and trials.csv; return the best."""
    import ray

    out = tune_dir(run_dir)
    levels = dependency_levels(tuned_models(cfg))
    needed_later = {d for level in levels for n in level for d in registry.get(n).depends_on}
    data = PreparedData.load(Path(run_dir) / "prepared" / "tensors", mmap=False)
    data_ref = ray.put(data)  # once, shared by every trial of every level
    del data
    best: dict[str, dict[str, Any]] = {}
    dependency_payloads: dict[str, bytes] = {}
    all_trials = []
    for k, names in enumerate(levels):
        level_csv = out / "levels" / f"level{k}.parquet"
        if level_csv.exists():
            trials = pd.read_parquet(level_csv)
            log(f"  tune level {k} ({', '.join(names)}): already done, {len(trials)} trials")
        else:
            trials = _tune_level(cfg, run_dir, k, names, data_ref, dependency_payloads, log)
            atomic_write_parquet(level_csv, trials)
        all_trials.append(trials)
        for name in names:
            best[name] = _select(cfg, name, trials)
            if name in needed_later:
                dependency_payloads[name] = _dependency_payload(
                    cfg, run_dir, k, name, best[name], data_ref, dependency_payloads
                )
    table = pd.concat(all_trials, ignore_index=True) if all_trials else pd.DataFrame(columns=TRIAL_COLUMNS)
    atomic_write_text(out / "trials.csv", trial_table(table).to_csv(index=False))
    atomic_write_text(out / "best_configs.yaml", yaml.safe_dump(best, sort_keys=False))
    return best


def trial_table(trials: pd.DataFrame) -> pd.DataFrame:
    """``trials.csv``: TRIAL_COLUMNS, with a column per model-declared hyperparameter that some trial set
    (from each trial's exact params) before the losses."""
    extra: list[dict[str, Any]] = [
        json.loads(p)["extra"] if isinstance(p, str) else {}
        for p in trials.get("params", [None] * len(trials))
    ]
    names = sorted({k for values in extra for k, v in values.items() if v is not None})
    table = trials.reset_index(drop=True)
    for name in names:
        table[name] = [values.get(name) for values in extra]
    split = TRIAL_COLUMNS.index("best_val_loss")
    return table[TRIAL_COLUMNS[:split] + names + TRIAL_COLUMNS[split:]]


def _select(cfg: ExperimentConfig, name: str, trials: pd.DataFrame) -> dict[str, Any]:
    """Lowest best final-stage validation loss of the model's trials (a trial without one, stopped before its
    final stage, has NaN and is skipped); the configured parameters when there is none."""
    rows = trials[(trials["model"] == name) & trials["best_val_loss"].notna()]
    rows = rows[rows["best_val_loss"].apply(math.isfinite)]
    params = fitting.base_params(cfg, name)
    if rows.empty:
        return {
            **dataclasses.asdict(params),
            "val_loss": None,
            "trial": None,
            "source": "configured (nothing to tune)",
        }
    row = rows.sort_values(["best_val_loss", "trial"], kind="stable").iloc[0]
    if isinstance(row.get("params"), str):
        params = ModelParams(**json.loads(row["params"]))  # exactly what the winning trial ran
    else:  # a level file from before trials kept their params: the paper's four columns
        for f in PARAM_COLUMNS:
            if f in row and not pd.isna(row[f]):
                params = dataclasses.replace(params, **{f: type(getattr(params, f))(row[f])})
    return {
        **dataclasses.asdict(params),
        "val_loss": float(row["best_val_loss"]),
        "trial": str(row["trial"]),
        "source": "tune",
    }


def _tune_level(cfg, run_dir, k, names, data_ref, dependency_payloads, log) -> pd.DataFrame:
    """One dependency level: one Tune run over every model's grid (grid search), or one Tune run per model
    that has something to search (random / optuna), each kept as a parquet file once finished."""
    from ray import tune

    searched = [name for name in names if search_space(cfg, name)]
    if cfg.tune.search == "grid":
        space = param_space(cfg, names)
        total = len(space["trial"]["grid_search"])
        log(f"  tune level {k} ({', '.join(names)}): {total} trials")
        runs = (
            [(f"level{k}", f"{cfg.name}_tune_level{k}", space, None, total, f"tune level {k}")]
            if total
            else []
        )
    else:
        total = cfg.tune.num_samples
        log(
            f"  tune level {k} ({', '.join(names)}): {cfg.tune.search} search, {total} trials per model "
            f"({', '.join(searched) or 'nothing to search'})"
        )
        runs = [
            (
                f"level{k}.{name}",
                f"{cfg.name}_tune_level{k}_{name}",
                param_space(cfg, [name]),
                searcher(cfg, name),
                total,
                f"tune level {k} {name}",
            )
            for name in searched
        ]
    if not runs:
        return pd.DataFrame(columns=TRIAL_COLUMNS)
    from mmrec_ray.pipeline.ray_env import require_per_node

    require_per_node(
        "tune trials",
        {
            "CPU": (cfg.tune.cpus_per_trial, "tune.cpus_per_trial", "--set tune.cpus_per_trial=1"),
            "GPU": (cfg.tune.gpus_per_trial, "tune.gpus_per_trial", "--set tune.gpus_per_trial=0"),
        },
    )
    payload_refs = {name: dependency_payloads[name] for name in dependency_payloads}
    trainable = tune.with_resources(
        tune.with_parameters(_trial, data=data_ref, dependencies=payload_refs), trial_resources(cfg)
    )
    frames = []
    for tag, experiment, space, search_alg, total, label in runs:
        done = tune_dir(run_dir) / "levels" / f"{tag}.parquet"
        if search_alg is not None and done.exists():
            frames.append(pd.read_parquet(done))
            log(f"  {label}: already done")
            continue
        results = _run(cfg, run_dir, k, tag, experiment, trainable, space, search_alg, total, label, log)
        frames.append(_rows(results))
        if search_alg is not None:
            atomic_write_parquet(done, frames[-1])
    # Tune returns a restored run's trials in another order: rows in level order, then by trial name.
    table = pd.concat(frames, ignore_index=True)
    order = table["model"].map({name: i for i, name in enumerate(names)})
    table = table.assign(_order=order).sort_values(["_order", "trial"], kind="stable")
    return table.drop(columns="_order").reset_index(drop=True)


def _run(cfg, run_dir, k, tag, experiment, trainable, space, search_alg, total, label, log):
    """One Tune run (a grid level, or one model's sampled search); resumed when interrupted."""
    from ray import tune

    storage = ray_storage_path(run_dir) + "/tune"
    path = f"{storage}/{experiment}"
    if tune.Tuner.can_restore(path):
        log(f"  {label}: resuming {path}")
        _discard_partial_state_files(path)
        tuner = tune.Tuner.restore(path, trainable=trainable, resume_errored=True, param_space=space)
    else:
        tuner = tune.Tuner(
            trainable,
            param_space=space,
            tune_config=tune.TuneConfig(
                scheduler=_scheduler(cfg, tune_dir(run_dir) / "asha" / f"{tag}.json"),
                search_alg=search_alg,
                num_samples=1 if search_alg is None else total,
                max_concurrent_trials=cfg.tune.max_concurrent_trials or None,
                reuse_actors=True,
                trial_dirname_creator=trial_dirname,
            ),
            run_config=_run_config(cfg, run_dir, k, experiment, storage, total, label),
        )
    # Tune installs its own SIGINT handler and leaves it behind when fit() returns: without restoring ours, Ctrl-C
    # in every later stage of the same process would be swallowed (the run then "finishes" with exit 0).
    previous_handler = signal.getsignal(signal.SIGINT)
    try:
        with console.driver_output(Path(run_dir) / "logs" / f"tune_{tag}.log"):
            results = tuner.fit()
    finally:
        signal.signal(signal.SIGINT, previous_handler)
    if any(result.error is None and not (result.metrics or {}).get("done") for result in results):
        # Tune's own SIGINT handler ends fit() quietly, with the experiment saved and trials unfinished:
        # the run is interrupted, not done (the level resumes from that state on the next run).
        raise KeyboardInterrupt
    failed = [result for result in results if result.error is not None]
    if failed:
        # An errored trial has no loss: selecting among the others (or falling back to the configured
        # parameters when none is left) would hide a bug or a bad config behind a plausible-looking table.
        from mmrec_ray.errors import MmrecError, one_line

        names = ", ".join(Path(r.path).name for r in failed[:3]) + (" ..." if len(failed) > 3 else "")
        raise MmrecError(
            f"{label}: {len(failed)} of {len(results)} trials failed ({names}): {one_line(failed[0].error)} "
            f"(Tune's trace: {Path(failed[0].path) / 'error.txt'}; re-run to retry them)"
        )
    return results


def _run_config(cfg, run_dir, k, experiment, storage, total, label):
    """The RunConfig of every Tune run of the stage (grid levels and per-model searches alike)."""
    from ray import tune

    # Tune callbacks for every run of the stage; further ones (experiment trackers) belong in this list.
    callbacks = [] if console.verbose() else [_trial_progress(total, label)]
    callbacks += tracking.tune_callbacks(cfg, run_dir, k)
    return tune.RunConfig(
        name=experiment,
        storage_path=storage,
        verbose=1 if console.verbose() else 0,
        callbacks=callbacks,
        checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
        failure_config=tune.FailureConfig(max_failures=1),
    )


def _rows(results) -> pd.DataFrame:
    """One row per trial: the paper's four params as columns, the exact params as JSON, loss, epochs, status."""
    rows = []
    for result in results:
        config = result.config["trial"] if "trial" in (result.config or {}) else result.config
        metrics = result.metrics or {}
        status = (
            "ERROR" if result.error else ("COMPLETED" if metrics.get("fit_complete") else "STOPPED_BY_ASHA")
        )
        params = config["params"]
        rows.append(
            {
                "model": config["model"],
                "trial": Path(result.path).name,
                **{f: params.get(f) for f in PARAM_COLUMNS},
                "params": json.dumps(params, sort_keys=True, default=_plain),
                "best_val_loss": _best_loss(result, config["model"]),
                "epochs": metrics.get("epoch"),
                "status": status,
                "checkpoint": result.checkpoint.path if result.checkpoint else None,
            }
        )
    return pd.DataFrame(rows)


def _plain(value: Any) -> Any:
    """JSON for numpy scalars a searcher may hand out."""
    return value.item() if hasattr(value, "item") else str(value)


def _trial_progress(total: int, what: str):
    """A Tune callback that advances the stage's progress display as trials end (completed, stopped by ASHA
    or failed). The display is made at the first event: the callback is pickled with the experiment first."""
    from ray.tune import Callback

    class TrialProgress(Callback):
        def __init__(self) -> None:
            self.progress: console.Progress | None = None

        def _advance(self) -> None:
            if self.progress is None:
                self.progress = console.Progress(total, what, "trials")
            self.progress.update()

        def on_trial_complete(self, iteration, trials, trial, **info) -> None:
            self._advance()

        def on_trial_error(self, iteration, trials, trial, **info) -> None:
            self._advance()

        def __getstate__(self) -> dict:
            return {"progress": None}  # a terminal stream does not pickle; a restore starts a new display

    return TrialProgress()


def _discard_partial_state_files(experiment: str) -> None:
    """Tune saves its searcher state through hidden ``.<uuid>-tmp-...`` files that it renames into place; a run
    killed between the two leaves one behind, which the restore never reads. (Local storage only: on a URI
    the object store has no partial files.)"""
    if "://" in experiment or not Path(experiment).is_dir():
        return
    for leftover in Path(experiment).glob(".*-tmp-*"):
        if leftover.is_file():
            leftover.unlink(missing_ok=True)


def trial_dirname(trial) -> str:
    """``{model}_{grid index}``: stable across runs and resumes (Tune's default name carries a timestamp and a
    random experiment id), so ``trials.csv`` names the same trial the same way every time."""
    config = trial.config["trial"]
    return f"{config['model']}_{int(config['index']):03d}"


def _best_loss(result, model: str) -> float:
    return _final_stage_best(result.metrics_dataframe, registry.get(model).preliminary_stages)


def _final_stage_best(frame: pd.DataFrame | None, preliminary: tuple[str, ...]) -> float:
    """The best final-stage validation loss among a trial's reports; NaN when it reported none (stopped before
    its final stage), so that ``_select`` skips it however small its preliminary losses were."""
    if frame is None or frame.empty or "val_loss" not in frame:
        return math.nan
    if "stage" in frame:
        frame = frame[~frame["stage"].isin(preliminary)]
    losses = frame["val_loss"].dropna()
    return float(losses.min()) if not losses.empty else math.nan


def _dependency_payload(cfg, run_dir, k, name, chosen, data_ref, dependency_payloads) -> bytes:
    """The dependency fitted at its best config with seed 0: the winning trial's checkpoint, or a fresh fit
    when ASHA stopped that trial before it could save (the file is kept so resumes reuse it)."""
    path = tune_dir(run_dir) / "dependencies" / f"{name}.pt"
    if path.exists():
        return path.read_bytes()
    levels = pd.read_parquet(tune_dir(run_dir) / "levels" / f"level{k}.parquet")
    row = levels[levels["trial"] == chosen.get("trial")]
    checkpoint = row["checkpoint"].iloc[0] if not row.empty and "checkpoint" in row else None
    payload = None
    if isinstance(checkpoint, str):
        from ray.tune import Checkpoint

        with Checkpoint(checkpoint).as_directory() as directory:
            candidate = Path(directory) / fitting.CHECKPOINT_FILE
            if candidate.exists():
                payload = candidate.read_bytes()
    if payload is None:
        payload = _fit_dependency(cfg, name, chosen, data_ref, dependency_payloads)
    from mmrec_ray.io import atomic_write

    atomic_write(path, lambda p: p.write_bytes(payload))
    return payload


def _fit_dependency(cfg, name, chosen, data_ref, dependency_payloads) -> bytes:
    import ray

    resources = trial_resources(cfg)

    @ray.remote(num_cpus=resources["cpu"], num_gpus=resources["gpu"])
    def fit(data, payloads):
        training = _trial_training(cfg)
        _set_threads(training)
        store = fitting.make_store(data, training)
        dependencies = {
            d: fitting.load_checkpoint_bytes(payloads[d], store, training)
            for d in registry.get(name).depends_on
        }
        params = fitting.chosen_params(chosen)
        model, result = fit_one(name, 0, store, params, training, dependencies)
        return fitting.checkpoint_bytes(model, result, training)

    return ray.get(fit.remote(data_ref, dependency_payloads))


def load_best_configs(run_dir: Path) -> dict[str, dict[str, Any]]:
    path = tune_dir(run_dir) / "best_configs.yaml"
    return yaml.safe_load(path.read_text()) if path.exists() else {}
