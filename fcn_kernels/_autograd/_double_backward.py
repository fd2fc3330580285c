"""Double backward for the ops' explicit backward pairs.

Every op here is y = J(w) x with J linear in w, so its two backward ops are bilinear:
grad_x = backward_input(g, w) = J(w)^T g and grad_w = backward_weight(g, x). Hence each backward
op's own gradients are the forward (without bias or skip) and the other backward op:
  d/dg <gg, backward_input(g, w)>  = forward(gg, w),    d/dw = backward_weight(g, gg)
  d/dg <gg, backward_weight(g, x)> = forward(x, gg),    d/dx = backward_input(g, gg)
"""

import torch


def register_double_backward(backward_input, backward_weight, forward):
    """backward_input(grad_out, weight, x_size, *geometry) and backward_weight(grad_out, x, w_size,
    *geometry) are registered ops (OpOverload or custom-op object); forward(x, weight, grad_out,
    *geometry) computes the op without bias or skip, shaped like grad_out."""

    def setup(ctx, inputs, output):
        grad_out, other, _size, *geometry = inputs
        ctx.save_for_backward(grad_out, other)
        ctx.geometry = geometry

    def of_backward_input(ctx, gg):  # inputs: (grad_out, weight, x_size, *geometry)
        grad_out, weight = ctx.saved_tensors
        d_go = forward(gg, weight, grad_out, *ctx.geometry) if ctx.needs_input_grad[0] else None
        d_w = backward_weight(grad_out, gg, list(weight.shape), *ctx.geometry) if ctx.needs_input_grad[1] else None
        return (d_go, d_w, None) + (None,) * len(ctx.geometry)

    def of_backward_weight(ctx, gg):  # inputs: (grad_out, x, w_size, *geometry)
        grad_out, x = ctx.saved_tensors
        d_go = forward(x, gg, grad_out, *ctx.geometry) if ctx.needs_input_grad[0] else None
        d_x = backward_input(grad_out, gg, list(x.shape), *ctx.geometry) if ctx.needs_input_grad[1] else None
        return (d_go, d_x, None) + (None,) * len(ctx.geometry)

    torch.library.register_autograd(backward_input, of_backward_input, setup_context=setup)
    torch.library.register_autograd(backward_weight, of_backward_weight, setup_context=setup)
