"""`mmrec run`: the whole pipeline — generate (synthetic) → prepare → embed → tensors → tune → fit → aggregate.

With text and no embedding CSVs (the demo), ``prepare`` only validates and writes the canonical Parquet, the
Ray Data ``embed`` stage computes the sentence embeddings from ``conversation_text.parquet``, and ``tensors``
(``prepare --embeddings embed-stage``) builds the model-ready tensors from the parts it wrote. With embedding
CSVs (the released data) ``prepare`` does everything and ``embed``/``tensors`` have nothing to do.

Each stage is skipped when its outputs exist, so a re-run of a finished run does nothing and a re-run after a
crash redoes only what is missing (stages here; trials and seeds inside tune and fit). One progress line per
stage goes to stdout and to ``RUN_DIR/stages.log``; ``RUN_DIR/config.yaml`` (resolved) and
``RUN_DIR/manifest.json`` (versions, commit, seeds, data fingerprint, timings) are written by every run.

One run per run directory: every entry point holds ``RUN_DIR/mmrec.lock`` while it runs (see
``mmrec_ray.pipeline.lock``; ``--break-lock`` for a lock left on another host). Holding it, a resumed run removes
what a killed one left behind: temporary files of atomic writes and the embed stage's staging folders (the fit
stage removes Ray Train folders it will not use).

The data stages are driven through their CLI commands (``mmrec generate/prepare/embed/aggregate``): those
argument lists are the stable contract between stages.
"""

from __future__ import annotations

import argparse
import importlib
import json
import time
from collections.abc import Callable, Collection
from pathlib import Path

from mmrec_ray.config import ExperimentConfig
from mmrec_ray.errors import settings_from_config
from mmrec_ray.io import append_line, discard_temporary_files
from mmrec_ray.pipeline import fingerprints, ray_env
from mmrec_ray.pipeline.lock import RunLock, break_lock
from mmrec_ray.pipeline.manifest import Manifest

STAGES = fingerprints.STAGES


def _command(name: str, argv: list[str]) -> int:
    module = importlib.import_module(f"mmrec_ray.commands.{name}")
    parser = argparse.ArgumentParser(prog=f"mmrec {name}")
    module.add_arguments(parser)
    return int(module.run(parser.parse_args(argv)) or 0)


class Pipeline:
    def __init__(self, cfg: ExperimentConfig, log: Callable[[str], None] = print):
        self.cfg = cfg
        self.log = log
        self.run_dir = ray_env.pull(cfg.run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.manifest = Manifest(self.run_dir, cfg)
        self.fingerprints = fingerprints.fingerprints(cfg)
        self._ray_started = False

    def check_outputs_current(self, from_stage: str | None = None) -> None:
        """Refuse (one line naming the changed fields) when outputs on disk were made with another config; with
        ``from_stage``, remove the outputs of that stage and every later one first, so they are made again.
        Runs before ``config.yaml`` is rewritten: that file always describes the outputs on disk."""
        from mmrec_ray.errors import ConfigError

        previous = self._previous_config()
        recorded = {
            s: dict(r) for s, r in self.manifest.stages.items() if r.get("status") in ("done", "skipped")
        }
        if previous is not None and recorded and not any("fingerprint" in r for r in recorded.values()):
            # Written before fingerprints existed: its config.yaml is the config of its last run.
            legacy = fingerprints.fingerprints(previous)
            for stage, record in recorded.items():
                record["fingerprint"] = legacy[stage]
        stale = fingerprints.first_stale(recorded, self.fingerprints)
        if from_stage is None:
            if stale is not None:
                raise ConfigError(fingerprints.stale_message(stale, previous, self.cfg, self.cfg.run_dir))
            return
        if stale is not None and fingerprints.STAGES.index(stale) < fingerprints.STAGES.index(from_stage):
            raise ConfigError(
                fingerprints.stale_message(stale, previous, self.cfg, self.cfg.run_dir)
                + f" (--from {from_stage} would keep the stale {stale} outputs)"
            )
        redo = list(fingerprints.STAGES[fingerprints.STAGES.index(from_stage) :])
        if "generate" in redo and (self.cfg.data.source != "synthetic" or self.cfg.data.path):
            redo.remove("generate")  # a dataset folder the user points at is never deleted
        removed = fingerprints.remove_outputs(self.run_dir, redo, self.log)
        for relative in removed:
            ray_env.remove(self.cfg.run_dir, relative)
        self.manifest.forget(redo)

    def _previous_config(self) -> ExperimentConfig | None:
        from mmrec_ray.config import load_config
        from mmrec_ray.errors import ConfigError

        path = self.run_dir / "config.yaml"
        if not path.exists():
            return None
        try:
            return load_config(path)
        except ConfigError as error:
            self.log(
                f"[config] {path} no longer loads ({error}); its outputs cannot be checked against this config"
            )
            return None

    # ----------------------------------------------------------------------------------------- helpers
    @property
    def data_dir(self) -> Path:
        if self.cfg.data.path:
            return Path(self.cfg.data.path).resolve()
        return self.run_dir / "data"

    @property
    def tensors_dir(self) -> Path:
        return self.run_dir / "prepared" / "tensors"

    def _ray(self) -> None:
        if not self._ray_started:
            self._ray_started = ray_env.init_ray()
            if self._ray_started:
                from mmrec_ray.pipeline import console

                console.link_ray_logs(self.run_dir)

    @property
    def embeds_text(self) -> bool:
        """The data has sentence text but no embedding CSVs: the embed stage computes the embeddings."""
        from mmrec_ray.data.released import TEXT_FILE, find_embedding_parts

        return (self.data_dir / TEXT_FILE).is_file() and not find_embedding_parts(self.data_dir)

    def _stage(
        self, name: str, needed: bool, action: Callable[[], str | None], skip_note: str = "outputs exist"
    ) -> None:
        started = time.perf_counter()
        if not needed:
            status, note = "skipped", skip_note
        else:
            note = self._guarded(name, action) or ""
            status = "done"
        seconds = time.perf_counter() - started
        line = f"[{name}] {status} in {seconds:.1f}s" + (f" — {note}" if note else "")
        self.log(line)
        append_line(self.run_dir / "stages.log", f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {line}")
        # A stage skipped for another reason than current outputs (switched off, nothing to do) vouches for nothing.
        vouches = status == "done" or skip_note == "outputs exist"
        self.manifest.record(name, status, seconds, self.fingerprints[name] if vouches else None)
        ray_env.push(self.cfg.run_dir)

    def _guarded(self, name: str, action: Callable[[], str | None]) -> str | None:
        """Run a stage's action. An error raised inside Ray (a task, an actor, a trainer) arrives wrapped in
        Ray's exceptions, hundreds of lines long: the full trace goes to ``RUN_DIR/logs/{stage}.error.log`` and a
        user error inside it (bad data, bad config, a full disk) becomes its own one line. Anything else is a
        bug and keeps its traceback."""
        from mmrec_ray.errors import MmrecError, one_line, user_error_in

        try:
            return action()
        except MmrecError as exc:
            if "\n" not in str(exc):  # ours, already one line; Ray's wrapper of one subclasses it too
                raise
            trace = self._write_trace(name, exc)
            inner = user_error_in(exc) or exc
            kind = type(inner) if type(inner).__init__ is MmrecError.__init__ else MmrecError
            raise kind(f"{one_line(inner)} (full trace: {trace})") from exc
        except Exception as exc:
            trace = self._write_trace(name, exc)
            inner = user_error_in(exc)
            if inner is None:
                raise
            # Keep the kind (ConfigError, StorageError) where it takes just a message; DataError's fields are in
            # its text already.
            kind = type(inner) if type(inner).__init__ is MmrecError.__init__ else MmrecError
            raise kind(f"{inner} (full trace: {trace})") from exc

    def _write_trace(self, name: str, exc: BaseException) -> Path:
        import traceback

        path = self.run_dir / "logs" / f"{name}.error.log"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(traceback.format_exception(exc)))
        return path

    # ----------------------------------------------------------------------------------------- stages
    def generate(self) -> None:
        d = self.cfg.data
        needed = d.source == "synthetic" and not (self.data_dir / "data_users.csv").exists()
        if d.source == "synthetic" and not needed:
            self._check_generated(d)
        argv = ["--out", str(self.data_dir), "--scale", str(d.scale), "--seed", str(d.seed)]
        if not d.text:
            argv += ["--no-text", "--embedding-dim", str(d.embedding_dim)]
        self._stage("generate", needed, lambda: _command("generate", argv) and None)

    def _check_generated(self, d) -> None:
        """A synthetic run reuses its data folder only if the generator wrote it with these settings: otherwise a
        stale scale, or a folder of real data that ``data.path`` happens to name, would be used silently."""
        from mmrec_ray.errors import ConfigError

        info_path = self.data_dir / "generation_info.json"
        if not info_path.exists():
            raise ConfigError(
                f"data.path {self.data_dir} holds a dataset the generator did not write (no generation_info.json); "
                "data.source=synthetic would use it as generated data. Point data.path at another folder, or leave "
                "it empty (RUN_DIR/data)"
            )
        settings = json.loads(info_path.read_text()).get("settings", {})
        wanted = {
            "scale": d.scale,
            "seed": d.seed,
            "text": d.text,
            "embedding_dim": None if d.text else d.embedding_dim,
        }
        different = {k: (settings.get(k), v) for k, v in wanted.items() if settings.get(k) != v}
        if different:
            detail = ", ".join(f"{k} {have} (config: {want})" for k, (have, want) in different.items())
            raise ConfigError(
                f"{info_path}: the data there was generated with {detail}; delete the folder to regenerate it, or "
                "point data.path at another folder"
            )

    def prepare(self) -> None:
        if self.cfg.data.source == "released" and not self.cfg.data.path:
            from mmrec_ray.errors import ConfigError

            raise ConfigError("data.source=released needs data.path (the folder with the released CSV files)")
        argv = ["--data", str(self.data_dir), "--run-dir", str(self.run_dir), *self._prepare_switches()]
        needed = not self._tensors_current()
        if self.embeds_text:  # phase 1 only; the embed stage and `tensors` follow
            argv.append("--canonical-only")
            needed = needed and not (self.run_dir / "prepared" / "canonical.json").exists()
        self._stage("prepare", needed, lambda: _command("prepare", argv) and None)

    def _prepare_switches(self) -> list[str]:
        from mmrec_ray.commands.prepare import fidelity_arguments

        return fidelity_arguments(self.cfg.fidelity)

    def _tensors_prepared(self) -> bool:
        """Tensors that a prepare finished: its marker is written last, so tensors without it are what a failed
        or interrupted prepare left (possibly of other data) and are never trusted."""
        from mmrec_ray.data.prepare import MARKER, prepared_dir

        return (self.tensors_dir / "meta.json").exists() and (prepared_dir(self.run_dir) / MARKER).exists()

    def _tensors_current(self) -> bool:
        """Tensors exist and were prepared with this config's prepare-time fidelity switches; otherwise the
        prepare command runs, and refuses a folder prepared with other values instead of reusing it."""
        from mmrec_ray.data.prepare import PrepareOptions, prepared_switches

        return self._tensors_prepared() and prepared_switches(self.run_dir) == PrepareOptions.switches_of(
            self.cfg.fidelity
        )

    def embed(self) -> None:
        from mmrec_ray.embed import stage_output

        e = self.cfg.embed
        text = self.embeds_text
        needed = (
            text
            and not self._tensors_prepared()
            and not stage_output.is_current(self.run_dir, e.encoder, e.max_length)
        )

        def action():
            self._ray()
            _command("embed", ["--run-dir", str(self.run_dir), "--config", str(self.run_dir / "config.yaml")])

        self._stage("embed", needed, action, "outputs exist" if text else "embeddings come with the data")

    def tensors(self) -> None:
        """Phase 2 of prepare: the model-ready tensors from the embed stage's parts (text data only)."""
        argv = ["--data", str(self.data_dir), "--run-dir", str(self.run_dir), "--embeddings", "embed-stage"]
        argv += self._prepare_switches()
        text = self.embeds_text
        needed = text and not self._tensors_current()
        note = "outputs exist" if text else "built by prepare"
        self._stage("tensors", needed, lambda: _command("prepare", argv) and None, note)

    def tune(self) -> dict:
        from mmrec_ray.pipeline import tune

        if not self.cfg.tune.enabled:
            self._stage("tune", False, lambda: None, "tune.enabled is false")
            return {}

        def action():
            self._ray()
            best = tune.run_tune(self.cfg, self.run_dir, log=self.log)
            return (
                f"best configs of {len(best)} models in {tune.tune_dir(self.run_dir) / 'best_configs.yaml'}; "
                f"learning curves: tensorboard --logdir {ray_env.ray_storage_path(self.cfg.run_dir)}/tune"
            )

        self._stage("tune", not tune.is_done(self.run_dir), action)
        return tune.load_best_configs(self.run_dir)

    def fit(self, best: dict) -> None:
        from mmrec_ray.pipeline import train

        def action():
            self._ray()
            count = train.run_fit(self.cfg, self.run_dir, best, log=self.log)
            return f"{count} (model, seed) fits written to {self.run_dir / 'predictions'}"

        self._stage("fit", not train.is_done(self.cfg, self.run_dir), action)

    def aggregate(self) -> None:
        # aggregate.json is the last file aggregate writes: without it the results are a killed run's half.
        done = self.run_dir / "results" / "aggregate.json"
        predictions = list((self.run_dir / "predictions").glob("*.parquet"))
        newest = max((p.stat().st_mtime for p in predictions), default=0.0)
        needed = not done.exists() or done.stat().st_mtime < newest
        argv = ["--run-dir", str(self.run_dir), "--config", str(self.run_dir / "config.yaml"), "--no-table"]
        self._stage("aggregate", needed, lambda: _command("aggregate", argv) and None)
        if needed:  # the tracked fit runs get their test metrics once aggregate has computed them
            from mmrec_ray.pipeline import tracking

            tracking.log_test_metrics(self.cfg, self.run_dir, self.log)
        self.sweep_summary()

    def sweep_summary(self) -> None:
        """``tune/sweep.{json,md}`` and figures from ``tune/trials.csv`` when it is newer than them; nothing when
        the tune stage did not run (``tune.enabled: false``). Part of aggregating a run, checked even when the
        aggregate stage itself is skipped."""
        from mmrec_ray.evaluation import sweep

        if sweep.is_current(self.run_dir):
            return
        try:
            summary = sweep.write_sweep(self.run_dir, self.cfg)
        except Exception as error:  # a summary of finished trials: never worth failing the run's results over
            from mmrec_ray.errors import one_line

            self.log(
                f"  sweep: not summarised ({type(error).__name__}: {one_line(error)}); the report says so"
            )
            return
        if summary is not None:
            self.log(
                f"  sweep: {summary['n_trials']} trials of {len(summary['models'])} models summarised in "
                f"{sweep.tune_dir(self.run_dir) / sweep.SWEEP_MD}"
            )
            ray_env.push(self.cfg.run_dir)

    def analyses(self) -> None:
        """Section 7 analyses and the modality ablation (``mmrec_ray.pipeline.analyses``); each switchable."""
        from mmrec_ray.pipeline import analyses

        if not self.cfg.analyses.enabled:
            self._stage("analyses", False, lambda: None, "analyses.enabled is false")
            return
        needed = not analyses.is_done(self.cfg, self.run_dir)
        self._stage(
            "analyses", needed, lambda: analyses.run_analyses(self.cfg, self.run_dir, self.log, self._ray)
        )

    def report(self) -> None:
        """RUN_DIR/report.{md,html}: rewritten when anything it shows is newer than it."""
        report = self.run_dir / "report.html"
        # config.yaml and manifest.json are rewritten by every run: they alone never make the report stale.
        sources = []
        for folder in ("results", "figures", "analyses"):
            sources += [p for p in (self.run_dir / folder).rglob("*") if p.suffix in {".md", ".csv", ".png"}]
        sources += [p for p in (self.run_dir / "tune").glob("sweep*") if p.is_file()]  # the sweep section
        newest = max((p.stat().st_mtime for p in sources), default=0.0)
        needed = not report.exists() or report.stat().st_mtime < newest
        argv = [str(self.run_dir)]
        self._stage("report", needed, lambda: _command("report", argv) and None)

    def discard_leftovers(self) -> None:
        """Remove what a killed run left in the run directory; only while holding its lock (nobody else writes)."""
        from mmrec_ray.embed.stage_output import OUTPUT_DIR
        from mmrec_ray.pipeline.embed import discard_staging

        removed = discard_temporary_files(self.run_dir, skip=("ray",))  # Ray's state is Ray's to manage
        removed += discard_staging(self.run_dir / OUTPUT_DIR)
        if removed:
            names = ", ".join(str(p.relative_to(self.run_dir)) for p in removed[:3])
            more = f" and {len(removed) - 3} more" if len(removed) > 3 else ""
            self.log(f"  resume: removed {len(removed)} leftovers of an interrupted run ({names}{more})")

    # ----------------------------------------------------------------------------------------- all
    def preflight(self) -> None:
        """What can be checked before any work: the encoder the embed stage will load. (Model names, value
        ranges and relations are checked when the config loads; GPUs when Ray is up, by each Ray stage.)"""
        from mmrec_ray.embed import stage_output

        d, e = self.cfg.data, self.cfg.embed
        text = (d.source == "synthetic" and d.text) or self.embeds_text
        if (
            text
            and not self._tensors_prepared()
            and not stage_output.is_current(self.run_dir, e.encoder, e.max_length)
        ):
            from mmrec_ray.embed.encoder import check_loadable

            check_loadable(e.encoder, key="embed.encoder")

    def run(self, from_stage: str | None = None, stages: Collection[str] | None = None) -> Path:
        """Every stage in order, or only ``stages`` (each still skipped when its outputs are current)."""
        wanted = set(STAGES if stages is None else stages)
        self.discard_leftovers()
        self.check_outputs_current(from_stage)
        self.preflight()
        self.manifest.write_config()
        self.manifest.write()
        try:
            for name in ("generate", "prepare", "embed", "tensors"):
                if name in wanted:
                    getattr(self, name)()
            best = self.tune() if "tune" in wanted else _best(self)
            if "fit" in wanted:
                self.fit(best)
            for name in ("aggregate", "analyses", "report"):
                if name in wanted:
                    getattr(self, name)()
        finally:
            ray_env.shutdown_ray(self._ray_started)
        table = self.run_dir / "results" / "table3.md"
        if table.exists():
            self.log(table.read_text())
            from mmrec_ray.evaluation.report.summary import headline

            e = self.cfg.evaluation
            for _, text in headline(self.run_dir / "results", e.main_k, e.alpha):
                self.log(text.replace("**", "") + f"\nFull report: {self.run_dir / 'report.html'}")
        return self.run_dir


def run_pipeline(
    cfg: ExperimentConfig,
    log: Callable[[str], None] = print,
    from_stage: str | None = None,
    stages: Collection[str] | None = None,
) -> Path:
    """The whole pipeline; ``from_stage`` re-runs that stage and every later one (their outputs removed first);
    ``stages`` limits the run to those stages."""
    settings_from_config()
    with RunLock(cfg.run_dir, log=log):
        return Pipeline(cfg, log).run(from_stage, stages)


# --------------------------------------------------------------------------------------------------- CLI glue
def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments every pipeline entry point shares (`mmrec run/tune/fit`, jobs/*.py)."""
    from mmrec_ray.commands._options import add_pipeline_arguments

    add_pipeline_arguments(parser)


def config_from_args(args: argparse.Namespace) -> ExperimentConfig:
    """The config of a pipeline entry point; with ``--break-lock`` the run directory's lock is removed here, so
    that every entry point honours the flag (the run then takes the lock as usual)."""
    from mmrec_ray.config import load_config
    from mmrec_ray.pipeline import console

    console.set_verbose(getattr(args, "verbose", False))
    overrides = list(args.overrides or [])
    if args.storage:
        overrides.append(f"run_dir={args.storage}")
    cfg = load_config(args.config, overrides)
    if not ray_env.is_uri(cfg.run_dir):
        cfg.run_dir = str(Path(cfg.run_dir).resolve())
    if getattr(args, "break_lock", False):
        break_lock(cfg.run_dir)
    return cfg


def run_stage(
    cfg: ExperimentConfig, stage: str, log: Callable[[str], None] = print, from_stage: str | None = None
) -> Path:
    """Run one stage of the pipeline (what `mmrec tune`, `mmrec train` and jobs/*.py call)."""
    settings_from_config()
    with RunLock(cfg.run_dir, log=log):
        return _run_stage(cfg, stage, log, from_stage)


def _run_stage(cfg: ExperimentConfig, stage: str, log: Callable[[str], None], from_stage: str | None) -> Path:
    pipeline = Pipeline(cfg, log)
    pipeline.discard_leftovers()
    pipeline.check_outputs_current(from_stage)
    pipeline.manifest.write_config()
    try:
        if stage == "prepare":
            pipeline.generate()
            pipeline.prepare()
        elif stage in ("embed", "tensors"):  # the embed job also finishes the tensors it feeds
            pipeline.embed()
            pipeline.tensors()
        elif stage == "tune":
            pipeline.tune()
        elif stage == "fit":
            pipeline.fit(_best(pipeline))
        elif stage == "aggregate":
            pipeline.aggregate()
            table = pipeline.run_dir / "results" / "table3.md"
            if table.exists():
                log(table.read_text())
        elif stage == "analyses":
            pipeline.analyses()
        elif stage == "report":
            pipeline.report()
        else:
            raise ValueError(f"unknown stage {stage!r}; stages: {STAGES}")
    finally:
        ray_env.shutdown_ray(pipeline._ray_started)
    return pipeline.run_dir


def _best(pipeline: Pipeline) -> dict:
    from mmrec_ray.pipeline import tune

    return tune.load_best_configs(pipeline.run_dir) if pipeline.cfg.tune.enabled else {}
