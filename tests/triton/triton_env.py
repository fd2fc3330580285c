"""Where the Triton tests run (imported by conftest.py and the tests; a module of its own because the
name "conftest" is taken twice in tests/)."""
import os

import torch

INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
RUNNABLE = DEVICE == "cuda" or INTERPRET


def _fix_interpreter_for_numpy_2_4():
    """triton 3.6's interpreter turns scalar tensors into ints with int(ndarray of shape (1,)), which
    NumPy >= 2.4 rejects ("only 0-dimensional arrays can be converted to Python scalars"): every
    `range(...)` over a runtime scalar fails. triton-lang/triton#9171, fixed upstream by #9172 (squeeze
    first); until the pinned triton has it, apply the same one-line fix here."""
    if not INTERPRET:
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


_fix_interpreter_for_numpy_2_4()
