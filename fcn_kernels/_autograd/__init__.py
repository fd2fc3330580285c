"""The one autograd formula of each op family, registered on every backend's ops: imported by
fcn_kernels/ops/ (the C++ ops) and fcn_kernels/triton/ (the Triton ops), importing neither.

Op names (torch.library namespace fcn_kernels) follow one rule, so that a graph or a profile names the
same function the same way on every backend: an op is named for the function it computes,
`<op>` for the forward and `<op>_backward_input` / `<op>_backward_weight` for its backward pair. The C++
op carries the CPU and the CUDA kernels under that one name (the dispatcher picks by device, as for
torch's own ops); the Triton op is the same name with the suffix `_triton` (a triton_op is its own op):
  upsample_skip, upsample_skip_backward_input, upsample_skip_backward_weight              cpu, cuda
  upsample_skip_triton, upsample_skip_backward_input_triton, ..._backward_weight_triton   triton
  (rarefied_conv2d alike), and backward_bias_skip_triton, Triton's one-pass bias and skip gradients.

Both builders below save the same things on every backend: x only when the weight needs its gradient,
the weight only when x needs its gradient, sizes and geometry otherwise. So a weight that does not
require grad (FCN's fixed bilinear deconvolutions) costs no weight-gradient work and keeps no x alive.
"""

import torch
import torch.nn.functional as F

from ._double_backward import register_double_backward


def bias_skip_grads(grad, need_bias, skip_size, skip_offset, bias_skip=None):
    """(grad bias or None, grad skip or None) of y = ... + bias + skip window.

    grad bias is grad summed over (N, H, W); grad skip is grad placed into the skip's window at
    skip_offset, zeros elsewhere (skip_size None: no skip gradient). bias_skip(grad, skip_size or [],
    skip_offset, need_bias) -> [grad skip, grad bias], a backend's one-pass kernel of the same sums,
    serves first backward; double backward (grad itself differentiable) takes the stock ops.
    """
    if not need_bias and skip_size is None:
        return None, None
    if bias_skip is not None and not grad.requires_grad:
        gs, gb = bias_skip(grad, list(skip_size or []), list(skip_offset), need_bias)
        return (gb if need_bias else None), (gs if skip_size is not None else None)
    gb = grad.sum((0, 2, 3)) if need_bias else None
    gs = None
    if skip_size is not None:
        hs, ws = skip_size[2:]
        (ho, wo), (sy, sx) = grad.shape[2:], skip_offset
        gs = F.pad(grad, (sx, ws - sx - wo, sy, hs - sy - ho))
    return gb, gs


def _save(ctx, x, weight, geometry):
    ctx.save_for_backward(x if weight.requires_grad else None, weight if x.requires_grad else None)
    ctx.x_size, ctx.weight_size = list(x.shape), list(weight.shape)
    ctx.geometry = geometry


def _input_weight_grads(ctx, grad, backward_input, backward_weight):
    x, weight = ctx.saved_tensors
    gx = backward_input(grad, weight, ctx.x_size, *ctx.geometry) if ctx.needs_input_grad[0] else None
    gw = backward_weight(grad, x, ctx.weight_size, *ctx.geometry) if ctx.needs_input_grad[1] else None
    return gx, gw


def register_upsample_skip(forward, backward_input, backward_weight, bias_skip=None):
    """Autograd (and double backward) of one backend's upsample_skip ops: forward(x, weight, bias, skip,
    stride, groups, out_offset, out_size, skip_offset); backward_input(grad_out, weight, x_size, stride,
    groups, out_offset); backward_weight(grad_out, x, weight_size, stride, groups, out_offset);
    bias_skip: the backend's one-pass bias/skip reduction, if any (see bias_skip_grads)."""

    def setup(ctx, inputs, output):
        x, weight, bias, skip, stride, groups, out_offset, out_size, skip_offset = inputs
        _save(ctx, x, weight, (list(stride), groups, list(out_offset)))
        ctx.skip_offset = list(skip_offset)
        ctx.skip_size = list(skip.shape) if skip is not None else None

    def backward(ctx, grad):
        gx, gw = _input_weight_grads(ctx, grad, backward_input, backward_weight)
        gb, gs = bias_skip_grads(
            grad,
            ctx.needs_input_grad[2],
            ctx.skip_size if ctx.needs_input_grad[3] else None,
            ctx.skip_offset,
            bias_skip,
        )
        return gx, gw, gb, gs, None, None, None, None, None

    torch.library.register_autograd(forward, backward, setup_context=setup)
    register_double_backward(
        backward_input,
        backward_weight,
        lambda x, w, go, stride, groups, out_offset: forward(
            x, w, None, None, stride, groups, out_offset, list(go.shape[2:]), [0, 0]
        ),
    )


def register_rarefied_conv2d(forward, backward_input, backward_weight, bias_skip=None):
    """Autograd (and double backward) of one backend's rarefied_conv2d ops: forward(x, weight, bias,
    rarefaction, padding, groups); backward_input(grad_out, weight, x_size, rarefaction, padding, groups);
    backward_weight(grad_out, x, weight_size, rarefaction, padding, groups); bias_skip as above."""

    def setup(ctx, inputs, output):
        x, weight, bias, rarefaction, padding, groups = inputs
        _save(ctx, x, weight, (list(rarefaction), list(padding), groups))

    def backward(ctx, grad):
        gx, gw = _input_weight_grads(ctx, grad, backward_input, backward_weight)
        gb, _ = bias_skip_grads(grad, ctx.needs_input_grad[2], None, (0, 0), bias_skip)
        return gx, gw, gb, None, None, None

    torch.library.register_autograd(forward, backward, setup_context=setup)
    register_double_backward(
        backward_input,
        backward_weight,
        lambda x, w, go, rarefaction, padding, groups: forward(x, w, None, rarefaction, padding, groups),
    )
