"""Benchmarks: `pytest benchmarks` (FCN_BENCH_FULL=1 for the issue's full shapes; otherwise small
shapes, which CI runs once with --benchmark-disable as a smoke test). Compare side by side with
`--benchmark-group-by=group` (the default here)."""
import os

import pytest
import torch

FULL = os.environ.get("FCN_BENCH_FULL") == "1"
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture
def sync():
    return torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
