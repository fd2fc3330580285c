"""Where the Triton kernels run: on CUDA tensors with a GPU, else on CPU tensors under Triton's interpreter,
which needs TRITON_INTERPRET=1 in the environment before triton is first imported (a pytest process of its
own: `TRITON_INTERPRET=1 python -m pytest -m triton tests`)."""

import os

import torch

INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
RUNNABLE = DEVICE == "cuda" or INTERPRET
NOT_RUNNABLE = (
    "Triton kernels need a CUDA GPU or TRITON_INTERPRET=1 (run: TRITON_INTERPRET=1 python -m pytest -m triton tests)"
)
