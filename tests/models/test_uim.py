"""UiM's own behaviour: capsule routing, the enriched profile's time discipline, the simulators and the
re-ranking. The registry contract is covered by test_models.py for ``uim``, its ablations and
``uim_learned_feedback`` (and ``uim_llm_feedback`` when MMREC_UIM_JUDGE names a judge)."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import torch

from mmrec_ray.config import TrainingConfig
from mmrec_ray.data.features import FeatureStore
from mmrec_ray.models import registry
from mmrec_ray.models._capsules import (
    CapsuleRouting,
    active_interests,
    interest_count,
    label_aware_scores,
    max_interest_scores,
    squash,
)
from mmrec_ray.models._user_profile import earlier_purchases, profile_features, profile_width
from mmrec_ray.models.uim import UimNetwork
from mmrec_ray.models.uim_simulators import (
    CANDIDATES,
    JUDGE_ENVIRONMENT,
    Catalogue,
    LlmJudge,
    PromptWriter,
    rerank,
    top_candidates,
)
from mmrec_ray.training.runner import fit_models
from tests.models.conftest import NUM_ITEMS, make_prepared, small_params

TRAINING = TrainingConfig(max_epochs=3, patience=3, device="cpu", num_threads=1)


def params(**changes):
    return {
        n: dataclasses.replace(small_params(n), **changes) for n in registry.names(include_components=True)
    }


def with_returning_users(data, group: int = 3):
    """Consecutive PEs (by id) share a user, ``group`` at a time, so users have earlier PEs and some test PEs
    have earlier test PEs."""
    return dataclasses.replace(data, user_id=(np.arange(data.num_pes) // group).astype(np.int64) + 1)


@pytest.fixture(scope="module")
def users_data():
    return with_returning_users(make_prepared())


# ------------------------------------------------------------------------------------------------ routing
def test_squash_keeps_the_direction_and_a_norm_below_one():
    h = torch.randn(50, 8) * torch.logspace(-3, 3, 50)[:, None]
    s = squash(h)
    norms = s.norm(dim=-1)
    assert (norms < 1).all()
    expected = h.norm(dim=-1) ** 2 / (1 + h.norm(dim=-1) ** 2)
    torch.testing.assert_close(norms, expected, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(torch.nn.functional.cosine_similarity(s, h, dim=-1), torch.ones(50))
    zero = torch.zeros(1, 8, requires_grad=True)
    squash(zero).sum().backward()
    assert torch.isfinite(zero.grad).all() and squash(zero.detach()).abs().max() == 0


def test_interest_count_follows_the_mind_rule():
    n = torch.arange(0, 40)
    for cap in (1, 3, 5):
        expected = [max(1, min(cap, math.floor(math.log2(k)))) if k > 0 else 1 for k in n.tolist()]
        assert interest_count(n, cap).tolist() == expected
    assert active_interests(torch.tensor([1, 4, 9, 10]), 3).sum(dim=1).tolist() == [1, 2, 3, 3]


def test_coupling_sums_to_one_over_the_active_interests_of_every_event():
    torch.manual_seed(0)
    routing = CapsuleRouting(width=8, max_interests=3)
    events = torch.randn(4, 10, 8)
    lengths = torch.tensor([10, 4, 1, 7])
    active = active_interests(lengths, 3)
    weights = (torch.arange(10)[None, :] < lengths[:, None]).float() * torch.rand(4, 10)
    interests, coupling = routing(events, weights, active)
    torch.testing.assert_close(coupling.sum(dim=-1), torch.ones(4, 10))
    assert (coupling.masked_select(~active[:, None, :].expand_as(coupling)) == 0).all()
    assert (interests.norm(dim=-1) < 1).all()
    assert (interests[~active] == 0).all() and (interests[active].norm(dim=-1) > 0).all()
    # a PE with K_u = 1 routes every event to its one interest
    assert (coupling[2, :, 0] == 1).all()


def test_routing_ignores_padded_events():
    torch.manual_seed(0)
    routing = CapsuleRouting(width=8, max_interests=3)
    events = torch.randn(1, 6, 8)
    weights = torch.tensor([[1.0, 0.5, 0.8, 1.0, 0.0, 0.0]])
    active = active_interests(torch.tensor([4]), 3)
    padded = events.clone()
    padded[:, 4:] = 100.0
    torch.testing.assert_close(routing(padded, weights, active)[0], routing(events, weights, active)[0])


def test_label_aware_attention_lies_below_the_max_and_reaches_it_as_the_power_grows():
    scores = torch.randn(5, 3, 7)
    active = torch.tensor([[1, 1, 1], [1, 0, 0], [1, 1, 0], [1, 1, 1], [1, 0, 0]], dtype=torch.bool)
    best = max_interest_scores(scores, active)
    assert (label_aware_scores(scores, active) <= best + 1e-6).all()
    torch.testing.assert_close(label_aware_scores(scores, active, power=1e4), best)
    torch.testing.assert_close(max_interest_scores(scores, active)[1], scores[1, 0])  # one active interest


def test_network_variants_and_shapes(users_data):
    store = FeatureStore(users_data, "cpu")
    batch = store.batch(np.arange(16))
    profile = torch.from_numpy(profile_features(users_data)[:16])
    args = (batch.is_conversation, batch.event_conversation, batch.event_session, batch.lengths)
    for use_profile, k in ((True, 3), (False, 3), (True, 1)):
        torch.manual_seed(0)
        net = UimNetwork(store.embedding_dim, store.vocab_size, profile_width(NUM_ITEMS), 8, NUM_ITEMS, 0.0,
                         use_profile=use_profile, max_interests=k)  # fmt: skip
        parts = net.interests(*args, profile if use_profile else None)
        assert parts["interests"].shape == (16, k, 8) and parts["coupling"].shape[-1] == k
        assert torch.equal(parts["active"], active_interests(batch.lengths, k))
        assert hasattr(net, "profile") == use_profile
        real = batch.step_mask
        if use_profile:  # profile-guided attention: a weight in (0, 1) per real event, 0 at padding
            assert ((parts["weights"][real] > 0) & (parts["weights"][real] < 1)).all()
        else:
            assert (parts["weights"][real] == 1).all()
        assert (parts["weights"][~real] == 0).all()
        scores, active = net(*args, profile if use_profile else None)
        assert scores.shape == (16, k, NUM_ITEMS)


# ------------------------------------------------------------------------------------------------ profile
def test_earlier_purchases_by_hand():
    data = make_prepared(num_pes=20)
    data = dataclasses.replace(
        data,
        user_id=np.array([1, 2, 1, 1, 2] + [9] * 15, dtype=np.int64),
        targets=np.eye(NUM_ITEMS, dtype=np.uint8)[np.arange(20) % NUM_ITEMS],
        is_test=np.arange(20) >= 18,
    )
    bought, count = earlier_purchases(data)
    # user 1: PEs 0, 2, 3 bought items 0, 2, 3
    assert bought[0].tolist() == [False] * 5 and count[0] == 0
    assert np.flatnonzero(bought[2]).tolist() == [0] and count[2] == 1
    assert np.flatnonzero(bought[3]).tolist() == [0, 2] and count[3] == 2
    assert np.flatnonzero(bought[4]).tolist() == [1] and count[4] == 1  # user 2: PE 1 bought item 1
    # user 9, PE 19 (test): earlier training PEs 5..17 count, the earlier test PE 18 does not
    assert count[19] == 13 and count[18] == 13


def test_profile_reads_nothing_of_the_pe_itself_later_pes_or_test_labels(users_data):
    reference = profile_features(users_data)
    rng = np.random.default_rng(0)
    ids = users_data.purchase_event_id
    for pe in rng.choice(users_data.num_pes, 30, replace=False):
        scrambled = users_data.targets.copy()
        hidden = (ids >= ids[pe]) | users_data.is_test  # the PE itself, every later PE, every test PE
        scrambled[hidden] = rng.integers(0, 2, scrambled[hidden].shape, dtype=np.uint8)
        changed = profile_features(dataclasses.replace(users_data, targets=scrambled))
        np.testing.assert_array_equal(changed[pe], reference[pe], err_msg=f"PE {pe}")


def test_profile_reads_the_earlier_training_pes_of_the_same_user(users_data):
    """The control of the test above: changing an earlier training PE's labels does change the profile."""
    pe = next(
        p for p in range(2, users_data.num_pes)
        if users_data.user_id[p - 1] == users_data.user_id[p] and not users_data.is_test[p - 1]
    )  # fmt: skip
    changed = users_data.targets.copy()
    changed[pe - 1] = 1 - changed[pe - 1]
    before = profile_features(users_data)
    after = profile_features(dataclasses.replace(users_data, targets=changed))
    assert not np.array_equal(before[pe], after[pe])
    assert before[pe, NUM_ITEMS] == 1  # has an earlier PE


def test_profile_ignores_the_post_filter_and_padding(users_data):
    from tests.models.conftest import with_extra_padding

    filtered = dataclasses.replace(users_data, post_filter=~users_data.post_filter)
    np.testing.assert_array_equal(profile_features(filtered), profile_features(users_data))
    np.testing.assert_array_equal(
        profile_features(with_extra_padding(users_data, 4)), profile_features(users_data)
    )


def test_uim_test_predictions_do_not_move_when_test_labels_change(users_data):
    fitted = fit_models(users_data, ["uim"], [0], params(), TRAINING, device="cpu")
    model, _ = fitted[("uim", 0)]
    test = users_data.test_indices()
    scrambled = users_data.targets.copy()
    scrambled[test] = 1 - scrambled[test]
    before = model.predict(FeatureStore(users_data, "cpu"), test)
    after = model.predict(FeatureStore(dataclasses.replace(users_data, targets=scrambled), "cpu"), test)
    np.testing.assert_array_equal(after, before)


# ------------------------------------------------------------------------------------------------ re-ranking
def test_rerank_permutes_the_top_values_by_the_blend():
    scores = np.array([[0.9, 0.8, 0.7, 0.1, 0.05], [0.9, 0.8, 0.7, 0.1, 0.05]], dtype=np.float32)
    candidates = top_candidates(scores, 3)
    assert candidates.tolist() == [[0, 1, 2], [0, 1, 2]]
    acceptance = np.array([[0.0, 0.1, 1.0], [0.3, 1.0, 0.2]], dtype=np.float32)
    out = rerank(scores, candidates, acceptance)
    # row 0: r_p = (0, 1, 2), r_q = (2, 1, 0): z = (1, 1, 1), all tied -> the recommender's order stays
    np.testing.assert_array_equal(out[0], scores[0])
    # row 1: r_q = (1, 0, 2): z = (0.5, 0.5, 2) -> tie between items 0 and 1 kept in the recommender's order
    np.testing.assert_array_equal(out[1], scores[1])
    strong = np.array([[0.0, 0.0, 1.0]], dtype=np.float32)  # r_q = (1, 2, 0): z = (0.5, 1.5, 1.0)
    moved = rerank(scores[:1], candidates[:1], strong)
    np.testing.assert_array_equal(moved[0], scores[0, [0, 2, 1, 3, 4]])
    nan_row = np.full((1, 5), np.nan, dtype=np.float32)
    assert np.isnan(rerank(nan_row, candidates[:1], strong)).all()


# ------------------------------------------------------------------------------------------------ learned simulator
def test_learned_simulator_trains_and_changes_the_ranking(users_data):
    names = ["uim", "uim_learned_feedback"]
    fitted = fit_models(users_data, names, [0], params(units=16), TRAINING, device="cpu")
    uim, _ = fitted[("uim", 0)]
    feedback, result = fitted[("uim_learned_feedback", 0)]
    assert feedback.recommender is uim
    history = result.history["simulator"]
    assert history and history[-1]["train"] < history[0]["train"]

    store = FeatureStore(users_data, "cpu")
    everyone = np.arange(users_data.num_pes)
    base, reranked = uim.predict(store, everyone), feedback.predict(store, everyone)
    count = min(CANDIDATES, NUM_ITEMS)
    top = top_candidates(base, count)
    np.testing.assert_array_equal(np.sort(reranked, axis=1), np.sort(base, axis=1))  # same values, permuted
    outside = np.ones_like(base, dtype=bool)
    np.put_along_axis(outside, top, False, axis=1)
    np.testing.assert_array_equal(reranked[outside], base[outside])
    changed = (np.argsort(-reranked, axis=1, kind="stable") != np.argsort(-base, axis=1, kind="stable")).any(
        1
    )
    assert changed.any(), "the simulator's feedback changed no ranking"


# ------------------------------------------------------------------------------------------------ LLM judge
WORDS = (
    "[UNK] [PAD] <eos> yes no you are simulating a customer of an insurance company the has bought before "
    "no earlier purchases on record recent contacts oldest first phone call web visit now recommends would "
    "accept this recommendation answer item"
).split()
ITEM_WORDS = (
    "car",
    "house",
    "glass",
    "travel",
    "pet",
)  # one word per item of make_prepared: distinct prompts


def tiny_causal_lm(folder, seed: int = 0):
    """A random one-layer GPT-2 and a word-level tokenizer, saved as a Hugging Face folder (no download)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    vocabulary = {w: i for i, w in enumerate(dict.fromkeys([*WORDS, *ITEM_WORDS]))}
    tokenizer = Tokenizer(models.WordLevel(vocabulary, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, unk_token="[UNK]", pad_token="[PAD]", eos_token="<eos>"
    ).save_pretrained(folder)
    torch.manual_seed(seed)
    config = GPT2Config(vocab_size=len(vocabulary), n_positions=512, n_embd=16, n_layer=1, n_head=2,
                        bos_token_id=2, eos_token_id=2)  # fmt: skip
    GPT2LMHeadModel(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def judge_folder(tmp_path_factory):
    return tiny_causal_lm(tmp_path_factory.mktemp("judge"))


@pytest.fixture(scope="module")
def named_data(users_data, tmp_path_factory):
    """users_data whose source folder holds generator-style item and tag names."""
    folder = tmp_path_factory.mktemp("source")
    items = {str(i): {"name": word} for i, word in zip(users_data.item_ids, ITEM_WORDS)}
    tags = {f"object:item{users_data.item_ids[0]}": int(users_data.vocabulary[0])}
    (folder / "generation_info.json").write_text(json.dumps({"items": items, "tags": tags}))
    return dataclasses.replace(users_data, meta={**users_data.meta, "source": str(folder)})


def test_prompt_uses_names_earlier_purchases_and_events(named_data):
    writer = PromptWriter(named_data, Catalogue.from_data(named_data))
    pe = int(np.flatnonzero(earlier_purchases(named_data)[1] > 0)[0])
    history = writer.history(pe)
    owned = named_data.item_ids[earlier_purchases(named_data)[0][pe]]
    assert owned.size and all(f"{ITEM_WORDS[i - named_data.item_ids[0]]}" in history for i in owned)
    assert history.count("phone call") + history.count("web visit") == min(named_data.n_events[pe], 5)
    assert writer.prompt(history, 2).endswith(f"recommends: {ITEM_WORDS[2]}. "
                                              "Would the customer accept this recommendation? Answer:")  # fmt: skip
    assert Catalogue.from_data(named_data).tag(int(named_data.vocabulary[0])) == ITEM_WORDS[0]
    bare = Catalogue.from_data(make_prepared(num_pes=10))
    assert bare.item(7) == "item 7" and bare.tag(41) == "tag 41" and not bare.conversation_text


def test_llm_judge_scores_candidates_from_token_likelihoods(judge_folder, named_data):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    judge = LlmJudge(judge_folder)
    store = FeatureStore(named_data, "cpu")
    indices = np.array([0, 5, 17, 150])
    candidates = np.array([[0, 1, 2], [4, 3, 2], [1, 0, 4], [2, 2, 3]])
    accept = judge.acceptance(store, indices, candidates)
    assert accept.shape == (4, 3) and ((accept > 0) & (accept < 1)).all()
    np.testing.assert_array_equal(judge.acceptance(store, indices, candidates), accept)
    assert accept[3, 0] == accept[3, 1]  # the same PE and item: the same prompt
    assert len(np.unique(accept)) > 3  # prompts differ, so do the scores

    # The batched, padded likelihood equals a direct one-sequence computation.
    tokenizer = AutoTokenizer.from_pretrained(judge_folder)
    model = AutoModelForCausalLM.from_pretrained(judge_folder).eval()
    writer = judge.writer(named_data)
    prompts = [writer.prompt(writer.history(int(pe)), int(c[0])) for pe, c in zip(indices, candidates)]
    for answer in (" yes", " no"):
        batched = judge.answer_log_likelihood(prompts, answer)
        for prompt, value in zip(prompts, batched):
            ids = tokenizer(prompt)["input_ids"] + tokenizer(answer, add_special_tokens=False)["input_ids"]
            with torch.no_grad():
                log_probs = torch.log_softmax(model(torch.tensor([ids])).logits[0, :-1], dim=-1)
            expected = log_probs[len(ids) - 2, ids[-1]].item()  # one answer token here
            assert value == pytest.approx(expected, abs=1e-4)

    other = LlmJudge(tiny_causal_lm(judge_folder.parent / "other", seed=1))
    assert not np.allclose(other.acceptance(store, indices, candidates), accept)


def test_llm_feedback_model_reranks_uim_with_the_judge(judge_folder, named_data, monkeypatch):
    from mmrec_ray.models.uim_simulators import UimLlmFeedbackRecommender

    fitted = fit_models(named_data, ["uim"], [0], params(), TRAINING, device="cpu")
    uim, _ = fitted[("uim", 0)]
    store = FeatureStore(named_data, "cpu")
    test = named_data.test_indices()

    monkeypatch.setenv(JUDGE_ENVIRONMENT, str(judge_folder))
    model = UimLlmFeedbackRecommender(small_params("uim_llm_feedback"), TRAINING, 0)
    result = model.fit(store, {"uim": uim})
    assert result.extra["judge"] == str(judge_folder)
    base, reranked = uim.predict(store, test), model.predict(store, test)
    np.testing.assert_array_equal(np.sort(reranked, axis=1), np.sort(base, axis=1))
    assert (np.argsort(-reranked, axis=1) != np.argsort(-base, axis=1)).any()

    state = model.state_dict()
    assert set(state) == {"recommender", "judge"} and state["judge"] == str(judge_folder)
    restored = UimLlmFeedbackRecommender(small_params("uim_llm_feedback"), TRAINING, 0)
    restored.load_state_dict(state, store)
    np.testing.assert_array_equal(restored.predict(store, test), reranked)

    monkeypatch.delenv(JUDGE_ENVIRONMENT)
    unjudged = UimLlmFeedbackRecommender(small_params("uim_llm_feedback"), TRAINING, 0)
    with pytest.warns(UserWarning, match=JUDGE_ENVIRONMENT):
        assert unjudged.fit(store, {"uim": uim}).extra["judge"] is None
    np.testing.assert_array_equal(unjudged.predict(store, test), base)


# ------------------------------------------------------------------------------------------------ names
def test_tables_show_the_registered_display_names():
    from mmrec_ray.evaluation.tables import display_name

    assert display_name("transformer") == "Transformer"
    assert display_name("uim") == "UiM" and display_name("uim_no_profile") == "UiM w/o profile"
    assert display_name("latent_feature") == "Latent Feature"  # the paper's names still come from the table
    assert display_name("someone_elses_model") == "someone_elses_model"
    for name in ("uim", "uim_no_profile", "uim_single_interest", "uim_learned_feedback"):
        assert name in registry.names()
