"""The Python API: run an experiment and read its results from a notebook or a script.

    from mmrec_ray import Experiment, evaluate

    exp = Experiment.from_yaml("tiny", run_dir="runs/notebook", set=["fit.seeds=[0]"])
    exp.run()                      # the same pipeline as `mmrec run`, resuming what is done
    exp.results()                  # one tidy frame: model, subset, metric, k, mean, std, ci_low, ci_high, n_seeds
    evaluate(predictions, exp.run_dir)   # score long-form predictions made anywhere, in memory

Everything heavy (torch, Ray, pandas) is imported inside the calls, so ``import mmrec_ray`` stays instant.
"""

from __future__ import annotations

import copy
from collections.abc import Collection, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from mmrec_ray.config import ExperimentConfig, apply_overrides, from_dict, load_yaml
from mmrec_ray.errors import ConfigError, MmrecError

if TYPE_CHECKING:
    import pandas as pd

    from mmrec_ray.data.tensors import PreparedData

RESULT_COLUMNS = ["model", "subset", "metric", "k", "mean", "std", "ci_low", "ci_high", "n_seeds"]
_KEYS = ["model", "subset", "metric", "k"]


def _merge(data: dict, key: str, value: Any) -> None:
    """Set dotted ``key`` in ``data``; a mapping value merges into the section instead of replacing it, so
    ``fit={"seeds": [0]}`` keeps the file's other ``fit`` keys."""
    parts = key.split(".")
    node = data
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"{key}: {part} is not a section")
    leaf = parts[-1]
    if isinstance(value, dict) and isinstance(node.get(leaf), dict):
        for inner, item in value.items():
            _merge(node[leaf], str(inner), item)
    else:
        node[leaf] = copy.deepcopy(value)


class Experiment:
    """One experiment: its config and its run directory (every artifact lives there, as with `mmrec run`)."""

    def __init__(self, config: ExperimentConfig):
        from mmrec_ray.pipeline import ray_env

        self.config = copy.deepcopy(config)  # the caller's config stays as given
        if not ray_env.is_uri(config.run_dir):
            # As the CLI does: the run directory must not move when a notebook changes its working directory.
            self.config.run_dir = str(Path(self.config.run_dir).resolve())

    @classmethod
    def from_yaml(cls, path_or_name: str | Path, set: Iterable[str] = (), **overrides: Any) -> Experiment:
        """Load a config file, or a packaged config by name (``"tiny"``, ``"demo"``, ``"paper"``).

        ``overrides``: keyword per top-level key (``run_dir="runs/x"``, ``models=["popular"]``); a mapping
        merges into its section (``fit={"seeds": [0]}``) and ``__`` spells a dot (``tune__enabled=False``).
        ``set``: ``--set`` strings (``"training.max_epochs=3"``), applied last.
        """
        from mmrec_ray.configs import resolve

        path = resolve(str(path_or_name))
        data = load_yaml(path)
        for key, value in overrides.items():
            _merge(data, key.replace("__", "."), value)
        apply_overrides(data, list(set))
        return cls(from_dict(ExperimentConfig, data, where=str(path)))

    @property
    def run_dir(self) -> Path:
        """The local run directory (for a URI run dir: its local staging copy, which the stages keep current)."""
        from mmrec_ray.pipeline import ray_env

        return ray_env.local_run_dir(self.config.run_dir)

    def __repr__(self) -> str:
        return f"Experiment(name={self.config.name!r}, run_dir={self.config.run_dir!r})"

    def run(
        self,
        stages: Collection[str] | None = None,
        from_stage: str | None = None,
        log=print,
    ) -> Path:
        """Run the pipeline (every stage, or only ``stages``), skipping what is done; ``from_stage`` redoes that
        stage and every later one. Returns the run directory."""
        from mmrec_ray.pipeline.runner import STAGES, run_pipeline

        if isinstance(stages, str):  # "fit" would otherwise be read as the stages f, i, t
            stages = [stages]
        unknown = sorted({*(stages or ()), *([from_stage] if from_stage else [])} - {*STAGES})
        if unknown:
            raise ConfigError(f"unknown stage(s) {unknown}; stages: {list(STAGES)}")
        return run_pipeline(self.config, log=log, from_stage=from_stage, stages=stages)

    # ----------------------------------------------------------------------------------------- results
    def _results_file(self, name: str) -> Path:
        path = self.run_dir / "results" / name
        if not path.exists():
            raise MmrecError(f"{path}: no results yet; run the aggregate stage first (Experiment.run())")
        return path

    def results(self) -> pd.DataFrame:
        """Every model's metrics over seeds: model, subset, metric (hr | map), k, mean, std, ci_low, ci_high,
        n_seeds. The 95 % bootstrap CI (over test PEs) exists at the main cut-off only; NaN at other k."""
        import pandas as pd

        summary = pd.read_csv(self._results_file("seed_summary.csv"))
        ci_path = self.run_dir / "results" / "bootstrap_ci.csv"
        ci = pd.read_csv(ci_path) if ci_path.exists() else pd.DataFrame(columns=[*_KEYS, "ci_low", "ci_high"])
        merged = summary.merge(ci[[*_KEYS, "ci_low", "ci_high"]], on=_KEYS, how="left")
        return merged[RESULT_COLUMNS].reset_index(drop=True)

    def table3(self, fmt: Literal["frame", "markdown", "latex"] = "frame") -> pd.DataFrame | str:
        """The paper's Table 3 of this run: a frame (``results/table3.csv``), or its Markdown / LaTeX text."""
        if fmt == "markdown":
            return self._results_file("table3.md").read_text()
        if fmt == "latex":
            return self._results_file("table3.tex").read_text()
        if fmt != "frame":
            raise ValueError(f"fmt must be 'frame', 'markdown' or 'latex', not {fmt!r}")
        import pandas as pd

        return pd.read_csv(self._results_file("table3.csv"))

    def metrics(self) -> pd.DataFrame:
        """Per-seed metrics (``results/metrics.csv``): model, seed, subset, metric, k, value."""
        import pandas as pd

        return pd.read_csv(self._results_file("metrics.csv"))

    def predictions(self, models: Iterable[str] | None = None) -> pd.DataFrame:
        """The fitted models' test predictions in long form (model, seed, purchase_event_id, item_id, score)."""
        import pandas as pd

        from mmrec_ray.evaluation.predictions import find_prediction_files, read_predictions

        frames = [read_predictions(p) for p in find_prediction_files(self.run_dir / "predictions")]
        if not frames:
            raise MmrecError(f"{self.run_dir / 'predictions'}: no predictions; run the fit stage first")
        frame = pd.concat(frames, ignore_index=True)
        if models is not None:
            frame = frame[frame["model"].isin(list(models))].reset_index(drop=True)
        return frame


def evaluate(
    predictions: pd.DataFrame | str | Path | Iterable[str | Path],
    data: PreparedData | Experiment | str | Path,
    ks: Sequence[int] = (1, 2, 3, 4, 5),
) -> pd.DataFrame:
    """HR@k and MAP@k of predictions on the test PEs, per seed and subset, in memory (what ``mmrec evaluate``
    writes as metrics.csv): model, seed, subset, metric (hr | map), k, value.

    ``predictions``: a long-form frame (model, seed, purchase_event_id, item_id, score), or Parquet files /
    folders of them. ``data``: a prepared run directory (or its ``prepared/tensors``), a ``PreparedData``, an
    ``Experiment``, or a dataset folder in the released format (the split is the one `prepare` makes).
    """
    import pandas as pd

    from mmrec_ray.commands.evaluate import USERS_FILE, dataset_labels, prediction_files
    from mmrec_ray.data.tensors import PreparedData
    from mmrec_ray.evaluation.evaluate import evaluate_matrices, load_prepared
    from mmrec_ray.evaluation.predictions import frame_to_matrix, load_matrices

    if isinstance(data, Experiment):
        data = data.run_dir
    if isinstance(data, PreparedData):
        labels = data
    elif (Path(data) / USERS_FILE).is_file():
        labels = dataset_labels(Path(data))
    else:
        labels = load_prepared(data)
    if isinstance(predictions, pd.DataFrame):
        matrices = frame_to_matrix(predictions, labels)
    else:
        paths = [predictions] if isinstance(predictions, (str, Path)) else list(predictions)
        matrices = load_matrices(prediction_files([str(p) for p in paths]), labels)
    if not matrices:
        raise MmrecError("no predictions to evaluate")
    return evaluate_matrices(matrices, labels, ks=ks).metrics
