import pytest
import torch

from mmrec_ray.models.fused_gru import _GRURecurrence, gru_final_state
from mmrec_ray.models.layers import MaskedGRU, force_gru_implementation


@pytest.mark.parametrize("batch_sizes", [[4, 3, 2], [1], [5, 5, 5, 1]])
def test_recurrence_backward_matches_finite_differences(batch_sizes):
    torch.manual_seed(0)
    rows, hidden = sum(batch_sizes), 3
    gates = torch.randn(rows, 3 * hidden, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(3 * hidden, hidden, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(3 * hidden, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda g, w, b: _GRURecurrence.apply(g, w, b, batch_sizes), (gates, weight, bias)
    )


def _run(layer, inputs, lengths, implementation):
    layer.zero_grad()
    inputs = inputs.detach().clone().requires_grad_(True)
    with force_gru_implementation(implementation):
        out = layer(inputs, lengths)
    # weight every output differently so a permuted or misplaced row changes the gradients
    (out * torch.linspace(-1, 2, out.numel(), dtype=out.dtype).reshape(out.shape)).sum().backward()
    return out.detach(), inputs.grad, {n: p.grad.clone() for n, p in layer.named_parameters()}


@pytest.mark.parametrize("lengths", [[4, 1, 0, 3, 2, 4], [1, 1, 1], [6, 2, 6, 5]])
def test_fused_path_equals_torch_gru_forward_and_backward(lengths):
    torch.manual_seed(1)
    layer = MaskedGRU(7, 5).double()
    inputs = torch.randn(len(lengths), 6, 7, dtype=torch.float64)
    lengths = torch.tensor(lengths)
    fused = _run(layer, inputs, lengths, "auto")
    reference = _run(layer, inputs, lengths, "torch")
    torch.testing.assert_close(fused[0], reference[0])
    torch.testing.assert_close(fused[1], reference[1])
    for name in reference[2]:
        torch.testing.assert_close(fused[2][name], reference[2][name], msg=name)


def test_fused_path_reads_the_nn_gru_parameters():
    torch.manual_seed(2)
    layer = MaskedGRU(3, 4)
    inputs, lengths = torch.randn(2, 3, 3), torch.tensor([3, 2])
    before = layer(inputs, lengths)
    with torch.no_grad():
        layer.gru.weight_hh_l0.mul_(0.5)
    assert not torch.allclose(layer(inputs, lengths), before)


def test_gru_final_state_is_in_packed_order():
    torch.manual_seed(3)
    gru = torch.nn.GRU(2, 3, batch_first=True)
    sequences = torch.randn(3, 4, 2)
    packed = torch.nn.utils.rnn.pack_padded_sequence(sequences, torch.tensor([4, 2, 1]), batch_first=True)
    final = gru_final_state(
        packed.data,
        packed.batch_sizes.tolist(),
        gru.weight_ih_l0,
        gru.weight_hh_l0,
        gru.bias_ih_l0,
        gru.bias_hh_l0,
    )
    _, expected = gru(packed)
    torch.testing.assert_close(final, expected[0])
