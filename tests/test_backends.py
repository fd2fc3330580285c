"""Backend selection (DESIGN.md §4): automatic choice, FCN_KERNELS_BACKEND, clear errors."""
import importlib

import pytest
import torch

import fcn_kernels
from fcn_kernels import backends

op_module = importlib.import_module("fcn_kernels.ops.upsample_skip")  # the module, not the function


def _inputs():
    return torch.randn(1, 2, 3, 3), fcn_kernels.bilinear_kernel(2, 4, groups=2)


def test_available_backends():
    avail = fcn_kernels.available_backends()
    assert avail[0] == "reference" and set(avail) <= set(backends.BACKENDS)
    assert ("cuda" in avail) == (torch.cuda.is_available() and backends._built("cuda", "upsample_skip"))


@pytest.fixture
def spy_reference(monkeypatch):
    calls = []
    real = op_module.reference.upsample_skip

    def spy(*a, **k):
        calls.append(1)
        return real(*a, **k)

    monkeypatch.setattr(op_module.reference, "upsample_skip", spy)
    return calls


@pytest.mark.skipif("cpu" not in fcn_kernels.available_backends(), reason="_C not built")
def test_cpu_tensors_default_to_cpu_kernels(spy_reference, monkeypatch):
    monkeypatch.delenv(backends.ENV_VAR, raising=False)
    assert backends.resolve(None, torch.device("cpu"), "upsample_skip") == "cpu"
    x, w = _inputs()
    fcn_kernels.upsample_skip(x, w, stride=2, groups=2)
    assert spy_reference == []


def test_env_var_sets_default(spy_reference, monkeypatch):
    monkeypatch.setenv(backends.ENV_VAR, "reference")
    x, w = _inputs()
    fcn_kernels.upsample_skip(x, w, stride=2, groups=2)
    assert spy_reference == [1]
    monkeypatch.setenv(backends.ENV_VAR, "bogus")
    with pytest.raises(ValueError, match="FCN_KERNELS_BACKEND='bogus' is not one of"):
        fcn_kernels.upsample_skip(x, w, stride=2, groups=2)


def test_explicit_backend_overrides_env(spy_reference, monkeypatch):
    monkeypatch.setenv(backends.ENV_VAR, "cpu")
    x, w = _inputs()
    fcn_kernels.upsample_skip(x, w, stride=2, groups=2, backend="reference")
    assert spy_reference == [1]


def test_unavailable_backend_is_an_error_not_a_fallback():
    x, w = _inputs()
    with pytest.raises(ValueError, match="backend='gpu' is not one of"):
        fcn_kernels.upsample_skip(x, w, stride=2, groups=2, backend="gpu")
    with pytest.raises(RuntimeError, match="backend='cuda'"):
        fcn_kernels.upsample_skip(x, w, stride=2, groups=2, backend="cuda")
    if not backends.triton_interpret():
        with pytest.raises(RuntimeError, match="backend='triton'"):
            fcn_kernels.upsample_skip(x, w, stride=2, groups=2, backend="triton")
