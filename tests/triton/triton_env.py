"""Where the Triton tests run (imported by conftest.py and the tests; a module of its own because the
name "conftest" is taken twice in tests/)."""
import os

import torch

INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
RUNNABLE = DEVICE == "cuda" or INTERPRET
