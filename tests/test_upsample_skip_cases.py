"""The upsample_skip test helpers themselves (tests/_helpers/upsample_cases.py): the case builder, and the
comparison running the backend on that backend's device (a GPU run once moved CUDA inputs back to
CPU, where Triton refuses them)."""

import random

import pytest
import torch

import _helpers.upsample_cases as uc
from fcn_kernels import backends


def test_case_builder_defaults_and_pairs():
    c = uc.case(channels=5, groups=5, K=16, stride=8, out_offset=31, out_size=(40, 30))
    assert (c.cin, c.cout, c.groups, c.K, c.stride, c.out_offset, c.out_size) == (
        5,
        5,
        5,
        (16, 16),
        (8, 8),
        (31, 31),
        (40, 30),
    )
    assert (c.N, c.skip_hw, c.skip_offset, c.bias) == (1, None, (0, 0), False)
    assert c.crop == (40, 30) and uc.case(H=3, W=3).crop == (8, 8)  # (3 - 1) * 2 + 4, to the end
    with pytest.raises(TypeError):
        uc.case(depth=3)


@pytest.mark.parametrize("interpret", [False, True])
def test_backend_device(monkeypatch, interpret):
    monkeypatch.setattr(backends, "triton_interpret", lambda: interpret)
    assert uc.backend_device("triton") == ("cpu" if interpret else "cuda")
    assert uc.backend_device("cuda") == "cuda"
    assert uc.backend_device("cpu") == uc.backend_device("reference") == "cpu"


class _Stop(Exception):
    pass


def test_check_against_reference_runs_on_the_backends_device(monkeypatch):
    seen = []

    def spy(fn, inputs, grad_out=None, **kw):
        seen.extend(t.device.type for t in [*inputs, grad_out] if t is not None)
        raise _Stop

    monkeypatch.setattr(uc, "backend_device", lambda backend: "meta")  # any device but the CPU
    monkeypatch.setattr(uc, "run", spy)
    with pytest.raises(_Stop):
        uc.check_against_reference(uc.case(channels=2, skip_hw=(9, 9), bias=True), "triton", torch.float32)
    assert seen and set(seen) == {"meta"}, seen


def test_random_cases_reach_the_dot_path(seed):
    rng = random.Random(seed)
    cases = [uc.random_case(rng, per_group=(16, 17)) for _ in range(5)]
    assert all(c.cin // c.groups == 16 and c.cout // c.groups == 17 for c in cases)
    wide = [uc.random_case(rng) for _ in range(200)]
    assert any(min(c.cin, c.cout) // c.groups >= 16 for c in wide)
