"""Training speed: time per epoch and PEs/s of every model on the project's path (``FeatureStore``: the prepared
tables resident on the device, a batch gathered by index; ``training.loop.train``) against a naive PyTorch loop
of the same model.

The naive loop is what a PyTorch user typically writes: a ``Dataset`` whose ``__getitem__`` builds one PE from
the per-PE numpy arrays (its events' conversation embeddings, tag vectors, keywords ... as Python lists of
arrays), a ``DataLoader`` whose ``collate_fn`` pads each batch and turns it into tensors, in Python, every
batch, and torch's own packed ``nn.GRU`` for the recurrence. The project's path gathers batches by index from
device-resident tables (``FeatureStore``) and, on the CPU, runs the recurrence of ``models.fused_gru`` (one
autograd node, weight gradients in one GEMM). Everything else is identical: the same ``nn.Module`` and
parameters (the two GRU paths compute the same function: tested to float64 round-off), forward/backward, loss,
optimiser and loop (``NaiveFeatureStore`` only replaces ``iterate``), the same seed and the same dependencies.
Both paths give the same tensors for the same PEs (checked in ``tests/bench``).

Epoch time = one training epoch plus its validation pass (what the loop does per epoch), measured from the first
shuffled ``iterate`` of the epoch to the loop's per-epoch callback; multi-stage components (the generators of
Generative Imputation) sum their stages. The Relative Representation encoders train on single events
(``EventExamples``, already index-gathered), not on PE batches, so they have no naive counterpart and no row;
``popular`` and ``late_fusion`` train no network of their own (Late Fusion is its Conversation and Web Session
parts, which have rows).

The ``fit`` stage benchmark runs ``training.runner.fit_models`` (what each Ray Train worker runs per seed) for
all models and seeds on both paths, with ``max_epochs`` capped so that it finishes here.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from bench.common import make_row
from mmrec_ray.config import ModelParams, TrainingConfig
from mmrec_ray.data.features import FeatureStore
from mmrec_ray.data.tensors import EVENT_CONVERSATION, EVENT_SESSION, PreparedData
from mmrec_ray.models import registry
from mmrec_ray.models.layers import force_gru_implementation
from mmrec_ray.models.params import default_params

# Batch fields each model (with what its dependencies and its ``serves`` read) takes from a PE batch.
FIELDS: dict[str, tuple[str, ...]] = {
    "conversation": ("pe_conversation", "has_conversation", "targets"),
    "session": ("session_sequence", "session_lengths", "has_session", "targets"),
    "keyword": ("keyword_sequence", "keyword_lengths", "keyword_sequence_all", "lengths", "targets"),
    "latent_feature": ("is_conversation", "event_conversation", "event_session", "lengths", "targets"),
    "neutral_imputation": (
        "pe_conversation",
        "has_conversation",
        "session_sequence",
        "session_lengths",
        "targets",
    ),
    "knowledge_distillation": ("pe_conversation", "session_sequence", "session_lengths", "targets"),
    "generative_imputation.conversation_generator": (
        "pe_conversation",
        "session_sequence",
        "session_lengths",
    ),
    "generative_imputation.session_generator": ("pe_conversation", "session_sequence", "session_lengths"),
    "generative_imputation": ("pe_conversation", "session_sequence", "session_lengths", "targets"),
    "relative_representation.conversation_encoder": (),
    "relative_representation.session_encoder": (),
    "relative_representation": ("event_kind", "is_conversation", "lengths", "targets"),
    "late_fusion": (),
    "popular": (),
    # Beyond the paper (issue #16): the event tokens of Latent Feature; UiM's profile comes from the store.
    "transformer": ("is_conversation", "event_conversation", "event_session", "lengths", "targets"),
    "uim": ("is_conversation", "event_conversation", "event_session", "lengths", "targets"),
    "uim_no_profile": ("is_conversation", "event_conversation", "event_session", "lengths", "targets"),
    "uim_single_interest": ("is_conversation", "event_conversation", "event_session", "lengths", "targets"),
    "uim_learned_feedback": ("is_conversation", "event_conversation", "event_session", "lengths", "targets"),
    "uim_llm_feedback": (),
}
NO_EPOCHS = (  # see the module docstring
    "popular",
    "uim_llm_feedback",
    "late_fusion",
    "relative_representation.conversation_encoder",
    "relative_representation.session_encoder",
)


def fields_for(names: Sequence[str]) -> tuple[str, ...]:
    """Union of the fields of ``names`` and everything they depend on (teachers predict through the store)."""
    wanted: list[str] = []
    for name in registry.dependency_order(list(names)):
        for field in FIELDS[name]:
            if field not in wanted:
                wanted.append(field)
    return tuple(wanted)


# ------------------------------------------------------------------------------------------- naive data path
class PerPEDataset(Dataset):
    """One PE per item, built in Python from the per-PE numpy arrays: a dict of numpy arrays / scalars."""

    def __init__(self, data: PreparedData, fields: Sequence[str]):
        self.fields = tuple(fields)
        self.event_kind = np.asarray(data.event_kind)
        self.event_row = np.asarray(data.event_row)
        self.n_events = np.asarray(data.n_events)
        self.conversation_embedding = np.asarray(data.conversation_embedding)
        self.conversation_keywords = np.asarray(data.conversation_keywords)
        self.session_tags = np.asarray(data.session_tags)
        self.pe_conversation = np.asarray(data.pe_conversation_embedding)
        self.has_conversation = np.asarray(data.has_conversation)
        self.has_session = np.asarray(data.has_session)
        self.targets = np.asarray(data.targets)
        self.dim = self.conversation_embedding.shape[1]
        self.vocab = self.session_tags.shape[1]
        # Keyword's own vocabulary and event list (the layout is data, computed once; collation stays per PE).
        columns = np.flatnonzero(data.keyword_column_mask)
        self.keyword_conversations = self.conversation_keywords[:, columns]
        self.keyword_sessions = np.asarray(data.keyword_session_tags)[:, columns]
        self.keyword_kind, self.keyword_row, self.keyword_length = data.keyword_steps()
        self.keyword_vocab = len(columns)

    def _keyword_steps(self, kinds: list[int], rows: list[int]) -> list[np.ndarray]:
        out = []
        for k, r in zip(kinds, rows):
            table = self.keyword_conversations if k == EVENT_CONVERSATION else self.keyword_sessions
            out.append(np.concatenate([[np.float32(k == EVENT_CONVERSATION)], table[r]]).astype(np.float32))
        return out

    def __len__(self) -> int:
        return len(self.n_events)

    def __getitem__(self, pe: int) -> dict:
        steps = int(self.n_events[pe])
        kinds = self.event_kind[pe, :steps].tolist()
        rows = self.event_row[pe, :steps].tolist()
        record: dict = {"index": pe}
        for field in self.fields:
            if field == "event_kind":
                record[field] = np.asarray(kinds, dtype=np.int64)
            elif field == "lengths":
                record[field] = steps
            elif field == "is_conversation":
                record[field] = np.asarray([k == EVENT_CONVERSATION for k in kinds], dtype=np.float32)
            elif field == "event_conversation":
                record[field] = [
                    self.conversation_embedding[r]
                    if k == EVENT_CONVERSATION
                    else np.zeros(self.dim, np.float32)
                    for k, r in zip(kinds, rows)
                ]
            elif field == "event_session":
                record[field] = [
                    self.session_tags[r] if k == EVENT_SESSION else np.zeros(self.vocab, np.uint8)
                    for k, r in zip(kinds, rows)
                ]
            elif field == "event_keywords":
                record[field] = [
                    self.conversation_keywords[r] if k == EVENT_CONVERSATION else self.session_tags[r]
                    for k, r in zip(kinds, rows)
                ]
            elif field == "keyword_sequence":
                length = int(self.keyword_length[pe])
                record[field] = self._keyword_steps(
                    self.keyword_kind[pe, :length].tolist(), self.keyword_row[pe, :length].tolist()
                )
            elif field == "keyword_lengths":
                record[field] = int(self.keyword_length[pe])
            elif field == "keyword_sequence_all":
                record[field] = self._keyword_steps(kinds, rows)
            elif field == "session_sequence":
                record[field] = [self.session_tags[r] for k, r in zip(kinds, rows) if k == EVENT_SESSION]
            elif field == "session_lengths":
                record[field] = sum(k == EVENT_SESSION for k in kinds)
            elif field == "pe_conversation":
                record[field] = self.pe_conversation[pe]
            elif field == "has_conversation":
                record[field] = bool(self.has_conversation[pe])
            elif field == "has_session":
                record[field] = bool(self.has_session[pe])
            elif field == "targets":
                record[field] = self.targets[pe]
            else:
                raise KeyError(f"naive dataset: unknown field {field!r}")
        return record


class NaiveBatch:
    """What the naive ``collate_fn`` returns: the fields a model reads, as tensors, plus ``index`` and ``store``
    (Knowledge Distillation's soft labels and the imputed/relative tables are looked up by PE index)."""

    def __init__(self, store: FeatureStore, **tensors: torch.Tensor):
        self.store = store
        self.__dict__.update(tensors)

    def __len__(self) -> int:
        return int(self.index.shape[0])


def _pad_steps(sequences: list[list[np.ndarray]], width: int, features: int) -> np.ndarray:
    out = np.zeros((len(sequences), width, features), dtype=np.float32)
    for row, steps in enumerate(sequences):
        for step, vector in enumerate(steps):
            out[row, step] = vector
    return out


def make_collate(store: FeatureStore, fields: Sequence[str], steps: int, dim: int, vocab: int):
    """A per-batch Python collate: lists of per-PE records -> padded tensors on the store's device."""
    device = store.device

    def collate(records: list[dict]) -> NaiveBatch:
        tensors = {"index": torch.tensor([r["index"] for r in records], dtype=torch.long)}
        for field in fields:
            values = [r[field] for r in records]
            if field in ("event_conversation",):
                tensors[field] = torch.tensor(_pad_steps(values, steps, dim))
            elif field in ("event_session", "event_keywords", "session_sequence"):
                tensors[field] = torch.tensor(_pad_steps(values, steps, vocab))
            elif field in ("keyword_sequence", "keyword_sequence_all"):
                width = store.keyword_vocab_size + 1
                tensors[field] = torch.tensor(_pad_steps(values, steps, width))
            elif field in ("event_kind", "is_conversation"):
                padded = np.zeros((len(values), steps), dtype=values[0].dtype)
                for row, value in enumerate(values):
                    padded[row, : len(value)] = value
                tensors[field] = torch.tensor(padded)
            elif field in ("lengths", "session_lengths", "keyword_lengths"):
                tensors[field] = torch.tensor(values, dtype=torch.long)
            elif field in ("has_conversation", "has_session"):
                tensors[field] = torch.tensor(values, dtype=torch.bool)
            else:  # pe_conversation, targets
                tensors[field] = torch.tensor(np.stack(values), dtype=torch.float32)
        return NaiveBatch(store, **{k: v.to(device) for k, v in tensors.items()})

    return collate


def _shared_copy(cls, store: FeatureStore):
    """An instance of FeatureStore subclass ``cls`` sharing ``store``'s tensors (no copy)."""
    clone = object.__new__(cls)
    clone.__dict__.update(store.__dict__)
    return clone


class TimedFeatureStore(FeatureStore):
    """The project's FeatureStore, unchanged, noting when a training epoch starts (first shuffled iterate)."""

    epoch_started: float | None = None

    @classmethod
    def wrap(cls, store: FeatureStore):
        return _shared_copy(cls, store)

    def iterate(self, indices, batch_size, shuffle=False, generator=None) -> Iterator:
        if shuffle and self.epoch_started is None:
            self.epoch_started = time.perf_counter()
        yield from super().iterate(indices, batch_size, shuffle=shuffle, generator=generator)


class NaiveFeatureStore(TimedFeatureStore):
    """Same tensors for everything a model reads outside batches; batches come from ``PerPEDataset`` +
    ``DataLoader(collate_fn=...)`` instead of an index gather."""

    dataset: PerPEDataset
    collate = None

    @classmethod
    def wrap(cls, store: FeatureStore, fields: Sequence[str], num_workers: int = 0):
        naive = _shared_copy(cls, store)
        naive.dataset = PerPEDataset(store.data, fields)
        naive.collate = make_collate(
            naive, fields, store.data.max_events, store.embedding_dim, store.vocab_size
        )
        naive.num_workers = num_workers
        return naive

    def iterate(self, indices, batch_size, shuffle=False, generator=None) -> Iterator:
        if shuffle and self.epoch_started is None:
            self.epoch_started = time.perf_counter()
        index = torch.as_tensor(np.asarray(indices), dtype=torch.long)
        if shuffle:  # the same order as FeatureStore.iterate for the same generator state
            index = index[torch.randperm(len(index), generator=generator)]
        loader = DataLoader(
            torch.utils.data.Subset(self.dataset, index.tolist()),
            batch_size=batch_size,
            shuffle=False,
            collate_fn=self.collate,
            num_workers=self.num_workers,
            # its own generator: a DataLoader draws a base seed, which must not shift the dropout masks
            generator=torch.Generator(),
        )
        yield from loader


# ------------------------------------------------------------------------------------------------ epochs
@dataclasses.dataclass
class EpochTiming:
    seconds: float  # one epoch (train + validation), summed over the model's stages
    pes: int  # PE examples in one training epoch, summed over stages


def time_one_epoch(
    name: str,
    store: FeatureStore,
    dependencies: dict,
    training: TrainingConfig,
    params: ModelParams,
    seed: int = 0,
) -> tuple[EpochTiming, object]:
    """Fit ``name`` for one epoch on ``store`` (a Timed/Naive FeatureStore); returns the timing and the fit."""
    stage_seconds: list[float] = []

    def callback(stage, epoch, train_loss, val_loss):
        if store.epoch_started is not None:
            stage_seconds.append(time.perf_counter() - store.epoch_started)
        store.epoch_started = None

    store.epoch_started = None
    cls = registry.get(name)
    recommender = cls(params, training, seed)
    deps = {d: dependencies[d] for d in cls.depends_on}
    with force_gru_implementation("torch" if isinstance(store, NaiveFeatureStore) else "auto"):
        recommender.fit(store, deps, callback)
    train_pes = len(store.data.split_validation(store.data.train_indices(cls.trains_on), 0.1)[0])
    return EpochTiming(sum(stage_seconds), train_pes * len(stage_seconds)), recommender


def bench_train(
    data: PreparedData,
    models: Sequence[str] | None = None,
    device: str = "cpu",
    device_label: str = "cpu",
    command: str = "",
    seed: int = 0,
    num_workers: int = 0,
    log=print,
) -> list[dict]:
    """Per-model epoch rows (seconds/epoch and PEs/s, project path vs naive loop)."""
    models = list(models or registry.names())
    training = TrainingConfig(max_epochs=1, patience=1000, device=device)
    store = FeatureStore(data, device=device)
    fitted: dict[str, object] = {}
    rows = []
    for name in registry.dependency_order(models):
        params = default_params(name)
        deps = {d: fitted[d] for d in registry.get(name).depends_on}
        if name in NO_EPOCHS:
            _, fitted[name] = time_one_epoch(
                name, TimedFeatureStore.wrap(store), deps, training, params, seed
            )
            continue
        # Two rounds, alternating sides, keeping each side's faster epoch: the first epoch measured in the
        # process pays torch's one-off kernel warm-up, which must not be charged to whichever side ran first.
        naive_store = NaiveFeatureStore.wrap(store, fields_for([name]), num_workers)
        fast = naive = None
        for _ in range(2):
            fast_round, fitted[name] = time_one_epoch(
                name, TimedFeatureStore.wrap(store), deps, training, params, seed
            )
            naive_round, _ = time_one_epoch(name, naive_store, deps, training, params, seed)
            fast = fast_round if fast is None or fast_round.seconds < fast.seconds else fast
            naive = naive_round if naive is None or naive_round.seconds < naive.seconds else naive
        baseline = "naive loop (per-PE Dataset + collate_fn per batch, nn.GRU; same module and weights)"
        rows.append(
            make_row(
                f"train/{name}", "seconds/epoch", fast.seconds, baseline, naive.seconds, device_label, command
            )
        )
        rows.append(
            make_row(
                f"train/{name}",
                "PEs/s",
                fast.pes / fast.seconds,
                baseline,
                naive.pes / naive.seconds,
                device_label,
                command,
            )
        )
        log(
            f"train {name}: {fast.seconds:.2f}s/epoch vs naive {naive.seconds:.2f}s "
            f"({naive.seconds / fast.seconds:.1f}x)"
        )
    return rows


def bench_fit_stage(
    data: PreparedData,
    seeds: Sequence[int] = (0, 1, 2, 3, 4),
    models: Sequence[str] | None = None,
    max_epochs: int = 3,
    device: str = "cpu",
    device_label: str = "cpu",
    command: str = "",
    log=print,
) -> list[dict]:
    """The local fit of every model x seed (``fit_models``), project path vs the naive data path."""
    from mmrec_ray.training.runner import fit_models

    models = list(models or registry.names())
    training = TrainingConfig(max_epochs=max_epochs, patience=1000, device=device)
    store = FeatureStore(data, device=device)
    seconds = {}
    for label, path in (
        ("project", TimedFeatureStore.wrap(store)),
        ("naive", NaiveFeatureStore.wrap(store, fields_for(models))),
    ):
        started = time.perf_counter()
        with force_gru_implementation("torch" if label == "naive" else "auto"):
            fit_models(data, models, list(seeds), None, training, store=path)
        seconds[label] = time.perf_counter() - started
        log(f"fit stage ({label} data path): {seconds[label]:.1f}s")
    metric = f"seconds ({len(models)} models x {len(seeds)} seeds, <= {max_epochs} epochs)"
    return [
        make_row(
            "fit/all_models_all_seeds",
            metric,
            seconds["project"],
            "the same fits on the naive data path",
            seconds["naive"],
            device_label,
            command,
        )
    ]
