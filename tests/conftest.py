import os
import random

import pytest
import torch
from hypothesis import HealthCheck, settings

# The helpers' asserts get pytest's introspection too (their comparisons are most of the checks).
pytest.register_assert_rewrite("_helpers")

# Property-based tests (tests/_helpers/property_cases.py). "ci": the default, a few hundred examples in all,
# fresh ones every run (a failure prints its @reproduce_failure blob and the falsifying example);
# "long": `pytest --hypothesis-profile long tests/test_property.py` for a long local search.
_SLOW_OK = [HealthCheck.too_slow, HealthCheck.data_too_large]
settings.register_profile("ci", max_examples=60, deadline=None, print_blob=True, suppress_health_check=_SLOW_OK)
settings.register_profile("long", max_examples=5000, deadline=None, print_blob=True, suppress_health_check=_SLOW_OK)
settings.load_profile("ci")


@pytest.fixture
def seed(request):
    """A fresh random seed per test (inputs differ every run); reported when the test fails.
    Set FCN_TEST_SEED to replay one."""
    value = int(os.environ.get("FCN_TEST_SEED", random.SystemRandom().randrange(2**31)))
    torch.manual_seed(value)
    request.node.fcn_seed = value
    return value


@pytest.fixture
def index(request, monkeypatch):
    """The CUDA kernels' index width of a path case (_helpers/suites.cuda_path_grid, indirect): "int64" sends
    every launch down the 64-bit path (else only calls past 2**31 elements take it)."""
    if request.param == "int64":
        monkeypatch.setenv("FCN_KERNELS_CUDA_INDEX64", "1")
    return request.param


@pytest.fixture
def linear_calls(monkeypatch):
    """The products MatmulConv2d has run (F.linear calls; once per trace when compiled), so a test knows which
    path ran."""
    from fcn_kernels.models import matmul_conv

    calls = []
    linear = matmul_conv.F.linear
    monkeypatch.setattr(matmul_conv.F, "linear", lambda *a: calls.append(1) or linear(*a))
    return calls


@pytest.fixture
def small_weights_pay(monkeypatch):
    """MatmulConv2d's rule as measured, but for weights of any size (the tests' layers are small)."""
    from fcn_kernels.models.matmul_conv import MATMUL_RULE

    for dtype, (_, rows, width) in list(MATMUL_RULE.items()):
        monkeypatch.setitem(MATMUL_RULE, dtype, (1, rows, width))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed and hasattr(item, "fcn_seed"):
        report.sections.append(("seed", f"replay with FCN_TEST_SEED={item.fcn_seed}"))


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (none on this machine)")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)
