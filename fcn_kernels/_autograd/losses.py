"""The one autograd of the fused losses' statistics ops (docs/DESIGN.md §2.5, §2.6), registered on every
backend's ops (the C++ ops in fcn_kernels/ops/; the Triton ops' when they exist), importing neither.

A fused loss is a statistics op and a few cheap (N, H, W) tensor ops (fcn_kernels.losses.weigh_and_reduce):
  upsample_logsumexp(x, weight, bias, skip, target, ...) -> (lse, picked)
  interpolate_logsumexp(x, target, align_corners, ignore_index) -> (lse, picked)
lse is the log-sum-exp of the scores over the classes at each pixel, picked the target class's score. Its
backward op, one for every input (named `<op>_backward`), takes the gradients a of lse and b of picked and
recomputes the scores: the score gradient a * softmax + b * onehot(target) goes straight through the
upsampling's adjoint, never stored. The forward saves its inputs (x, weight, bias, skip, target) and lse,
one (N, H, W) map: no tensor of the scores' size. The backward op computes only the gradients asked for,
so a weight that does not require grad (FCN's fixed bilinear upsampling) costs no weight-gradient work.
Differentiable once (the backward op has no autograd of its own).
"""

import torch

_INPUTS = 4  # x, weight, bias, skip: the differentiable inputs, first in both ops' schemas


def register_upsample_logsumexp(forward, backward):
    """Autograd of one backend's upsample_logsumexp: forward(x, weight, bias, skip, target, stride, groups,
    out_offset, skip_offset, ignore_index) -> (lse, picked); backward(grad_lse, grad_picked, x, weight, bias,
    skip, target, lse, stride, groups, out_offset, skip_offset, ignore_index, output_mask) -> (grad_x,
    grad_weight, grad_bias, grad_skip), empty where output_mask is False."""

    def setup(ctx, inputs, output):
        x, weight, bias, skip, target, stride, groups, out_offset, skip_offset, ignore_index = inputs
        ctx.save_for_backward(x, weight, bias, skip, target, output[0])
        ctx.arguments = (list(stride), groups, list(out_offset), list(skip_offset), ignore_index)

    def grads(ctx, grad_lse, grad_picked):
        x, weight, bias, skip, target, lse = ctx.saved_tensors
        mask = [bool(ctx.needs_input_grad[k]) for k in range(_INPUTS)]
        result = [None] * (_INPUTS + 6)
        if any(mask):
            grad_lse = torch.zeros_like(lse) if grad_lse is None else grad_lse
            grad_picked = torch.zeros_like(lse) if grad_picked is None else grad_picked
            out = backward(grad_lse, grad_picked, x, weight, bias, skip, target, lse, *ctx.arguments, mask)
            result[:_INPUTS] = [g if m else None for g, m in zip(out, mask)]
        return tuple(result)

    torch.library.register_autograd(forward, grads, setup_context=setup)


def register_interpolate_logsumexp(forward, backward):
    """Autograd of one backend's interpolate_logsumexp: forward(x, target, align_corners, ignore_index) ->
    (lse, picked); backward(grad_lse, grad_picked, x, target, lse, align_corners, ignore_index) -> grad_x."""

    def setup(ctx, inputs, output):
        x, target, align_corners, ignore_index = inputs
        ctx.save_for_backward(x, target, output[0])
        ctx.arguments = (align_corners, ignore_index)

    def grads(ctx, grad_lse, grad_picked):
        x, target, lse = ctx.saved_tensors
        if not ctx.needs_input_grad[0]:
            return None, None, None, None
        grad_lse = torch.zeros_like(lse) if grad_lse is None else grad_lse
        grad_picked = torch.zeros_like(lse) if grad_picked is None else grad_picked
        return backward(grad_lse, grad_picked, x, target, lse, *ctx.arguments), None, None, None

    torch.library.register_autograd(forward, grads, setup_context=setup)
