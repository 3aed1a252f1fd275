"""Transformer (beyond the paper, issue #16): a Transformer encoder over a PE's events in place of the GRU of the
joint models, with the events in one latent space as in Latent Feature.

Shapes: B PEs, T events (left-aligned, ``lengths`` real), d = units (ModelParams), J items.

    x_i = tanh(W_c c_i) or tanh(W_s s_i)  +  m_{modality_i}  +  r_{recency_i}       (B, T, d)  (_event_embedding)
    z^0 = [x_cls ; x_1 ; ... ; x_T]                                                   (B, 1 + T, d)
    z^l = z^{l-1} + MHA(LN(z^{l-1}); key padding mask)  then  + FFN(LN(.))           l = 1..L  (pre-norm)
    h   = LN(z^L_cls)                                                                 (B, d)
    logits = OutputHead(h): Dropout -> Dense(units, ReLU) -> Linear(J)                (B, J)

Pooling: a learned [CLS] token rather than a masked mean. It is a learned summary like the GRU's final state
(the model can weight the most recent events, which carry most of the signal here), and it keeps one key that
is never masked: a PE whose events were all filtered away (the released data has some: sessions emptied by the
vocabulary filter) still gets a finite output, where a masked mean or an all-masked softmax would divide by
zero.

Size, chosen to stay comparable with the GRU models of Table 2 (GRU(units) on ~units/2 inputs has ~4.5·units²
weights): L = 2 pre-norm layers (pre-norm trains without learning-rate warm-up, which the shared training loop
does not have), 4 heads (fewer when units is not divisible by 4), feed-forward width = units — ~12·units² weights.
Dropout (ModelParams.dropout) inside attention and feed-forward and before the head, as the GRU models drop out
their first hidden layer. Tuned on the same grid (batch_size, units, dropout). Serves every PE type.

Padding: padded steps are masked keys, so they change no real token; ranks and shapes do not depend on T, and
the encoder reads only up to the batch's longest history (so that dropout's random masks do not either).
"""

from __future__ import annotations

import torch
from torch import nn

from mmrec_ray.data.features import Batch, FeatureStore
from mmrec_ray.models._event_embedding import EMBEDDING_STD, EventEmbedding
from mmrec_ray.models.layers import OutputHead
from mmrec_ray.models.neural import NetworkRecommender
from mmrec_ray.models.registry import register

NUM_LAYERS = 2


def attention_heads(units: int) -> int:
    """4 heads when units allows it (every width of the paper's grid), else the largest of 2, 1 that divides."""
    return next(h for h in (4, 2, 1) if units % h == 0)


class TransformerNetwork(nn.Module):
    """forward(is_conversation (B, T), conversation (B, T, D), session (B, T, V), lengths (B,)) -> logits (B, J)."""

    def __init__(
        self,
        embedding_dim: int,
        vocab_size: int,
        units: int,
        num_items: int,
        dropout: float,
        num_layers: int = NUM_LAYERS,
    ):
        super().__init__()
        self.events = EventEmbedding(embedding_dim, vocab_size, units)
        self.cls = nn.Parameter(torch.randn(units) * EMBEDDING_STD)
        layer = nn.TransformerEncoderLayer(
            units,
            attention_heads(units),
            dim_feedforward=units,
            dropout=dropout,
            batch_first=True,
            norm_first=True,
        )
        # Nested tensors do not support pre-norm layers; the flag only silences PyTorch's warning about it.
        self.encoder = nn.TransformerEncoder(
            layer, num_layers, norm=nn.LayerNorm(units), enable_nested_tensor=False
        )
        self.head = OutputHead(units, units, num_items, dropout)

    def encode(
        self,
        is_conversation: torch.Tensor,
        conversation: torch.Tensor,
        session: torch.Tensor,
        lengths: torch.Tensor,
    ) -> torch.Tensor:
        """The pooled representation h (B, d): the [CLS] output after the final LayerNorm."""
        # Only as many steps as the batch's longest history: dropout inside the encoder draws masks shaped like
        # the sequence, so a longer padded T would draw different masks and train a different model.
        longest = int(lengths.max()) if lengths.numel() else 0
        is_conversation, conversation, session = (
            x[:, :longest] for x in (is_conversation, conversation, session)
        )
        tokens = self.events(is_conversation, conversation, session, lengths)
        batch, steps, _ = tokens.shape
        sequence = torch.cat([self.cls.expand(batch, 1, -1), tokens], dim=1)
        position = torch.arange(steps, device=lengths.device)
        ignore = torch.cat(
            [
                torch.zeros((batch, 1), dtype=torch.bool, device=lengths.device),
                position[None, :] >= lengths.to(torch.long)[:, None],
            ],
            dim=1,
        )
        return self.encoder(sequence, src_key_padding_mask=ignore)[:, 0]

    def forward(
        self,
        is_conversation: torch.Tensor,
        conversation: torch.Tensor,
        session: torch.Tensor,
        lengths: torch.Tensor,
    ) -> torch.Tensor:
        return self.head(self.encode(is_conversation, conversation, session, lengths))


@register
class TransformerRecommender(NetworkRecommender):
    name = "transformer"
    display_name = "Transformer"
    trains_on = "all"

    def build_network(self, store: FeatureStore) -> nn.Module:
        return TransformerNetwork(
            store.embedding_dim, store.vocab_size, self.params.units, store.num_items, self.params.dropout
        )

    def logits(self, network: nn.Module, batch: Batch) -> torch.Tensor:
        return network(batch.is_conversation, batch.event_conversation, batch.event_session, batch.lengths)
