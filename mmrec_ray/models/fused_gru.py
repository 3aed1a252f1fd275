"""A GRU recurrence over packed sequences with a hand-written backward, for the CPU.

Why: torch's packed GRU on the CPU runs every time step as separate autograd nodes — per step a GEMM for the
input, one for the hidden state, and in the backward four more plus a zero-fill and an accumulation of full
weight-sized gradients (one (3H, H) and one (3H, F) gradient per step). With this benchmark's short sequences
(T <= ~20, ~2.4 real events per PE on average) those per-step weight gradients dominate an epoch. Here:

* the input gates of all real steps are one GEMM outside the recurrence (``F.linear`` on the packed rows, so
  autograd computes the input weights' gradient in one GEMM too);
* the recurrence is one autograd node whose backward walks the steps with a single (bs, 3H) x (3H, H) GEMM
  each and computes the recurrent weights' gradient once, from all steps stacked.

The maths is torch's GRU (the ``nn.GRU`` documentation; eq. 3 of Bruun et al.), gates ordered (r, z, n):
    r = sigmoid(W_ir x + b_ir + W_hr h + b_hr)
    z = sigmoid(W_iz x + b_iz + W_hz h + b_hz)
    n = tanh(W_in x + b_in + r * (W_hn h + b_hn))
    h' = (1 - z) * n + z * h
and it reads ``nn.GRU``'s own parameters, so checkpoints do not depend on which path trained them.
On CUDA the caller keeps cuDNN's fused kernel, which is faster there.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable


class _GRURecurrence(torch.autograd.Function):
    """gates_input (N, 3H) packed input gates (time-major, as ``PackedSequence.data``), weight_hh (3H, H),
    bias_hh (3H,), batch_sizes: list of rows per step -> final state (B, H) in the packed (sorted) order.

    Packed rows are sorted by length, so the first ``batch_sizes[t]`` rows of step t - 1 are the states that
    step t continues: every state is read in place from the (N, H) buffer of all step outputs."""

    @staticmethod
    def forward(ctx, gates_input, weight_hh, bias_hh, batch_sizes):
        hidden_size = weight_hh.shape[1]
        rows = gates_input.shape[0]
        outputs = gates_input.new_empty((rows, hidden_size))  # h after each packed row's step
        gates_hidden = gates_input.new_empty((rows, 3 * hidden_size))  # W_h h + b_h per row
        reset_update = gates_input.new_empty((rows, 2 * hidden_size))  # (r, z)
        candidate = gates_input.new_empty((rows, hidden_size))  # n
        weight_hh_t = weight_hh.t()
        zeros = gates_input.new_zeros((batch_sizes[0], hidden_size))
        offsets = []
        offset, previous_offset = 0, None
        for size in batch_sizes:
            stop = offset + size
            offsets.append(offset)
            state_in = (
                zeros[:size] if previous_offset is None else outputs[previous_offset : previous_offset + size]
            )
            hidden = torch.addmm(bias_hh, state_in, weight_hh_t, out=gates_hidden[offset:stop])
            gates = gates_input[offset:stop]
            gate_block = torch.add(
                gates[:, : 2 * hidden_size], hidden[:, : 2 * hidden_size], out=reset_update[offset:stop]
            ).sigmoid_()
            reset = gate_block[:, :hidden_size]
            update = gate_block[:, hidden_size:]
            n = torch.addcmul(
                gates[:, 2 * hidden_size :], reset, hidden[:, 2 * hidden_size :], out=candidate[offset:stop]
            ).tanh_()
            torch.addcmul(n, update, state_in - n, out=outputs[offset:stop])  # (1 - z) n + z h
            previous_offset, offset = offset, stop
        # The final state of sorted sequence i is its output at step length_i - 1.
        last_row = _last_rows(batch_sizes, offsets, gates_input.device)
        ctx.batch_sizes = batch_sizes
        ctx.offsets = offsets
        ctx.save_for_backward(weight_hh, outputs, gates_hidden, reset_update, candidate, last_row)
        return outputs[last_row]

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_state):
        weight_hh, outputs, gates_hidden, reset_update, candidate, last_row = ctx.saved_tensors
        batch_sizes, offsets = ctx.batch_sizes, ctx.offsets
        hidden_size = weight_hh.shape[1]
        rows = outputs.shape[0]
        grad_outputs = outputs.new_zeros((rows, hidden_size))
        grad_outputs[last_row] = grad_state
        grad_gates_input = outputs.new_empty((rows, 3 * hidden_size))
        grad_gates_hidden = outputs.new_empty((rows, 3 * hidden_size))
        previous = outputs.new_zeros((rows, hidden_size))  # h entering each row's step (for dW_hh)
        for step in range(len(batch_sizes) - 1, -1, -1):
            size, offset = batch_sizes[step], offsets[step]
            stop = offset + size
            grad_out = grad_outputs[offset:stop]
            reset = reset_update[offset:stop, :hidden_size]
            update = reset_update[offset:stop, hidden_size:]
            n = candidate[offset:stop]
            if step > 0:
                state_in = outputs[offsets[step - 1] : offsets[step - 1] + size]
                previous[offset:stop] = state_in
            else:
                state_in = previous[offset:stop]  # zeros
            block_input = grad_gates_input[offset:stop]
            grad_pre_n = torch.mul(grad_out, 1 - update, out=block_input[:, 2 * hidden_size :])
            grad_pre_n.mul_(1 - n * n)
            grad_pre_z = torch.mul(grad_out, state_in - n, out=block_input[:, hidden_size : 2 * hidden_size])
            grad_pre_z.mul_(update * (1 - update))
            grad_pre_r = torch.mul(
                grad_pre_n, gates_hidden[offset:stop, 2 * hidden_size :], out=block_input[:, :hidden_size]
            )
            grad_pre_r.mul_(reset * (1 - reset))
            block_hidden = grad_gates_hidden[offset:stop]
            block_hidden[:, : 2 * hidden_size] = block_input[:, : 2 * hidden_size]
            torch.mul(grad_pre_n, reset, out=block_hidden[:, 2 * hidden_size :])
            if step > 0:
                grad_in = grad_outputs[offsets[step - 1] : offsets[step - 1] + size]
                grad_in.addcmul_(grad_out, update).addmm_(block_hidden, weight_hh)
        grad_weight_hh = grad_gates_hidden.t().mm(previous)
        grad_bias_hh = grad_gates_hidden.sum(0)
        return grad_gates_input, grad_weight_hh, grad_bias_hh, None


def _last_rows(batch_sizes: list[int], offsets: list[int], device) -> torch.Tensor:
    """(B,) packed row of each sorted sequence's last step: sequence i is active in steps where size > i."""
    sizes = torch.tensor(batch_sizes)
    lengths = (sizes.unsqueeze(0) > torch.arange(batch_sizes[0]).unsqueeze(1)).sum(1)  # (B,)
    return (torch.tensor(offsets)[lengths - 1] + torch.arange(batch_sizes[0])).to(device)


def gru_final_state(
    packed_inputs: torch.Tensor,
    batch_sizes: list[int],
    weight_ih: torch.Tensor,
    weight_hh: torch.Tensor,
    bias_ih: torch.Tensor,
    bias_hh: torch.Tensor,
) -> torch.Tensor:
    """Final GRU state of every packed sequence.

    packed_inputs (N, F): ``PackedSequence.data``; batch_sizes: its ``batch_sizes`` as a list (rows per step,
    non-increasing, first = B); weights/biases as ``nn.GRU``'s ``weight_ih_l0`` (3H, F), ``weight_hh_l0``
    (3H, H), ``bias_ih_l0``, ``bias_hh_l0`` (3H,). Returns (B, H) in the packed (length-sorted) order.
    """
    gates_input = F.linear(packed_inputs, weight_ih, bias_ih)  # (N, 3H): every real step in one GEMM
    return _GRURecurrence.apply(gates_input, weight_hh, bias_hh, list(batch_sizes))
