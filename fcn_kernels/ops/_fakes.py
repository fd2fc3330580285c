"""The fake kernels (output shapes only, for FakeTensor and torch.compile) that the C++ op families share."""

import torch


def register_backward_fakes(op):
    """Registers the fakes of `op`'s backward pair, <op>_backward_input(grad_out, weight, input_size, *geometry)
    and <op>_backward_weight(grad_out, x, weight_size, *geometry): each result has the size it is given.
    Returns (op, its backward_input, its backward_weight), the overloads its autograd registration takes."""

    @torch.library.register_fake(f"fcn_kernels::{op}_backward_input")
    def _fake_bwd_input(grad_out, weight, input_size, *geometry):
        return grad_out.new_empty(input_size)

    @torch.library.register_fake(f"fcn_kernels::{op}_backward_weight")
    def _fake_bwd_weight(grad_out, x, weight_size, *geometry):
        return grad_out.new_empty(weight_size)

    ops = torch.ops.fcn_kernels
    return tuple(getattr(ops, name).default for name in (op, f"{op}_backward_input", f"{op}_backward_weight"))
