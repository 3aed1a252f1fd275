import numpy as np
import pytest

from mmrec_ray.embed.encoder import PACKAGED_ENCODER, SentenceEncoder, mean_pool, resolve_encoder
from mmrec_ray.embed.random_bert import write_random_bert
from mmrec_ray.errors import ConfigError

SENTENCES = [
    "I want to report a claim for my car after an accident",
    "yes",
    "my car was damaged in a crash and I need to file a claim",
    "could you tell me the price of travel insurance for a family trip to spain next summer please",
    "thank you",
    "the dog ate the cake",
]


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    words = " ".join(SENTENCES).split()
    return write_random_bert(tmp_path_factory.mktemp("tiny_bert"), words=words, seed=3)


@pytest.fixture(scope="module")
def minilm():
    return SentenceEncoder(PACKAGED_ENCODER, device="cpu", batch_size=4)


def test_packaged_minilm_loads_offline_and_is_semantic(minilm, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert resolve_encoder(PACKAGED_ENCODER).endswith("model")
    offline = SentenceEncoder(PACKAGED_ENCODER, device="cpu")
    embeddings = offline.encode(SENTENCES)
    assert offline.dim == 384
    assert embeddings.shape == (len(SENTENCES), 384)
    assert embeddings.dtype == np.float32
    assert np.isfinite(embeddings).all()
    unit = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
    cosine = unit @ unit.T
    # two car-claim sentences are closer to each other than either is to the cake sentence
    assert cosine[0, 2] > cosine[0, 5] + 0.2
    assert cosine[0, 2] > cosine[2, 5] + 0.2


def test_length_sorted_batches_equal_one_at_a_time(minilm):
    batched = minilm.encode(SENTENCES)
    single = np.stack([minilm.encode([s])[0] for s in SENTENCES])
    np.testing.assert_allclose(batched, single, atol=1e-5)


def test_padding_does_not_change_embedding(tiny_bert):
    encoder = SentenceEncoder(str(tiny_bert), batch_size=16)
    short, long = SENTENCES[1], SENTENCES[3]
    ids = encoder.tokenize([short, long])
    assert len(ids[0]) < len(ids[1])
    alone = encoder.encode_token_ids([ids[0]])
    with_long = encoder.encode_token_ids(ids)  # short one padded to the long one's length
    np.testing.assert_allclose(with_long[0], alone[0], atol=1e-5)


def test_order_restored_and_batch_size_irrelevant(tiny_bert):
    big = SentenceEncoder(str(tiny_bert), batch_size=64).encode(SENTENCES)
    small = SentenceEncoder(str(tiny_bert), batch_size=2).encode(SENTENCES)
    np.testing.assert_allclose(big, small, atol=1e-5)
    reversed_ = SentenceEncoder(str(tiny_bert), batch_size=2).encode(SENTENCES[::-1])
    np.testing.assert_allclose(reversed_[::-1], big, atol=1e-5)
    # different sentences give different vectors (not an all-equal output)
    assert not np.allclose(big[0], big[1])


def test_tiny_bert_loads_by_path(tiny_bert):
    encoder = SentenceEncoder(str(tiny_bert))
    assert encoder.dim == 32
    assert encoder.encode(SENTENCES[:2]).shape == (2, 32)
    assert encoder.encode([]).shape == (0, 32)


def test_truncation_to_max_length(tiny_bert):
    encoder = SentenceEncoder(str(tiny_bert), max_length=8)
    assert max(len(ids) for ids in encoder.tokenize(SENTENCES)) == 8
    assert encoder.encode(SENTENCES).shape == (len(SENTENCES), 32)


def test_mean_pool_ignores_masked_positions():
    import torch

    hidden = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]])
    mask = torch.tensor([[1, 1, 0]])
    np.testing.assert_allclose(mean_pool(hidden, mask).numpy(), [[2.0, 3.0]])


def test_bad_encoder_names(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="config.json"):
        resolve_encoder(str(tmp_path / "empty"))
    with pytest.raises(ConfigError, match="dtype"):
        SentenceEncoder(PACKAGED_ENCODER, dtype="int8")


# ------------------------------------------------------------------ the GPU-speed path, checked on the CPU
def test_token_budget_batches_hold_at_most_the_budget_and_give_the_same_embeddings(tiny_bert):
    lengths = np.array([3, 40, 5, 5, 12, 2, 40, 7, 9, 1])
    encoder = SentenceEncoder(str(tiny_bert), token_budget=40)
    batches = encoder.batches(lengths)
    assert sorted(np.concatenate(batches).tolist()) == list(range(len(lengths)))  # each sentence once
    for batch in batches:
        assert len(batch) * lengths[batch].max() <= 40 or len(batch) == 1
    # sorted 1,2,3,5,5 | 7,9,12 | 40 | 40: short sentences share a batch, long ones do not
    assert [len(b) for b in batches] == [5, 3, 1, 1]
    fixed = SentenceEncoder(str(tiny_bert), batch_size=2).encode(SENTENCES * 5)
    budgeted = SentenceEncoder(str(tiny_bert), token_budget=64).encode(SENTENCES * 5)
    np.testing.assert_allclose(budgeted, fixed, atol=1e-5)


def test_sdpa_attention_equals_eager(tiny_bert):
    sdpa = SentenceEncoder(str(tiny_bert), attention="sdpa")
    eager = SentenceEncoder(str(tiny_bert), attention="eager")
    assert sdpa.model.config._attn_implementation == "sdpa"
    np.testing.assert_allclose(sdpa.encode(SENTENCES), eager.encode(SENTENCES), atol=1e-5)
    with pytest.raises(ConfigError, match="attention"):
        SentenceEncoder(str(tiny_bert), attention="flash")


def test_bf16_weights_are_cast_once_and_agree_with_fp32(tiny_bert):
    import torch

    bf16 = SentenceEncoder(str(tiny_bert), dtype="bfloat16")
    assert {p.dtype for p in bf16.model.parameters()} == {torch.bfloat16}  # no fp32 weights under autocast
    fp32 = SentenceEncoder(str(tiny_bert), dtype="float32").encode(SENTENCES)
    low = bf16.encode(SENTENCES)
    assert low.dtype == np.float32
    cosine = (low * fp32).sum(1) / np.linalg.norm(low, axis=1) / np.linalg.norm(fp32, axis=1)
    assert cosine.min() >= 0.999, cosine


def test_repeats_are_encoded_once_and_equal_a_fresh_encode(tiny_bert):
    """A transcript's repeated sentences (and repeats across calls, within cache_size) take no forward pass, and the
    result equals encoding every row on its own."""
    rows = [SENTENCES[i] for i in (1, 0, 1, 4, 1, 0, 4, 4)]
    plain = np.stack([SentenceEncoder(str(tiny_bert)).encode([s])[0] for s in rows])
    encoder = SentenceEncoder(str(tiny_bert), batch_size=2, cache_size=2)
    np.testing.assert_allclose(encoder.encode(rows), plain, atol=1e-5)
    assert (encoder.sentences_seen, encoder.sentences_encoded) == (8, 3)
    # the cache keeps the last two distinct sequences first seen (the claim sentence, "thank you"); "yes" went
    again = encoder.encode([SENTENCES[4], SENTENCES[1], SENTENCES[0]])
    np.testing.assert_allclose(again, plain[[3, 0, 1]], atol=1e-5)
    assert encoder.sentences_encoded == 4
    without_cache = SentenceEncoder(str(tiny_bert), cache_size=0)
    np.testing.assert_allclose(without_cache.encode(rows), plain, atol=1e-5)
    assert without_cache.sentences_encoded == 8  # 0 = every row encoded (the baseline of bench/embed.py)
    with pytest.raises(ConfigError, match="cache_size"):
        SentenceEncoder(str(tiny_bert), cache_size=-1)
