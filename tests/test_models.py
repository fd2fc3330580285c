"""FCN-32s/16s/8s/8s-at-once (fcn_kernels.models): geometry, fused == stock, loading, compile, backward.

Models are narrow (width 1/16) so that the file runs in well under a minute on two slow cores; the
reference the models are checked against is an independent, literal functional transcription of
torchfcn's forward (its hard-coded offsets 5, 9, 19, 27, 31, dense diagonal upsampling).
"""

from fractions import Fraction

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import fcn_kernels
from fcn_kernels import bilinear_kernel
from fcn_kernels.models import (
    CoordMap,
    FCN8s,
    FCN8sAtOnce,
    FCN16s,
    FCN32s,
    crop_offset,
    layer_map,
    load_torchfcn,
    load_vgg16,
)

W = 0.0625  # trunk width of the test models: 4 ... 32 channels, fc6/fc7 256
MODELS = (FCN32s, FCN16s, FCN8s, FCN8sAtOnce)
STAGES = ((1, 2), (2, 2), (3, 3), (4, 3), (5, 3))
UPSCORE = {
    FCN32s: ("upscore",),
    FCN16s: ("upscore2", "upscore16"),
    FCN8s: ("upscore2", "upscore_pool4", "upscore8"),
    FCN8sAtOnce: ("upscore2", "upscore_pool4", "upscore8"),
}


@pytest.fixture(autouse=True)
def _fresh_seed(seed):
    """Every test draws fresh random weights and inputs (conftest's `seed`; FCN_TEST_SEED replays)."""


def make(cls, dtype=torch.float64, fused=True, **kw):
    """An eval-mode model with its score layers randomised, so that every skip carries signal."""
    m = cls(width=W, fused=fused, **kw).to(dtype).eval()
    with torch.no_grad():
        for name in m.score_layer_names():
            getattr(m, name).weight.normal_(0, 0.5)
            getattr(m, name).bias.normal_()
    return m


# ---- an independent reference: torchfcn's forward, written out ----------------------------------
def torchfcn_forward(sd, x, arch, n_class=21, pad=100):
    def up(h, key, s):
        w = sd[key]
        return F.conv_transpose2d(h, w, stride=s, groups=n_class if w.shape[1] == 1 else 1)

    def conv(h, name, **kw):
        return F.conv2d(h, sd[f"{name}.weight"], sd[f"{name}.bias"], **kw)

    h, taps = x, {}
    for stage, n in STAGES:
        for i in range(1, n + 1):
            h = F.relu(conv(h, f"conv{stage}_{i}", padding=pad if (stage, i) == (1, 1) else 1))
        h = F.max_pool2d(h, 2, stride=2, ceil_mode=True)
        taps[stage] = h
    h = F.relu(conv(F.relu(conv(h, "fc6")), "fc7"))
    h = conv(h, "score_fr")
    H, W_ = x.shape[2:]
    if arch is FCN32s:
        return up(h, "upscore.weight", 32)[:, :, 19 : 19 + H, 19 : 19 + W_]
    s4, s3 = (0.01, 0.0001) if arch is FCN8sAtOnce else (1, 1)
    h = up(h, "upscore2.weight", 2)
    h = h + conv(taps[4] * s4, "score_pool4")[:, :, 5 : 5 + h.shape[2], 5 : 5 + h.shape[3]]
    if arch is FCN16s:
        return up(h, "upscore16.weight", 16)[:, :, 27 : 27 + H, 27 : 27 + W_]
    h = up(h, "upscore_pool4.weight", 2)
    h = h + conv(taps[3] * s3, "score_pool3")[:, :, 9 : 9 + h.shape[2], 9 : 9 + h.shape[3]]
    return up(h, "upscore8.weight", 8)[:, :, 31 : 31 + H, 31 : 31 + W_]


# ---- geometry -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "cls, expected",
    [
        (FCN32s, {"output": (19, 19)}),
        (FCN16s, {"pool4": (5, 5), "output": (27, 27)}),
        (FCN8s, {"pool4": (5, 5), "pool3": (9, 9), "output": (31, 31)}),
        (FCN8sAtOnce, {"pool4": (5, 5), "pool3": (9, 9), "output": (31, 31)}),
    ],
)
def test_derived_offsets_are_the_references(cls, expected):
    for fused in (True, False):
        m = cls(width=W, fused=fused)
        assert m.offsets == expected
    m = cls(width=W)
    assert m.get_submodule(UPSCORE[cls][-1]).out_offset == expected["output"]
    for name, tap in zip(UPSCORE[cls], ("pool4", "pool3")):
        if tap in expected:
            assert m.get_submodule(name).skip_offset == expected[tap]


@pytest.mark.parametrize("d", [3, 10])
def test_offsets_follow_a_changed_padding(d):
    # conv1_1 padded by 100 + d: the final crop moves by d, the skips stay. Checked against the
    # padding-100 net on the input zero-padded by d, whose output cropped by d must be the same.
    m = make(FCN8s, padding=100 + d)
    assert m.offsets == {"pool4": (5, 5), "pool3": (9, 9), "output": (31 + d, 31 + d)}
    base = make(FCN8s)
    base.load_state_dict(m.state_dict())
    x = torch.randn(1, 3, 19, 26, dtype=torch.float64)
    want = base(F.pad(x, (d, d, d, d)))[:, :, d : d + 19, d : d + 26]
    torch.testing.assert_close(m(x), want)
    assert FCN32s(width=W, padding=96).offsets == {"output": (15, 15)}


def test_misaligned_geometry_is_an_error():
    half = CoordMap.identity().through(nn.Conv2d(1, 1, 2))  # centre at +0.5
    with pytest.raises(ValueError, match="misaligned"):
        crop_offset(half, CoordMap.identity())
    with pytest.raises(ValueError, match="different grids"):
        crop_offset(CoordMap.identity().through(nn.MaxPool2d(2)), CoordMap.identity())
    with pytest.raises(TypeError, match="no coordinate map"):
        layer_map(nn.Linear(2, 2))


@pytest.mark.parametrize(
    "layers",
    [
        [nn.Conv2d(1, 1, 3, stride=2, padding=1), nn.AvgPool2d(3, stride=2, padding=1), nn.Conv2d(1, 1, 5, padding=3)],
        [nn.Conv2d(1, 1, 3, padding=4, dilation=2), nn.ReLU(), nn.AvgPool2d(2), nn.Conv2d(1, 1, (3, 5), stride=(1, 3))],
    ],
)
def test_coord_map_is_the_receptive_field_centre(layers):
    # Another backbone: the map of an output position is the centre of its receptive field, found by
    # back-propagating an impulse through all-ones filters.
    net = nn.Sequential(*layers).double()
    for p in net.parameters():
        nn.init.ones_(p) if p.dim() > 1 else nn.init.zeros_(p)
    m = CoordMap.identity().through(*net)
    x = torch.ones(1, 1, 64, 64, dtype=torch.float64, requires_grad=True)  # > 0: every ReLU passes
    y = net(x)
    i, j = y.shape[2] // 2, y.shape[3] // 2
    y[0, 0, i, j].backward()
    rows, cols = x.grad[0, 0].nonzero(as_tuple=True)
    assert Fraction(int(rows.min() + rows.max()), 2) == m.rows.scale * i + m.rows.shift
    assert Fraction(int(cols.min() + cols.max()), 2) == m.cols.scale * j + m.cols.shift


# ---- shapes -------------------------------------------------------------------------------------
@pytest.mark.parametrize("cls", MODELS)
def test_output_size_is_input_size(cls):
    m = make(cls, dtype=torch.float32)
    for size in [(1, 1), (1, 7), (5, 2), (17, 31), (32, 32), (33, 65)]:
        with torch.no_grad():
            y = m(torch.randn(2, 3, *size))
        assert y.shape == (2, 21, *size)
    # every size 1..71 (shape inference on the meta device, no compute)
    with torch.device("meta"):
        mm = cls(width=W)
    for h in range(1, 72):
        assert mm(torch.empty(1, 3, h, 72 - h, device="meta")).shape == (1, 21, h, 72 - h)


def test_output_size_500x500():
    m = FCN8s(n_class=5, width=1 / 64).eval()
    with torch.no_grad():
        assert m(torch.randn(1, 3, 500, 500)).shape == (1, 5, 500, 500)


# ---- fused == stock == torchfcn's form -----------------------------------------------------------
@pytest.mark.parametrize("cls", MODELS)
def test_fused_equals_stock_and_reference(cls):
    fused, stock = make(cls, fused=True), make(cls, fused=False)
    assert fused.state_dict().keys() == stock.state_dict().keys()
    stock.load_state_dict(fused.state_dict())
    sd = {k: v.clone() for k, v in fused.state_dict().items()}
    for name in UPSCORE[cls]:  # torchfcn's dense (C, C, K, K) diagonal form
        sd[f"{name}.weight"] = bilinear_kernel(21, sd[f"{name}.weight"].shape[-1], 1, dtype=torch.float64)
    for size in [(1, 1), (23, 40)]:
        x = torch.randn(2, 3, *size, dtype=torch.float64)
        xf, xs = x.clone().requires_grad_(), x.clone().requires_grad_()
        yf, ys = fused(xf), stock(xs)
        torch.testing.assert_close(yf, ys)
        torch.testing.assert_close(yf, torchfcn_forward(sd, x, cls))
        assert yf.abs().max() > 0
        g = torch.randn_like(yf)
        yf.backward(g)
        ys.backward(g)
        torch.testing.assert_close(xf.grad, xs.grad)
    for (name, pf), ps in zip(fused.named_parameters(), stock.parameters()):
        if pf.requires_grad:
            torch.testing.assert_close(pf.grad, ps.grad, msg=name)


def test_at_once_scales_the_skips():
    at_once, plain = make(FCN8sAtOnce), make(FCN8s)
    sd = at_once.state_dict()
    sd["score_pool4.weight"] = sd["score_pool4.weight"] * 0.01
    sd["score_pool3.weight"] = sd["score_pool3.weight"] * 0.0001
    plain.load_state_dict(sd)
    x = torch.randn(1, 3, 21, 18, dtype=torch.float64)
    torch.testing.assert_close(at_once(x), plain(x))


def test_fresh_model_structure():
    m = FCN8s(width=W)
    for name in m.score_layer_names():  # zero-initialised score layers
        assert not getattr(m, name).weight.any() and not getattr(m, name).bias.any()
    for name in UPSCORE[FCN8s]:
        layer = getattr(m, name)
        assert isinstance(layer, fcn_kernels.FusedUpsampleSkip) and layer.groups == 21
        assert not layer.weight.requires_grad
        torch.testing.assert_close(layer.weight, bilinear_kernel(21, layer.kernel_size, 21))
    assert m.conv1_1.padding == (100, 100) and m.pool1.ceil_mode
    assert m.fc6.kernel_size == (7, 7) and m.fc7.kernel_size == (1, 1)
    stock = FCN8s(width=W, fused=False)
    assert isinstance(stock.upscore8, nn.ConvTranspose2d) and stock.upscore8.groups == 21
    assert m.state_dict().keys() == stock.state_dict().keys()


# ---- backward and compile ---------------------------------------------------------------------------
def test_backward_through_fused_ops():
    m = FCN8s(width=W).train()
    with torch.no_grad():
        for name in m.score_layer_names():
            getattr(m, name).weight.normal_(0, 0.1)
    x = torch.randn(2, 3, 30, 27)
    target = torch.randint(0, 21, (2, 30, 27))
    F.cross_entropy(m(x), target).backward()
    for name in ("conv1_1", "conv3_3", "fc6", "score_fr", "score_pool4", "score_pool3"):
        g = getattr(m, name).weight.grad
        assert g is not None and g.abs().sum() > 0, name
    for name in UPSCORE[FCN8s]:
        assert getattr(m, name).weight.grad is None


def test_torch_compile_fullgraph():
    m = make(FCN8s, dtype=torch.float32)
    x = torch.randn(1, 3, 20, 24)
    compiled = torch.compile(m, fullgraph=True)
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), m(x), rtol=1e-4, atol=1e-4)


# ---- parameter counts ------------------------------------------------------------------------
def reference_counts(arch, n_class=21):
    """(trainable, fixed dense-diagonal upsampling) parameters of the Caffe / torchfcn net, from its
    layer shapes: 13 convs 3x3, fc6 7x7x512 -> 4096, fc7 4096 -> 4096, score layers with biases,
    upsampling without."""
    convs = [
        (3, 64),
        (64, 64),
        (64, 128),
        (128, 128),
        (128, 256),
        (256, 256),
        (256, 256),
        (256, 512),
        (512, 512),
        (512, 512),
        (512, 512),
        (512, 512),
        (512, 512),
    ]
    n = sum(ci * co * 9 + co for ci, co in convs)
    n += 512 * 49 * 4096 + 4096 + 4096 * 4096 + 4096 + 4096 * n_class + n_class
    skips = {FCN32s: [], FCN16s: [512], FCN8s: [512, 256], FCN8sAtOnce: [512, 256]}[arch]
    n += sum(c * n_class + n_class for c in skips)
    kernels = {FCN32s: [64], FCN16s: [4, 32], FCN8s: [4, 4, 16], FCN8sAtOnce: [4, 4, 16]}[arch]
    return n, sum(n_class * n_class * k * k for k in kernels), sum(n_class * k * k for k in kernels)


@pytest.mark.parametrize("cls", MODELS)
def test_parameter_counts_match_the_reference(cls):
    trainable, dense_up, depthwise_up = reference_counts(cls)
    with torch.device("meta"):
        m = cls()
    assert sum(p.numel() for p in m.parameters() if p.requires_grad) == trainable
    assert sum(p.numel() for p in m.parameters() if not p.requires_grad) == depthwise_up
    # anchored to torchvision's VGG16 (138,357,544 parameters) less its 1000-way classifier
    trunk = sum(p.numel() for n, p in m.named_parameters() if not n.startswith(("score", "upscore")))
    assert trunk == 138_357_544 - (4096 * 1000 + 1000)
    # with torchfcn's dense upsampling (as after loading non-diagonal weights): the reference's total
    for name in m.upscore_names():
        k = getattr(m, name).kernel_size
        m.set_upscore_weight(name, torch.empty(21, 21, *k, device="meta"))
    assert sum(p.numel() for p in m.parameters()) == trainable + dense_up


# ---- convolutionalize ----------------------------------------------------------------------------
@pytest.mark.parametrize("bias", [True, False])
def test_convolutionalize(bias):
    c, h, w = 3, 4, 5
    lin = nn.Linear(c * h * w, 7, bias=bias).double()
    conv = fcn_kernels.convolutionalize(lin, (c, h, w))
    assert isinstance(conv, nn.Conv2d) and conv.kernel_size == (h, w) and conv.out_channels == 7
    assert (conv.bias is None) == (not bias)
    x = torch.randn(2, c, h, w, dtype=torch.float64)
    torch.testing.assert_close(conv(x).flatten(1), lin(x.flatten(1)))
    big = torch.randn(2, c, h + 6, w + 3, dtype=torch.float64)  # every window, stride 1
    y = conv(big)
    assert y.shape == (2, 7, 7, 4)
    for i in range(7):
        for j in range(4):
            torch.testing.assert_close(y[:, :, i, j], lin(big[:, :, i : i + h, j : j + w].flatten(1)))
    assert conv.weight.data_ptr() != lin.weight.data_ptr()
    conv1 = fcn_kernels.convolutionalize(nn.Linear(6, 2), 6)
    assert conv1.kernel_size == (1, 1) and conv1.in_channels == 6
    with pytest.raises(ValueError, match="holds 60 features"):
        fcn_kernels.convolutionalize(nn.Linear(61, 2), (3, 4, 5))
    with pytest.raises(TypeError):
        fcn_kernels.convolutionalize(conv, (c, h, w))


# ---- loading ------------------------------------------------------------------------------------
def torchvision_vgg16(width):
    """A torchvision-layout VGG16 (cfg "D") at `width`, so its state_dict has torchvision's keys."""
    layers, c_in = [], 3
    for v in [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]:
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            c = max(1, round(v * width))
            layers += [nn.Conv2d(c_in, c, 3, padding=1), nn.ReLU(inplace=True)]
            c_in = c
    fc = max(1, round(4096 * width))
    net = nn.Module()
    net.features = nn.Sequential(*layers)
    net.classifier = nn.Sequential(
        nn.Linear(c_in * 49, fc),
        nn.ReLU(True),
        nn.Dropout(),
        nn.Linear(fc, fc),
        nn.ReLU(True),
        nn.Dropout(),
        nn.Linear(fc, 1000),
    )
    return net.double().eval()


def test_load_vgg16_from_torchvision_keys():
    vgg = torchvision_vgg16(W)
    sd = vgg.state_dict()
    assert "features.28.weight" in sd and sd["classifier.0.weight"].shape == (256, 32 * 49)
    m = FCN8s(width=W).double().eval()
    assert load_vgg16(m, sd) is m
    torch.testing.assert_close(m.conv5_3.weight, sd["features.28.weight"])
    assert not m.score_fr.weight.any()  # score layers untouched
    # With conv1_1 padded like VGG's (1), the trunk through fc7 is VGG through classifier.4.
    m.conv1_1.padding = (1, 1)
    x = torch.randn(2, 3, 224, 224, dtype=torch.float64)
    with torch.no_grad():
        want = vgg.classifier[:5](torch.flatten(vgg.features(x), 1))
        h = x
        for name in m._trunk:
            h = getattr(m, name)(h)
    assert h.shape[2:] == (1, 1)
    torch.testing.assert_close(h.flatten(1), want)
    with pytest.raises(ValueError, match=r"features\.0\.weight.*conv1_1.*\(4, 3, 3, 3\).*\(8, 3, 3, 3\)"):
        load_vgg16(FCN8s(width=2 * W), sd)
    bad = dict(sd, **{"classifier.0.weight": torch.zeros(256, 1569, dtype=torch.float64)})
    with pytest.raises(ValueError, match=r"classifier\.0\.weight.*\(256, 1569\).*\(256, 1568\)"):
        load_vgg16(m, bad)
    del sd["features.10.bias"]
    with pytest.raises(KeyError, match=r"features\.10\.bias"):
        load_vgg16(m, sd)


def torchfcn_checkpoint(cls, kernels_diagonal=True):
    """A synthetic torchfcn state_dict: torchfcn's keys, random weights, dense (21, 21, K, K) upsampling."""
    with torch.device("meta"):
        shapes = {k: v.shape for k, v in cls(width=W).state_dict().items()}
    sd = {k: torch.randn(s, dtype=torch.float64) * 0.2 for k, s in shapes.items()}
    for name in UPSCORE[cls]:
        sd[f"{name}.weight"] = bilinear_kernel(21, shapes[f"{name}.weight"][-1], 1, dtype=torch.float64)
    return sd


@pytest.mark.parametrize("cls", MODELS)
def test_load_torchfcn_diagonal_becomes_depthwise(cls, tmp_path):
    sd = torchfcn_checkpoint(cls)
    path = tmp_path / "model_best.pth.tar"
    torch.save(
        {
            "epoch": 3,
            "iteration": 100,
            "arch": cls.__name__,
            "optim_state_dict": {},
            "model_state_dict": sd,
            "best_mean_iu": 0.5,
        },
        path,
    )
    x = torch.randn(1, 3, 15, 22, dtype=torch.float64)
    want = torchfcn_forward(sd, x, cls)
    for fused, source in ((True, str(path)), (False, sd)):
        m = load_torchfcn(cls(width=W, fused=fused).double().eval(), source)
        for name in UPSCORE[cls]:
            assert getattr(m, name).groups == 21 and getattr(m, name).weight.shape[1] == 1
            assert not getattr(m, name).weight.requires_grad
        torch.testing.assert_close(m(x), want)


def test_load_torchfcn_non_diagonal_stays_dense():
    sd = torchfcn_checkpoint(FCN8s)
    sd["upscore_pool4.weight"] = sd["upscore_pool4.weight"] + 0.01 * torch.randn(21, 21, 4, 4, dtype=torch.float64)
    x = torch.randn(2, 3, 18, 13, dtype=torch.float64)
    want = torchfcn_forward(sd, x, FCN8s)
    for fused in (True, False):
        m = load_torchfcn(FCN8s(width=W, fused=fused).double().eval(), sd)
        assert m.upscore_pool4.groups == 1 and m.upscore2.groups == 21
        assert m.offsets["pool3"] == (9, 9)
        torch.testing.assert_close(m(x), want)
        # a depthwise checkpoint (this package's own) makes the layer depthwise again
        ours = FCN8s(width=W, fused=fused).double().state_dict()
        assert load_torchfcn(m, ours).upscore_pool4.groups == 21


def test_load_torchfcn_errors():
    sd = torchfcn_checkpoint(FCN8s)
    bad = dict(sd, **{"upscore8.weight": torch.zeros(21, 21, 8, 8, dtype=torch.float64)})
    with pytest.raises(ValueError, match=r"upscore8\.weight.*\(21, 21, 8, 8\).*\(21, 21, 16, 16\)"):
        load_torchfcn(FCN8s(width=W), bad)
    bad = dict(sd, **{"fc6.weight": torch.zeros(256, 32, 3, 3)})
    with pytest.raises(ValueError, match=r"fc6\.weight.*\(256, 32, 3, 3\).*\(256, 32, 7, 7\)"):
        load_torchfcn(FCN8s(width=W), bad)
    with pytest.raises(KeyError, match="score_pool3"):
        load_torchfcn(FCN16s(width=W), sd)  # an FCN-8s checkpoint into FCN-16s
