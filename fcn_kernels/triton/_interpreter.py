"""Running the kernels under Triton's interpreter (TRITON_INTERPRET=1) with the versions we support."""

import os

import torch


def fix_interpreter_for_numpy_2_4():
    """triton 3.6's interpreter turns scalar tensors into ints with int(ndarray of shape (1,)), which
    NumPy >= 2.4 rejects ("only 0-dimensional arrays can be converted to Python scalars"): every
    `range(...)` over a runtime scalar fails. triton-lang/triton#9171, fixed upstream by #9172 (squeeze
    first); until the pinned triton has it, apply the same one-line fix here."""
    if os.environ.get("TRITON_INTERPRET") != "1":
        return
    try:
        from triton.runtime import interpreter
    except ImportError:
        return
    original = getattr(interpreter, "_patch_lang_tensor", None)
    if original is None or getattr(original, "_fcn_fixed", False):
        return

    def patched(tensor, scope):
        original(tensor, scope)
        scope.set_attr(tensor, "__index__", lambda self: int(self.handle.data.reshape(-1)[0]))

    patched._fcn_fixed = True
    interpreter._patch_lang_tensor = patched


def wrap_triton(kernel):
    """torch.library.wrap_triton, except under the interpreter, where the kernel launches as is: what torch
    2.14 does itself, while torch 2.11 wraps an interpreted autotuner in a wrapper that fails to launch it
    outside a triton_op's body (AttributeError: 'function' object has no attribute 'fn')."""
    if os.environ.get("TRITON_INTERPRET") == "1":
        return kernel
    return torch.library.wrap_triton(kernel)
