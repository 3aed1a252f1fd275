"""UiM's third idea (Xu et al., section III-D): a simulated user gives feedback on the recommender's candidates,
and the recommender re-ranks them before answering. Two simulators behind one interface, ``UserSimulator``,
and two registry models that re-rank a fitted ``uim`` (same seed, ``depends_on``):

- ``uim_learned_feedback``: ``LearnedSimulator``, a network trained on the training PEs to predict whether the
  user accepts (buys) a candidate given the profile and the history;
- ``uim_llm_feedback``: ``LlmJudge``, a Hugging Face causal LM loaded from a local folder, asked item by item
  whether the customer takes the offer; acceptance from the likelihoods of the answers.

Re-ranking (a fixed blend). UiM hands 2N candidates to the simulated user to keep N; for the headline cut-off
k = 3 that is the recommender's top ``CANDIDATES`` = 6 items by score p. The simulator returns an acceptance
q in [0, 1] per candidate. With r_p, r_q the 0-based ranks of a candidate by p and by q among the candidates,

    z = (1 - λ) · r_p + λ · r_q,     λ = FEEDBACK_WEIGHT = 0.5,

and the candidates are re-ordered by z, ties kept in the recommender's order (so the simulator moves an item
up only when it disagrees more than the recommender does). Ranks, not raw values, so that an LLM's likelihoods
and a trained classifier's probabilities weigh the same. The re-ordered candidates take the recommender's own
top-6 score values in their new order; every other item keeps its score. The output stays a probability-like
score, items outside the candidates are untouched, and the evaluator's post-filter applies as to any model.

Leakage: both simulators read a PE's events and its profile (``_user_profile``: earlier purchases of the same
user from training labels only) — never the PE's own purchases or its post-filter.
"""

from __future__ import annotations

import json
import os
import re
import warnings
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mmrec_ray.data.features import Batch, FeatureStore
from mmrec_ray.data.tensors import EVENT_CONVERSATION, EVENT_SESSION, PreparedData
from mmrec_ray.models._event_embedding import EventEmbedding
from mmrec_ray.models._multistage import cpu_state, require_dependencies, restore, snapshot
from mmrec_ray.models._user_profile import ProfileTables, earlier_purchases, profile_width
from mmrec_ray.models.base import EpochCallback, FitResult, Recommender
from mmrec_ray.models.layers import OutputHead
from mmrec_ray.models.neural import fit_network, fit_result, predict_batches
from mmrec_ray.models.registry import register
from mmrec_ray.training.loop import seed_everything
from mmrec_ray.training.losses import multilabel_bce

CANDIDATES = 6  # UiM's "2x" strategy for the headline cut-off k = 3
FEEDBACK_WEIGHT = 0.5  # λ of the blend
RECOMMENDER = "uim"
JUDGE_ENVIRONMENT = "MMREC_UIM_JUDGE"  # a local folder holding a Hugging Face causal LM and its tokenizer


# ------------------------------------------------------------------------------------------------ re-ranking
def top_candidates(scores: np.ndarray, count: int = CANDIDATES) -> np.ndarray:
    """(n, J) scores -> (n, min(count, J)) item columns, best first (ties: lower column first)."""
    count = min(count, scores.shape[1])
    return np.argsort(-scores, axis=1, kind="stable")[:, :count]


def rerank(
    scores: np.ndarray, candidates: np.ndarray, acceptance: np.ndarray, weight: float = FEEDBACK_WEIGHT
) -> np.ndarray:
    """The blend of the module docstring: (n, J) scores, (n, N) candidate columns best first, (n, N) acceptance
    -> (n, J) scores with the candidates' top-N values permuted. Rows with a non-finite score are kept as they
    are (a model that does not serve the PE)."""
    out = np.array(scores, dtype=np.float32, copy=True)
    count = candidates.shape[1]
    rank_p = np.broadcast_to(np.arange(count, dtype=np.float64), candidates.shape)
    rank_q = np.argsort(np.argsort(-acceptance, axis=1, kind="stable"), axis=1, kind="stable")
    blended = (1.0 - weight) * rank_p + weight * rank_q
    new_order = np.argsort(blended, axis=1, kind="stable")  # stable: ties stay in the recommender's order
    values = np.take_along_axis(out, candidates, axis=1)  # descending: the top-N values
    rows = np.arange(len(out))[:, None]
    out[rows, np.take_along_axis(candidates, new_order, axis=1)] = values
    served = np.isfinite(scores).all(axis=1)
    out[~served] = scores[~served]
    return out


class UserSimulator(ABC):
    """A simulated user: how likely the user of each PE is to accept each candidate item."""

    @abstractmethod
    def acceptance(self, store: FeatureStore, indices: np.ndarray, candidates: np.ndarray) -> np.ndarray:
        """(n,) PE rows, (n, N) candidate item columns -> (n, N) float acceptance in [0, 1]."""


# ------------------------------------------------------------------------------------------- learned simulator
class SimulatorNetwork(nn.Module):
    """The learned simulated user: an order-free memory of the events plus the profile -> acceptance logits.

        x_i = event tokens (``_event_embedding``)                              (B, T, d)
        m   = Σ_i x_i / max(n, 1)    (the user's memory of what they did)     (B, d)
        e_u = ReLU(W_u p_u + b_u)                                              (B, d)
        logits = OutputHead([m ; e_u]): Dropout -> Dense(units, ReLU) -> J     (B, J)

    Deliberately not UiM's architecture (no order, no interests, no recommender scores as input), so that its
    feedback is a second opinion rather than the recommender's own. forward(is_conversation, conversation,
    session, lengths, profile (B, P)) -> (B, J) logits of "accepts item j".
    """

    def __init__(
        self,
        embedding_dim: int,
        vocab_size: int,
        profile_dim: int,
        units: int,
        num_items: int,
        dropout: float,
    ):
        super().__init__()
        self.events = EventEmbedding(embedding_dim, vocab_size, units)
        self.profile = nn.Sequential(nn.Linear(profile_dim, units), nn.ReLU())
        self.head = OutputHead(2 * units, units, num_items, dropout)

    def forward(
        self,
        is_conversation: torch.Tensor,
        conversation: torch.Tensor,
        session: torch.Tensor,
        lengths: torch.Tensor,
        profile: torch.Tensor,
    ) -> torch.Tensor:
        tokens = self.events(is_conversation, conversation, session, lengths)  # zero at padding
        memory = tokens.sum(dim=1) / lengths.clamp(min=1).to(tokens.dtype)[:, None]
        return self.head(torch.cat([memory, self.profile(profile)], dim=-1))


class LearnedSimulator(UserSimulator):
    """Acceptance = σ(SimulatorNetwork logits), trained with the project's BCE (eq. 6) on the training PEs:
    every item is a candidate there (J = 24 is small), and "accepted" = bought in the PE."""

    def __init__(self, network: SimulatorNetwork, profiles: ProfileTables):
        self.network = network
        self.profiles = profiles

    def logits(self, network: nn.Module, batch: Batch) -> torch.Tensor:
        profile = self.profiles.rows(batch.store, batch.index)
        return network(
            batch.is_conversation, batch.event_conversation, batch.event_session, batch.lengths, profile
        )

    def acceptance(self, store: FeatureStore, indices: np.ndarray, candidates: np.ndarray) -> np.ndarray:
        self.network.to(store.device)
        every_item = predict_batches(self.network, self.logits, store, np.asarray(indices))
        return np.take_along_axis(every_item, candidates, axis=1)


# ----------------------------------------------------------------------------------------------- LLM judge
@dataclass
class Catalogue:
    """The text a prompt can use. The prepared tensors hold none (conversations are sentence embeddings,
    sessions and keywords are ids), so it is read from the data folder the tensors were prepared from
    (``PreparedData.meta["source"]``), when that folder is readable here:

    - item names and tag names: ``generation_info.json``, written by the synthetic generator only — the released
      data names neither its 24 items nor its tags, so prompts then say "item 7" and "tag 41";
    - conversation text: ``data_conversations_text.csv`` (SPEC 2.2), the customer's first sentences of each
      conversation — absent from the release (embeddings only) and from generated data made with ``text: false``;
      prompts then say "a phone call" only.
    """

    item_names: dict[int, str] = field(default_factory=dict)
    tag_names: dict[int, str] = field(default_factory=dict)
    conversation_text: dict[int, str] = field(default_factory=dict)  # conversation id -> customer's words
    found: dict[str, Any] = field(default_factory=dict)  # what was read, for FitResult.extra

    SENTENCES = 2  # customer sentences quoted per conversation
    CHARACTERS = 160  # and at most this much of them

    @classmethod
    def from_data(cls, data: PreparedData) -> Catalogue:
        folder = Path(str(data.meta.get("source", "")))
        catalogue = cls(found={"folder": str(folder)})
        info_path = folder / "generation_info.json"
        if info_path.is_file():
            info = json.loads(info_path.read_text())
            catalogue.item_names = {int(k): v["name"] for k, v in (info.get("items") or {}).items()}
            catalogue.tag_names = {int(v): str(k) for k, v in (info.get("tags") or {}).items()}
        text_path = folder / "data_conversations_text.csv"
        if text_path.is_file():
            catalogue.conversation_text = _customer_words(
                text_path, set(np.asarray(data.conversation_id).tolist()), cls.SENTENCES, cls.CHARACTERS
            )
        catalogue.found.update(
            item_names=len(catalogue.item_names),
            tag_names=len(catalogue.tag_names),
            conversation_texts=len(catalogue.conversation_text),
        )
        return catalogue

    def item(self, item_id: int) -> str:
        return self.item_names.get(int(item_id), f"item {int(item_id)}")

    def tag(self, tag_id: int) -> str:
        name = self.tag_names.get(int(tag_id))
        if name is None:
            return f"tag {int(tag_id)}"
        name = name.split(":", 1)[-1]  # "object:item4" -> "item4"
        name = re.sub(r"item(\d+)", lambda m: self.item(int(m.group(1))), name)
        return name.replace("_", " ")


def _customer_words(path: Path, wanted: set[int], sentences: int, characters: int) -> dict[int, str]:
    import pandas as pd

    frame = pd.read_csv(path, usecols=["conversation_id", "sentence_number", "sentence_speaker", "text"])
    frame = frame[(frame["sentence_speaker"] == "user") & frame["conversation_id"].isin(wanted)]
    frame = frame.sort_values(["conversation_id", "sentence_number"], kind="stable")
    first = frame.groupby("conversation_id", sort=False).head(sentences)
    joined = first.groupby("conversation_id", sort=False)["text"].apply(lambda t: " ".join(map(str, t)))
    return {int(k): v[:characters] for k, v in joined.items()}


class PromptWriter:
    """UiM's profile, memory and feedback templates (section III-D) for an insurance customer, item by item
    (the paper's template b: "decide ... item by item"). The answer is scored, not generated: the judge compares
    the likelihoods of " yes" and " no" after the prompt."""

    MAX_EVENTS = 5  # the most recent events quoted (the prompt must stay short for small LMs)
    MAX_TAGS = 6

    def __init__(self, data: PreparedData, catalogue: Catalogue):
        self.data = data
        self.catalogue = catalogue
        self.bought, _ = earlier_purchases(data)  # training labels of earlier PEs only
        self.item_ids = np.asarray(data.item_ids)
        self.vocabulary = np.asarray(data.vocabulary)

    def history(self, pe: int) -> str:
        data, catalogue = self.data, self.catalogue
        owned = [catalogue.item(i) for i in self.item_ids[self.bought[pe]]]
        profile = (
            f"The customer has bought before: {', '.join(owned)}."
            if owned
            else "The customer has no earlier purchases on record."
        )
        n = int(data.n_events[pe])
        lines = []
        for step in range(max(0, n - self.MAX_EVENTS), n):
            kind, row = int(data.event_kind[pe, step]), int(data.event_row[pe, step])
            if kind == EVENT_CONVERSATION:
                words = catalogue.conversation_text.get(int(data.conversation_id[row]))
                lines.append(f'a phone call ("{words}")' if words else "a phone call")
            elif kind == EVENT_SESSION:
                tags = self.vocabulary[np.flatnonzero(np.asarray(data.session_tags[row]))][: self.MAX_TAGS]
                shown = ", ".join(catalogue.tag(t) for t in tags)
                lines.append(f"a web visit ({shown})" if shown else "a web visit")
        contacts = "; ".join(lines) if lines else "none"
        return f"{profile} Recent contacts, oldest first: {contacts}."

    def prompt(self, history: str, item_column: int) -> str:
        item = self.catalogue.item(self.item_ids[item_column])
        return (
            "You are simulating a customer of an insurance company. "
            f"{history} The company now recommends: {item}. "
            "Would the customer accept this recommendation? Answer:"
        )


class LlmJudge(UserSimulator):
    """Acceptance from a causal LM: q = σ(log P(" yes" | prompt) − log P(" no" | prompt)), each answer's log
    likelihood summed over its tokens (any tokenizer). Loaded offline from ``folder``."""

    ANSWERS = (" yes", " no")
    BATCH = 16  # sequences per forward pass

    def __init__(self, folder: str | Path, device: str | torch.device = "cpu"):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.folder = str(folder)
        if not Path(self.folder).is_dir():
            raise FileNotFoundError(f"LLM judge: {self.folder} is not a folder holding a causal LM")
        self.tokenizer = AutoTokenizer.from_pretrained(self.folder, local_files_only=True)
        self.model = AutoModelForCausalLM.from_pretrained(self.folder, local_files_only=True)
        self.model.eval()
        self.device = torch.device(device)
        config = self.model.config
        self.max_length = int(
            getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None) or 1024
        )
        self._writer: tuple[PreparedData, PromptWriter] | None = None

    def writer(self, data: PreparedData) -> PromptWriter:
        """The prompt writer of ``data`` (its catalogue read once per dataset)."""
        if self._writer is None or self._writer[0] is not data:
            self._writer = (data, PromptWriter(data, Catalogue.from_data(data)))
        return self._writer[1]

    @torch.no_grad()
    def answer_log_likelihood(self, prompts: list[str], answer: str) -> np.ndarray:
        """(len(prompts),) float64: log P(answer | prompt) under the LM, summed over the answer's tokens."""
        answer_ids = self.tokenizer(answer, add_special_tokens=False)["input_ids"]
        if not answer_ids:
            raise ValueError(f"LLM judge: the tokenizer maps {answer!r} to no tokens")
        pad = self.tokenizer.pad_token_id
        pad = pad if pad is not None else (self.tokenizer.eos_token_id or 0)
        self.model.to(self.device)
        out = np.empty(len(prompts), dtype=np.float64)
        for start in range(0, len(prompts), self.BATCH):
            chunk = prompts[start : start + self.BATCH]
            budget = self.max_length - len(answer_ids)
            # Keep a prompt's end (the offer and the question) when it is too long for the LM.
            sequences = [self.tokenizer(p)["input_ids"][-budget:] + answer_ids for p in chunk]
            width = max(len(s) for s in sequences)
            ids = torch.full((len(chunk), width), pad, dtype=torch.long)
            mask = torch.zeros((len(chunk), width), dtype=torch.long)
            for i, sequence in enumerate(sequences):
                ids[i, : len(sequence)] = torch.tensor(sequence)
                mask[i, : len(sequence)] = 1
            logits = self.model(input_ids=ids.to(self.device), attention_mask=mask.to(self.device)).logits
            log_probs = torch.log_softmax(logits[:, :-1].float(), dim=-1)
            token = log_probs.gather(-1, ids[:, 1:].to(self.device)[..., None])[..., 0].cpu()  # (b, L - 1)
            for i, sequence in enumerate(sequences):
                end = len(sequence) - 1  # log P(token t+1) sits at position t
                out[start + i] = float(token[i, end - len(answer_ids) : end].sum())
        return out

    def acceptance(self, store: FeatureStore, indices: np.ndarray, candidates: np.ndarray) -> np.ndarray:
        writer = self.writer(store.data)
        indices = np.asarray(indices)
        prompts = []
        for row, pe in enumerate(indices):
            history = writer.history(int(pe))
            prompts.extend(writer.prompt(history, int(j)) for j in candidates[row])
        yes, no = (self.answer_log_likelihood(prompts, answer) for answer in self.ANSWERS)
        accept = 1.0 / (1.0 + np.exp(-(yes - no)))
        return accept.reshape(candidates.shape).astype(np.float32)


def judge_folder() -> str | None:
    """The judge's folder from the environment (``MMREC_UIM_JUDGE``), None when unset or empty."""
    return os.environ.get(JUDGE_ENVIRONMENT) or None


# ---------------------------------------------------------------------------------------- registry models
class _FeedbackRecommender(Recommender):
    """UiM's scores, re-ranked with a simulator's acceptance of its top candidates (module docstring)."""

    depends_on = (RECOMMENDER,)
    trains_on = "all"

    def __init__(self, params, training, seed: int):
        super().__init__(params, training, seed)
        self.recommender: Recommender | None = None

    @abstractmethod
    def simulator(self) -> UserSimulator | None:
        """The simulator, or None to answer with the recommender's scores unchanged."""

    def predict(self, store: FeatureStore, indices: np.ndarray) -> np.ndarray:
        if self.recommender is None:
            raise RuntimeError(f"{self.name}: predict before fit/load_state_dict")
        indices = np.asarray(indices)
        scores = self.recommender.predict(store, indices)
        simulator = self.simulator()
        if simulator is None or len(indices) == 0:
            return scores
        candidates = top_candidates(np.nan_to_num(scores, nan=-np.inf))
        return rerank(scores, candidates, simulator.acceptance(store, indices, candidates))


@register
class UimLearnedFeedbackRecommender(_FeedbackRecommender):
    name = "uim_learned_feedback"
    display_name = "UiM + learned feedback"

    def __init__(self, params, training, seed: int):
        super().__init__(params, training, seed)
        self.profiles = ProfileTables()
        self.network: SimulatorNetwork | None = None

    def build_network(self, store: FeatureStore) -> SimulatorNetwork:
        return SimulatorNetwork(
            store.embedding_dim,
            store.vocab_size,
            profile_width(store.num_items),
            self.params.units,
            store.num_items,
            self.params.dropout,
        )

    def simulator(self) -> UserSimulator | None:
        if self.network is None:
            raise RuntimeError(f"{self.name}: no simulator before fit/load_state_dict")
        return LearnedSimulator(self.network, self.profiles)

    def fit(
        self, store: FeatureStore, dependencies: dict[str, Recommender], callback: EpochCallback | None = None
    ) -> FitResult:
        self.recommender = require_dependencies(self, dependencies)[RECOMMENDER]
        seed_everything(self.seed)  # the simulator's initial weights depend on the seed only
        self.network = self.build_network(store)
        simulator = LearnedSimulator(self.network, self.profiles)
        reduction = self.training.fidelity.loss_reduction

        def loss(network: nn.Module, batch: Batch) -> torch.Tensor:
            return multilabel_bce(simulator.logits(network, batch), batch.targets, reduction=reduction)

        outcome = fit_network(
            self, self.network, loss, store, store.data.train_indices(self.trains_on), "simulator", callback
        )
        return fit_result(
            outcome, "simulator", extra={"candidates": CANDIDATES, "feedback_weight": FEEDBACK_WEIGHT}
        )

    def state_dict(self) -> dict[str, Any]:
        if self.network is None or self.recommender is None:
            raise RuntimeError(f"{self.name}: nothing to save before fit")
        return {"recommender": snapshot(self.recommender), "simulator": cpu_state(self.network)}

    def load_state_dict(self, state: dict[str, Any], store: FeatureStore) -> None:
        self.recommender = restore(RECOMMENDER, state["recommender"], self.training, store)
        self.network = self.build_network(store)
        self.network.load_state_dict(state["simulator"])
        self.network.to(store.device)
        self.network.eval()


@register
class UimLlmFeedbackRecommender(_FeedbackRecommender):
    """The LLM judge's folder comes from ``MMREC_UIM_JUDGE`` (the experiment config has no field for it; set the
    variable for the driver and, on a cluster, in the job's runtime_env). Without it the model is a stage
    component (``reported`` False: no Table 3 row, no predictions written) that answers with UiM's scores, so
    that a run or a test fitting every registered model still completes; fit warns and says so in its result.
    The judge's weights stay in their folder: a checkpoint records the folder, not the weights."""

    name = "uim_llm_feedback"
    display_name = "UiM + LLM feedback"
    search_space = {}  # the judge is frozen; UiM is tuned on its own
    reported = judge_folder() is not None

    def __init__(self, params, training, seed: int):
        super().__init__(params, training, seed)
        self.folder: str | None = None
        self.judge: LlmJudge | None = None

    def simulator(self) -> UserSimulator | None:
        return self.judge

    def _load(self, folder: str | None, store: FeatureStore) -> None:
        self.folder = folder
        self.judge = None if folder is None else LlmJudge(folder, store.device)

    def fit(
        self, store: FeatureStore, dependencies: dict[str, Recommender], callback: EpochCallback | None = None
    ) -> FitResult:
        self.recommender = require_dependencies(self, dependencies)[RECOMMENDER]
        self._load(judge_folder(), store)
        if self.judge is None:
            warnings.warn(
                f"{self.name}: {JUDGE_ENVIRONMENT} is not set, so there is no LLM judge: the scores are UiM's "
                "and the model is not reported",
                stacklevel=2,
            )
            return FitResult(extra={"judge": None})
        found = Catalogue.from_data(store.data).found
        return FitResult(
            extra={
                "judge": self.folder,
                "text": found,
                "candidates": CANDIDATES,
                "feedback_weight": FEEDBACK_WEIGHT,
            }
        )

    def state_dict(self) -> dict[str, Any]:
        if self.recommender is None:
            raise RuntimeError(f"{self.name}: nothing to save before fit")
        return {"recommender": snapshot(self.recommender), "judge": self.folder}

    def load_state_dict(self, state: dict[str, Any], store: FeatureStore) -> None:
        self.recommender = restore(RECOMMENDER, state["recommender"], self.training, store)
        self._load(state.get("judge"), store)
