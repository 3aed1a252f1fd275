import pytest
import torch

from mmrec_ray.models.layers import JointNetwork, MaskedGRU, OutputHead, SequenceClassifier, TanhProjection


def test_masked_gru_returns_the_state_after_the_last_real_step():
    torch.manual_seed(0)
    layer = MaskedGRU(3, 5)
    inputs = torch.randn(4, 6, 3)
    lengths = torch.tensor([6, 2, 1, 4])
    out = layer(inputs, lengths)
    for i, length in enumerate(lengths.tolist()):
        _, alone = layer.gru(inputs[i : i + 1, :length])
        torch.testing.assert_close(out[i], alone[0, 0])


def test_masked_gru_ignores_padded_values_and_extra_steps():
    torch.manual_seed(0)
    layer = MaskedGRU(3, 5)
    inputs = torch.randn(3, 4, 3)
    lengths = torch.tensor([2, 4, 1])
    garbage = inputs.clone()
    garbage[0, 2:] = 100.0
    garbage[2, 1:] = -7.0
    longer = torch.cat([inputs, torch.randn(3, 5, 3)], dim=1)
    reference = layer(inputs, lengths)
    torch.testing.assert_close(layer(garbage, lengths), reference)
    torch.testing.assert_close(layer(longer, lengths), reference)


def test_masked_gru_empty_sequences_get_the_zero_state_and_gradients_stay_finite():
    torch.manual_seed(0)
    layer = MaskedGRU(3, 5)
    inputs = torch.randn(3, 4, 3, requires_grad=True)
    out = layer(inputs, torch.tensor([0, 3, 0]))
    assert torch.equal(out[0], torch.zeros(5)) and torch.equal(out[2], torch.zeros(5))
    assert out[1].abs().sum() > 0
    out.sum().backward()
    assert torch.isfinite(inputs.grad).all()
    assert torch.equal(inputs.grad[0], torch.zeros(4, 3))
    assert torch.equal(layer(inputs, torch.zeros(3, dtype=torch.long)), torch.zeros(3, 5))
    assert layer(inputs[:0], torch.zeros(0, dtype=torch.long)).shape == (0, 5)


def test_shapes_of_the_heads_and_joint_network():
    assert OutputHead(6, 4, 7, 0.2)(torch.randn(2, 6)).shape == (2, 7)
    assert SequenceClassifier(3, 4, 7, 0.2)(torch.randn(2, 5, 3), torch.tensor([5, 1])).shape == (2, 7)
    projection = TanhProjection(3, 4)(torch.randn(2, 5, 3) * 100)
    assert projection.shape == (2, 5, 4) and projection.abs().max() <= 1
    joint = JointNetwork(6, 3, 4, 7, 0.2)
    assert joint(torch.randn(2, 6), torch.randn(2, 5, 3), torch.tensor([0, 2])).shape == (2, 7)


def test_unknown_activation():
    from mmrec_ray.models.layers import DenseEncoder

    with pytest.raises(ValueError, match="activation"):
        DenseEncoder(2, 2, "sigmoid")
