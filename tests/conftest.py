import os
import random

import pytest
import torch


@pytest.fixture
def seed(request):
    """A fresh random seed per test (inputs differ every run); reported when the test fails.
    Set FCN_TEST_SEED to replay one."""
    value = int(os.environ.get("FCN_TEST_SEED", random.SystemRandom().randrange(2**31)))
    torch.manual_seed(value)
    request.node.fcn_seed = value
    return value


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
