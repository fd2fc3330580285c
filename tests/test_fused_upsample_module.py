"""FusedUpsampleSkip and bilinear_kernel (docs/DESIGN.md §3)."""

import numpy as np
import pytest
import torch
from torch import nn

import fcn_kernels
from fcn_kernels import FusedUpsampleSkip, bilinear_kernel


def caffe_upsample_filt(size):
    """FCN's surgery.upsample_filt, verbatim in numpy."""
    factor = (size + 1) // 2
    center = factor - 1 if size % 2 == 1 else factor - 0.5
    og = np.ogrid[:size, :size]
    return (1 - abs(og[0] - center) / factor) * (1 - abs(og[1] - center) / factor)


@pytest.mark.parametrize("k", [1, 2, 3, 4, 5, 16, 64])
def test_bilinear_kernel_is_fcn_upsample_filt(k):
    filt = torch.from_numpy(caffe_upsample_filt(k))
    dense = bilinear_kernel(3, k, dtype=torch.float64)
    assert dense.shape == (3, 3, k, k)
    for i in range(3):
        for j in range(3):
            assert torch.equal(dense[i, j], filt if i == j else torch.zeros_like(filt))
    dw = bilinear_kernel(3, k, groups=3, dtype=torch.float64)
    assert dw.shape == (3, 1, k, k) and all(torch.equal(dw[i, 0], filt) for i in range(3))
    with pytest.raises(ValueError, match="groups must be 1"):
        bilinear_kernel(4, k, groups=2)


def test_bilinear_upsampling_interpolates(seed):
    # Stride f, kernel 2f bilinear weights reproduce linear interpolation between input samples.
    f = 4
    ramp = torch.arange(6, dtype=torch.float64)
    x = (ramp[:, None] * 2 + ramp[None, :]).expand(1, 2, 6, 6)
    m = FusedUpsampleSkip(2, 2, 2 * f, f, groups=2, out_offset=f // 2 + f - 1 + 1 - f // 2, dtype=torch.float64)
    y = m(x, out_size=(5 * f - 2, 5 * f - 2))
    # interior outputs lie on the plane through the inputs
    yy = y[0, 0, 1:-1, 1:-1]
    d = torch.diff(yy, dim=1)
    assert torch.allclose(d, d[0, 0].expand_as(d)), "bilinear output is not a plane"


def test_depthwise_equals_dense_diagonal(seed):
    x = torch.randn(2, 5, 7, 6, dtype=torch.float64)
    skip = torch.randn(2, 5, 30, 30, dtype=torch.float64)
    kw = dict(stride=4, out_offset=3, out_size=(20, 19), skip_offset=2)
    a = fcn_kernels.upsample_skip(x, bilinear_kernel(5, 8, 5, dtype=torch.float64), None, skip, groups=5, **kw)
    b = fcn_kernels.upsample_skip(x, bilinear_kernel(5, 8, 1, dtype=torch.float64), None, skip, groups=1, **kw)
    torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("groups,bias", [(1, False), (3, True), (6, True)])
def test_state_dict_interchangeable_with_conv_transpose(seed, groups, bias):
    ct = nn.ConvTranspose2d(6, 6, 4, 2, groups=groups, bias=bias)
    m = FusedUpsampleSkip(6, 6, 4, 2, groups=groups, bias=bias, init="zeros", out_offset=1)
    assert set(m.state_dict()) == set(ct.state_dict())
    m.load_state_dict(ct.state_dict())
    x = torch.randn(2, 6, 5, 5)
    torch.testing.assert_close(m(x, out_size=(9, 9)), ct(x)[:, :, 1:10, 1:10])
    ct2 = nn.ConvTranspose2d(6, 6, 4, 2, groups=groups, bias=bias)
    ct2.load_state_dict(m.state_dict())
    torch.testing.assert_close(ct2.weight, ct.weight)


def test_from_conv_transpose(seed):
    ct = nn.ConvTranspose2d(4, 8, (3, 5), (2, 3), groups=2, bias=True)
    m = FusedUpsampleSkip.from_conv_transpose(ct, skip_offset=1)
    x, skip = torch.randn(1, 4, 5, 4), torch.randn(1, 8, 20, 20)
    torch.testing.assert_close(m(x, skip), ct(x) + skip[:, :, 1:12, 1:15])
    with pytest.raises(ValueError, match="padding"):
        FusedUpsampleSkip.from_conv_transpose(nn.ConvTranspose2d(4, 4, 4, 2, padding=1))
    ct.weight.requires_grad_(False)
    assert not FusedUpsampleSkip.from_conv_transpose(ct).weight.requires_grad


def test_fixed_weight_gets_no_gradient():
    m = FusedUpsampleSkip(3, 3, 4, 2, groups=3, trainable=False)
    assert list(m.state_dict()) == ["weight"] and not m.weight.requires_grad
    x = torch.randn(1, 3, 4, 4, requires_grad=True)
    m(x).sum().backward()
    assert m.weight.grad is None and x.grad is not None


def test_bilinear_init_needs_square_channels():
    with pytest.raises(ValueError, match="in_channels == out_channels"):
        FusedUpsampleSkip(3, 6, 4, 2)
    with pytest.raises(ValueError, match="init must be"):
        FusedUpsampleSkip(3, 3, 4, 2, init="xavier")
