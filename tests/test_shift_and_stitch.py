"""The paper's section 3.2: shift-and-stitch equals filter rarefaction.

`rarefy(net)(x)` and `shift_and_stitch(net, x, f)` are compared on every output position where both
are defined and neither takes a value from padding. Why those positions:

* Interior positions: the pass with shift (dy, dx) computes coarse output (y, x) from exactly the input
  pixels that the rarefied net reads for dense output (y*f + dy, x*f + dx); layer by layer, coarse
  position u of a map at cumulative stride s in that pass is dense position (shift + s*u) of the
  rarefied net's map. So the values agree, and with integer-valued float64 data (every sum exact, so
  summation order cannot matter) they agree bit for bit.
* Border positions differ by construction (the paper's claim is about the interior): a coarse pass pads
  *its own* map with zeros (or -inf for max pools) at coarse position -1, which is dense position
  shift - s, a real pixel of the rarefied net's map whenever shift >= s; and a ceil-mode pool's partial
  window at the bottom/right has no rarefied counterpart. These positions are found by running both
  computations on a "touched padding" mask (1 where a padded or missing value entered the window,
  propagated through every conv/pool with its own kernel, stride, dilation, padding) and excluded.

Each test also checks that the compared region is substantial (>= 15% of the positions, every phase (dy, dx)
present), so an empty comparison cannot pass.
"""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import fcn_kernels
from fcn_kernels import rarefy, shift_and_stitch
from fcn_kernels.modules.rarefied import RarefiedAvgPool2d, RarefiedConv2d, RarefiedMaxPool2d
from fcn_kernels.shift_stitch import total_stride

pytestmark = pytest.mark.skipif(
    "cpu" not in fcn_kernels.available_backends(), reason="fcn_kernels._C was built without CPU kernels"
)


@pytest.fixture(autouse=True)
def one_thread():
    # Many tiny ops (f^2 passes of small nets): one intra-op thread avoids wake-up overhead on busy CI hosts.
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


# ---- the "touched padding" mask -------------------------------------------------------


def _geometry(m):
    """(kernel, stride, padding, dilation, ceil_mode) of a conv or pool, coarse or rarefied; None if pointwise."""

    def pair(v):
        return tuple(v) if isinstance(v, (tuple, list)) else (v, v)

    if isinstance(m, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)):
        stride = m.stride if m.stride is not None else m.kernel_size
        dilation = getattr(m, "dilation", 1)
        return (pair(m.kernel_size), pair(stride), pair(m.padding), pair(dilation), getattr(m, "ceil_mode", False))
    if isinstance(m, (RarefiedConv2d, RarefiedMaxPool2d, RarefiedAvgPool2d)):
        return m.kernel_size, (1, 1), m.padding, m.rarefaction, False
    return None


def touched(net, x):
    """(N, 1, h, w) map: 1 where the output of `net` on an input shaped like x took a padded value."""
    bad = torch.zeros(x.shape[0], 1, *x.shape[2:], dtype=torch.float64)
    for m in net.modules():
        geo = _geometry(m)
        if geo is None:
            continue
        (kh, kw), stride, (ph, pw), dil, ceil = geo
        padded = F.pad(bad, (pw, pw, ph, ph), value=1.0)
        out = F.max_pool2d(padded, (kh, kw), stride, 0, dil, ceil_mode=ceil)
        floor = F.max_pool2d(padded, (kh, kw), stride, 0, dil, ceil_mode=False)
        out[..., floor.shape[-2] :, :] = 1  # ceil mode: partial windows at the bottom/right
        out[..., :, floor.shape[-1] :] = 1
        bad = out
    return bad


def compared_positions(net, x, f):
    """Boolean (h, w): the positions both computations define without touching padding."""
    bad_rarefied = touched(rarefy(net), x)
    bad_stitched = shift_and_stitch(lambda t: touched(net, t), x, f)
    h = min(bad_rarefied.shape[-2], bad_stitched.shape[-2])
    w = min(bad_rarefied.shape[-1], bad_stitched.shape[-1])
    ok = (bad_rarefied[0, 0, :h, :w] == 0) & (bad_stitched[0, 0, :h, :w] == 0)
    return ok


def check_region(ok, f, what):
    fy, fx = f
    assert ok.float().mean() > 0.15, f"{what}: only {ok.float().mean():.0%} of the positions are comparable"
    for dy in range(fy):
        for dx in range(fx):
            assert ok[dy::fy, dx::fx].any(), f"{what}: no comparable position of phase {(dy, dx)}"


# ---- nets -----------------------------------------------------------------------------


def conv_relu_pool(cin, cout):
    """A padded 3x3 conv, ReLU and a 2x2 max pool: stride 2."""
    return nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2, 2)


def net_stride2():
    return nn.Sequential(*conv_relu_pool(3, 6), nn.Conv2d(6, 5, 3, padding=1), nn.ReLU(), nn.Conv2d(5, 4, 1))


def net_stride4():
    return nn.Sequential(
        *conv_relu_pool(3, 6),
        nn.Sequential(nn.Conv2d(6, 6, 3, padding=1), nn.ReLU()),
        nn.AvgPool2d(2, 2),
        nn.Conv2d(6, 4, 3, padding=2, dilation=2),
    )


def net_stride8():
    # strided conv, padded 3x3 max pool, avg pool, a nested block, a 1x1 head: total stride 8
    return nn.Sequential(
        nn.Conv2d(3, 6, 3, stride=2, padding=1),
        nn.LeakyReLU(0.25),
        nn.MaxPool2d(3, 2, padding=1),
        nn.Sequential(
            nn.Conv2d(6, 8, 3, padding=1),
            nn.ReLU(),
            nn.Sequential(nn.Conv2d(8, 8, (3, 1), padding=(1, 0), groups=2), nn.Hardtanh(-8, 8)),
        ),
        nn.AvgPool2d(2),
        nn.Conv2d(8, 6, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(6, 3, 1),
    )


def net_pool_variants():
    # ceil-mode max pool, count_include_pad=False and divisor_override average pools, non-square stride
    # (divisors 1, 2, 4: dyadic, so integer-valued data stays exact)
    return nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2, 2, ceil_mode=True),
        nn.AvgPool2d(2, (2, 1), padding=1, count_include_pad=False),
        nn.Conv2d(4, 4, 3, padding=1),
        nn.ReLU(),
        nn.AvgPool2d(2, 2, divisor_override=2),
        nn.Conv2d(4, 2, 3),
    )


NETS = {
    "stride2": (net_stride2, 2),
    "stride4": (net_stride4, 4),
    "stride8": (net_stride8, 8),
    "pools": (net_pool_variants, (8, 4)),
}


def integer_valued(net, seed):
    """Small integer weights and biases: every sum in float64 is exact, so order cannot matter."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randint(-2, 3, p.shape, generator=g).to(p.dtype))
    return net


@pytest.mark.parametrize("name", list(NETS))
def test_rarefy_equals_shift_and_stitch_exactly(seed, name):
    make, f = NETS[name]
    torch.manual_seed(seed)
    net = integer_valued(make().double().eval(), seed)
    assert total_stride(net) == ((f, f) if isinstance(f, int) else f)
    f = total_stride(net)
    x = torch.randint(-4, 5, (1, net[0].in_channels, 80, 84)).double()
    dense = rarefy(net)(x)
    stitched = shift_and_stitch(net, x, f)
    ok = compared_positions(net, x, f)
    check_region(ok, f, name)
    h, w = ok.shape
    a, b = dense[..., :h, :w][..., ok], stitched[..., :h, :w][..., ok]
    assert torch.equal(a, b), (
        f"{name}: {(a != b).sum().item()} of {a.numel()} compared values differ, max "
        f"|diff| {(a - b).abs().max().item():.3g} (seed={seed})"
    )


@pytest.mark.parametrize("name", list(NETS))
def test_rarefy_equals_shift_and_stitch_random_float64(seed, name):
    # Gaussian data: equal up to float64 rounding of differently ordered sums.
    make, _ = NETS[name]
    torch.manual_seed(seed)
    net = make().double().eval()
    f = total_stride(net)
    x = torch.randn(1, net[0].in_channels, 81, 79, dtype=torch.float64)
    dense = rarefy(net)(x)
    stitched = shift_and_stitch(net, x, f)
    ok = compared_positions(net, x, f)
    check_region(ok, f, name)
    h, w = ok.shape
    torch.testing.assert_close(
        dense[..., :h, :w][..., ok],
        stitched[..., :h, :w][..., ok],
        rtol=1e-12,
        atol=1e-12,
        msg=lambda m: f"{name} (seed={seed}): {m}",
    )
    # The excluded positions are real border effects, not an over-cautious mask: some differ.
    differs = (dense[..., :h, :w] - stitched[..., :h, :w]).abs().amax((0, 1)) > 1e-9
    assert (differs & ~ok).any(), f"{name}: no border effect found (seed={seed})"


def test_rarefy_gradients_flow(seed):
    net = net_stride4().double().eval()
    dense_net = rarefy(net)
    x = torch.randn(1, 3, 20, 20, dtype=torch.float64, requires_grad=True)
    dense_net(x).square().sum().backward()
    assert x.grad is not None and all(p.grad is not None for p in dense_net.parameters())


def test_shift_convention(seed):
    # fn = subsampling by f: each pass returns x[dy::f, dx::f], so stitching reassembles x exactly.
    x = torch.randn(2, 3, 13, 10, dtype=torch.float64)
    for f in (1, 2, 3, (4, 2)):
        fy, fx = (f, f) if isinstance(f, int) else f
        out = shift_and_stitch(lambda t: t[..., ::fy, ::fx], x, f)
        assert out.shape[-2:] == (13, 10)
        assert torch.equal(out, x), f"factor {f} (seed={seed})"
    # a pass whose output is shorter limits the stitched size to the fully defined block
    # (rows: shift 0 gives 2 -> dense rows 0, 2; shift 1 gives 1 -> dense row 1; row 3 is undefined)
    x = torch.arange(20.0).view(1, 1, 4, 5)
    out = shift_and_stitch(lambda t: t[..., :-1:2, ::2], x, 2)
    assert out.shape[-2:] == (3, 5)
    assert torch.equal(out, x[..., :3, :])


def test_rarefy_structure_and_state_dict(seed):
    net = net_stride8().double().eval()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    dense = rarefy(net)
    assert list(dense.state_dict()) == list(net.state_dict())
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k])  # the original is untouched
        assert v.data_ptr() != dense.state_dict()[k].data_ptr()  # and not shared
    assert isinstance(dense[0], RarefiedConv2d) and dense[0].rarefaction == (1, 1)
    assert isinstance(dense[2], RarefiedMaxPool2d) and dense[2].rarefaction == (2, 2)
    assert dense[2].padding == (2, 2)
    assert dense[3][0].rarefaction == (4, 4) and dense[3][0].padding == (4, 4)
    assert dense[3][2][0].rarefaction == (4, 4) and dense[3][2][0].padding == (4, 0)
    assert isinstance(dense[4], RarefiedAvgPool2d) and dense[4].rarefaction == (4, 4)
    assert dense[5].rarefaction == (8, 8) and dense[5].padding == (8, 8)
    for m in dense.modules():
        if hasattr(m, "stride") and not isinstance(m, nn.Sequential):
            assert tuple(m.stride) == (1, 1)
    # load_state_dict round trip
    dense.load_state_dict(net.state_dict())


@pytest.mark.parametrize(
    "layer, match",
    [
        (nn.Linear(4, 4), "Linear"),
        (nn.BatchNorm2d(4), "BatchNorm2d.*train mode"),
        (nn.Dropout(0.5), "Dropout.*train mode"),
        (nn.Conv2d(4, 4, 3, padding=1, padding_mode="reflect"), "padding_mode"),
        (nn.MaxPool2d(2, return_indices=True), "return_indices"),
        (nn.AdaptiveAvgPool2d(1), "AdaptiveAvgPool2d"),
        (nn.ConvTranspose2d(4, 4, 2), "ConvTranspose2d"),
        (nn.Upsample(scale_factor=2), "Upsample"),
    ],
)
def test_rarefy_unsupported_layers(layer, match):
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Sequential(nn.ReLU(), layer))
    with pytest.raises(TypeError, match=match) as info:
        rarefy(net)
    assert "Sequential.1.1" in str(info.value)  # names the layer's position


def test_rarefy_eval_mode_batchnorm_and_non_sequential(seed):
    net = nn.Sequential(
        nn.Conv2d(3, 4, 3, stride=2, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 2, 3, padding=1)
    ).double()
    with torch.no_grad():
        net[1].running_mean.uniform_(-1, 1)
        net[1].running_var.uniform_(0.5, 2)
    net.eval()
    x = torch.randn(1, 3, 16, 16, dtype=torch.float64)
    dense, stitched, ok = rarefy(net)(x), shift_and_stitch(net, x, 2), compared_positions(net, x, (2, 2))
    check_region(ok, (2, 2), "batchnorm net")
    h, w = ok.shape
    torch.testing.assert_close(dense[..., :h, :w][..., ok], stitched[..., :h, :w][..., ok], rtol=1e-12, atol=1e-12)
    with pytest.raises(TypeError, match="nn.Sequential"):
        rarefy(nn.Conv2d(3, 3, 3))
    with pytest.raises(ValueError, match="factor"):
        shift_and_stitch(net, x, 0)


def test_rarefied_avg_pool_semantics(seed):
    x = torch.randn(2, 3, 11, 12, dtype=torch.float64)
    for cip in (True, False):
        for override in (None, 5):
            pool = RarefiedAvgPool2d(3, rarefaction=1, padding=1, count_include_pad=cip, divisor_override=override)
            ref = F.avg_pool2d(x, 3, 1, 1, count_include_pad=cip, divisor_override=override)
            torch.testing.assert_close(pool(x), ref, msg=lambda m: f"cip={cip} override={override}: {m}")
    # rarefied: same as the average over the explicit rarefied window
    pool = RarefiedAvgPool2d(2, rarefaction=3, padding=0)
    ref = (x[..., :-3, :-3] + x[..., 3:, :-3] + x[..., :-3, 3:] + x[..., 3:, 3:]) / 4
    torch.testing.assert_close(pool(x), ref)
