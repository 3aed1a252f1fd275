"""A randomly initialised BERT written as a Hugging Face model folder.

Why: tests need an encoder that loads by path without the hub, and benchmarks need a BERT-base-sized encoder whose
cost equals the real one (weights do not change the FLOPs). The folder loads with ``SentenceEncoder(path)``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def write_random_bert(
    directory: str | Path,
    words: Iterable[str] = (),
    hidden_size: int = 32,
    num_hidden_layers: int = 2,
    num_attention_heads: int = 2,
    intermediate_size: int = 64,
    max_position_embeddings: int = 128,
    seed: int = 0,
) -> Path:
    """Write config, random weights and a word-level WordPiece tokenizer whose vocabulary is ``words``.

    ``hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072`` gives BERT-base.
    """
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    vocabulary = list(SPECIAL_TOKENS)
    seen = set(vocabulary)
    for word in words:
        for token in re.findall(r"\w+|[^\w\s]", word.lower()):
            if token not in seen:
                seen.add(token)
                vocabulary.append(token)
    vocab_file = directory / "vocab.txt"
    vocab_file.write_text("\n".join(vocabulary) + "\n")
    tokenizer = BertTokenizerFast(vocab_file=str(vocab_file), do_lower_case=True)
    tokenizer.save_pretrained(directory)

    config = BertConfig(
        vocab_size=len(vocabulary),
        hidden_size=hidden_size,
        num_hidden_layers=num_hidden_layers,
        num_attention_heads=num_attention_heads,
        intermediate_size=intermediate_size,
        max_position_embeddings=max_position_embeddings,
        pad_token_id=0,
    )
    torch.manual_seed(seed)
    BertModel(config).save_pretrained(directory)
    return directory
