"""The `analyses` stage: the paper's section 7 analyses and the modality ablation (``mmrec_ray.evaluation.analyses``).

Only the event-order shuffle study trains: each seed's retraining (a fresh permutation of every PE's events,
then the joint models and their dependencies fitted with the hyperparameters of the main run's checkpoints) is
one Ray task (``analyses.cpus_per_task`` CPUs), all seeds in parallel; the driver writes the predictions as they
arrive. The other analyses predict with the main run's checkpoints and run in the driver (plain Python).

Resume: a seed whose shuffled predictions exist is not refitted; an analysis whose outputs exist and are newer
than the checkpoints it reads is skipped.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path

from mmrec_ray.config import ExperimentConfig, TrainingConfig
from mmrec_ray.data.tensors import PreparedData
from mmrec_ray.evaluation import analyses as A
from mmrec_ray.models import registry
from mmrec_ray.pipeline import fitting
from mmrec_ray.training.runner import checkpoint_path


def analysis_models(cfg: ExperimentConfig) -> list[str]:
    """The analysed joint models the run actually fits."""
    return [m for m in cfg.analyses.models if m in cfg.models]


def _outputs(cfg: ExperimentConfig, run_dir: Path) -> dict[str, list[Path]]:
    """Per enabled analysis, the files whose presence marks it done."""
    a, root = cfg.analyses, A.analyses_dir(run_dir)
    out: dict[str, list[Path]] = {}
    if not a.enabled:
        return out
    if a.shuffle and analysis_models(cfg):
        out["shuffle"] = [root / "shuffle" / "table4.md"]
    if a.num_events and analysis_models(cfg):
        out["num_events"] = [root / "num_events" / "metrics.csv", root / "num_events" / "map_by_events.png"]
    if a.tsne and analysis_models(cfg):
        out["tsne"] = [root / "tsne" / "tsne_inputs.png", root / "tsne" / "tsne_outputs.png"]
    if a.ablation:
        out["ablation"] = [root / "ablation" / "ablation.csv"]
    return out


def _newest_checkpoint(run_dir: Path, names: list[str], seeds: list[int]) -> float:
    times = [
        checkpoint_path(run_dir, n, s).stat().st_mtime
        for n in names
        for s in seeds
        if checkpoint_path(run_dir, n, s).exists()
    ]
    return max(times, default=0.0)


def pending(cfg: ExperimentConfig, run_dir: str | Path) -> list[str]:
    """Enabled analyses whose outputs are missing or older than the checkpoints they use."""
    run_dir = Path(run_dir)
    newest = _newest_checkpoint(run_dir, list(cfg.models), list(cfg.fit.seeds))
    todo = []
    for name, files in _outputs(cfg, run_dir).items():
        if name == "shuffle":
            seeds_done = all(A.shuffle_seed_done(run_dir, analysis_models(cfg), s) for s in cfg.fit.seeds)
            if not seeds_done:
                todo.append(name)
                continue
        if not all(f.exists() and f.stat().st_mtime >= newest for f in files):
            todo.append(name)
    return todo


def is_done(cfg: ExperimentConfig, run_dir: str | Path) -> bool:
    return not pending(cfg, run_dir)


def _shuffled_seed_task(data, names, seed, params, training, shuffle_seed):
    """Ray task body: plain library code (one seed of the shuffle study)."""
    return A.fit_shuffled_seed(data, names, seed, params, training, shuffle_seed)


def run_shuffle_fits(
    cfg: ExperimentConfig,
    run_dir: Path,
    data: PreparedData,
    use_ray: bool,
    log: Callable[[str], None] = print,
) -> int:
    """Retrain the analysed models on shuffled events for every seed not done yet; returns the seeds fitted."""
    names = analysis_models(cfg)
    seeds = [s for s in cfg.fit.seeds if not A.shuffle_seed_done(run_dir, names, s)]
    if not seeds:
        return 0
    training: TrainingConfig = fitting.trial_training(
        cfg.training, cfg.training.max_epochs, cfg.analyses.cpus_per_task
    )
    plans = {}
    for seed in seeds:
        params = A.fitted_params(run_dir, names, seed)  # the main run's hyperparameters, same seed
        for name in registry.dependency_order(names):
            params.setdefault(name, fitting.base_params(cfg, name))
        plans[seed] = params
    log(
        f"  analyses: shuffle study, {len(names)} model(s) x {len(seeds)} seed(s) {'on Ray' if use_ray else 'locally'}"
    )
    if not use_ray:
        for seed, params in plans.items():
            started = time.perf_counter()
            frames = A.fit_shuffled_seed(data, names, seed, params, training, cfg.analyses.shuffle_seed)
            A.write_shuffled_predictions(run_dir, seed, frames)
            log(f"  analyses: shuffled seed {seed} in {time.perf_counter() - started:.0f}s")
        return len(plans)

    import ray

    # One task per (model, seed), not per seed: five seeds of three models pack onto two cores in ~110 s instead
    # of three rounds of whole seeds (~130 s at the demo's scale). A model's dependencies (Relative
    # Representation's encoders) are fitted inside its own task, as the seed task did.
    data_ref = ray.put(data)
    task = ray.remote(num_cpus=cfg.analyses.cpus_per_task)(_shuffled_seed_task)
    started = time.perf_counter()
    in_flight = {
        task.remote(data_ref, [name], seed, params, training, cfg.analyses.shuffle_seed): (name, seed)
        for seed, params in plans.items()
        for name in names
        if not A.shuffle_seed_done(run_dir, [name], seed)
    }
    left = {seed: len([key for key in in_flight.values() if key[1] == seed]) for seed in plans}
    while in_flight:
        ready, _ = ray.wait(list(in_flight), num_returns=1)
        name, seed = in_flight.pop(ready[0])
        A.write_shuffled_predictions(run_dir, seed, ray.get(ready[0]))
        left[seed] -= 1
        if not left[seed]:
            log(f"  analyses: shuffled seed {seed} done after {time.perf_counter() - started:.0f}s")
    return len(plans)


def run_analyses(
    cfg: ExperimentConfig,
    run_dir: str | Path,
    log: Callable[[str], None] = print,
    ensure_ray: Callable[[], None] | None = None,
    only: list[str] | None = None,
) -> str:
    """Run the enabled (or ``only`` the named) analyses that are pending; returns a one-line summary."""
    run_dir = Path(run_dir)
    a = cfg.analyses
    todo = pending(cfg, run_dir) if only is None else list(only)
    if not todo:
        return "nothing to do"
    data = PreparedData.load(run_dir / "prepared" / "tensors", mmap=False)
    names = analysis_models(cfg)
    k, alpha = cfg.evaluation.main_k, cfg.evaluation.alpha
    training = dataclasses.replace(cfg.training, device="cpu")
    done = []
    if "shuffle" in todo and names:
        use_ray = a.use_ray and ensure_ray is not None
        if use_ray:
            ensure_ray()
        run_shuffle_fits(cfg, run_dir, data, use_ray, log)
        A.shuffle_study(
            run_dir,
            names,
            k,
            alpha,
            data=data,
            echo=log,
            hr_test=cfg.evaluation.hr_test,
            map_test=cfg.evaluation.map_test,
        )
        done.append("shuffle")
    if "num_events" in todo and names:
        A.number_of_events(run_dir, names, a.max_events, k, data=data, training=training, echo=log)
        done.append("num_events")
    if "tsne" in todo and names:
        A.tsne_inputs(run_dir, names, a.tsne_max_points, cfg.seed, data=data, training=training, echo=log)
        A.tsne_outputs(run_dir, names, a.tsne_max_points, cfg.seed, data=data, training=training, echo=log)
        done.append("tsne")
    if "ablation" in todo:
        models = list(a.ablation_models) or [m for m in cfg.models if registry.get(m).reported]
        A.modality_ablation(
            run_dir, models, k, alpha, a.bootstrap_resamples, cfg.seed, data=data, training=training, echo=log
        )
        done.append("ablation")
    return f"{', '.join(done) or 'none'} written under {A.analyses_dir(run_dir)}"
