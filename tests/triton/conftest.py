"""Tests of the Triton kernels beyond the op suites (whose `triton` parameters run the shared conformance
tests): launch guards, the autotune switch, weight-gradient splits, property tests, full-size shapes. They run
on CUDA tensors when a GPU is present, else on CPU tensors through Triton's interpreter, which needs
TRITON_INTERPRET=1 in the environment before triton is first imported -- hence a separate pytest process,
selecting every Triton test (here and the suites' `triton` parameters) by marker:

    TRITON_INTERPRET=1 python -m pytest -q -m triton tests

In the main pytest run (no variable, no GPU) every test here is skipped. Interpreter launches are slow:
keep shapes tiny (a few channels, maps under ~12x12).
"""

import os

import pytest


def pytest_collection_modifyitems(config, items):
    here = os.path.dirname(__file__)
    for item in items:
        if str(item.fspath).startswith(here):
            item.add_marker(pytest.mark.triton)
