"""Event tokens shared by the Transformer, UiM and UiM's learned user simulator: every event of a PE mapped into
one latent space, as Latent Feature does (eq. 4, the ``select`` form), plus what a GRU gets from reading the
events in order — here a learned embedding of the event's modality and of its recency rank.

Shapes: B PEs, T steps (events left-aligned, ``lengths`` real ones), D sentence-embedding width, V vocabulary,
d the latent width.

    l_i = tanh(W_c c_i + b_c)  if event i is a conversation,   tanh(W_s s_i + b_s)  if it is a session
    x_i = l_i + m_{kind_i} + r_{rank_i},   rank_i = n - 1 - i  (0 = the most recent event)

Recency rather than position from the start: the last event sits at the same embedding whatever the history
length, and the released histories are right-censored at 10 events (older events dropped), so "how long ago"
is the comparable quantity. Ranks from ``MAX_RANK`` on share one embedding, so no parameter shape depends on
the data's T (padding the data, or longer histories elsewhere, must not change the network).
"""

from __future__ import annotations

import torch
from torch import nn

from mmrec_ray.models.layers import TanhProjection

MAX_RANK = (
    32  # recency ranks >= MAX_RANK - 1 share the last embedding (the released data has at most 10 events)
)
EMBEDDING_STD = 0.1  # small next to the tanh features in (-1, 1), so the modality/rank terms start as nudges


def recency_rank(lengths: torch.Tensor, steps: int) -> torch.Tensor:
    """(B,) lengths -> (B, T) long: n - 1 - i at real steps, clamped to [0, MAX_RANK - 1]; 0 at padding."""
    position = torch.arange(steps, device=lengths.device)
    rank = lengths.to(torch.long)[:, None] - 1 - position[None, :]
    return rank.clamp(0, MAX_RANK - 1)


class EventEmbedding(nn.Module):
    """forward(is_conversation (B, T) float, conversation (B, T, D), session (B, T, V), lengths (B,))
    -> (B, T, d) event tokens x_i (module docstring), zeros at padded steps."""

    def __init__(self, embedding_dim: int, vocab_size: int, width: int):
        super().__init__()
        self.conversation_projection = TanhProjection(embedding_dim, width)  # W_c
        self.session_projection = TanhProjection(vocab_size, width)  # W_s
        self.modality = nn.Embedding(2, width)  # m: 0 conversation, 1 session
        self.recency = nn.Embedding(MAX_RANK, width)  # r
        nn.init.normal_(self.modality.weight, std=EMBEDDING_STD)
        nn.init.normal_(self.recency.weight, std=EMBEDDING_STD)

    def forward(
        self,
        is_conversation: torch.Tensor,
        conversation: torch.Tensor,
        session: torch.Tensor,
        lengths: torch.Tensor,
    ) -> torch.Tensor:
        steps = is_conversation.shape[1]
        real = torch.arange(steps, device=lengths.device)[None, :] < lengths.to(torch.long)[:, None]
        conversational = is_conversation > 0
        latent = torch.where(
            conversational.unsqueeze(-1),
            self.conversation_projection(conversation),
            self.session_projection(session),
        )
        tokens = (
            latent
            + self.modality((~conversational).to(torch.long))
            + self.recency(recency_rank(lengths, steps))
        )
        return tokens * real.unsqueeze(-1).to(tokens.dtype)
