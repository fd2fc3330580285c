"""margin.py: the FCNs' trunk run on a trimmed padding and put back after a pool gives the full trunk's
outputs (float64, every model, odd and tiny sizes, non-square, channels_last, batches); the plan is the
largest the geometry allows (one more row changes the outputs); no plan where there is no margin."""

import pytest
import torch

from fcn_kernels.models import FCN8s, FCN8sAtOnce, FCN16s, FCN32s, margin


def random_fcn(cls, padding=100):
    """A narrow FCN in float64 with random biases (so the margin's constant is not zero) and score layers."""
    m = cls(n_class=5, width=1 / 16, padding=padding).double().eval()
    with torch.no_grad():
        for module in m.modules():
            if isinstance(module, torch.nn.Conv2d) and module.bias is not None:
                module.bias.normal_(0, 0.5)
        for name in m.score_layer_names():
            getattr(m, name).weight.normal_(0, 0.1)
    return m


def both(m, x, p="every"):
    """(full, trimmed) scores of `m` on `x`, trimmed by the plan p (a Plan, None, or every restore)."""
    with torch.no_grad():
        m._trim_margin = False
        full = m.scores(x)
        m._trim_margin = True
        p = margin.candidates(m, *x.shape[-2:])[0] if p == "every" else p
        m.__dict__["_margin_chosen"] = {tuple(x.shape[-2:]): p}
        trimmed = m.scores(x)
    return full, trimmed


def assert_same(full, trimmed):
    for f, t in zip(full, trimmed, strict=True):
        assert f.shape == t.shape
        scale = f.abs().max().item() if f.numel() else 1.0
        torch.testing.assert_close(t, f, rtol=1e-12, atol=1e-12 * scale)


@pytest.mark.parametrize("cls", [FCN8s, FCN16s, FCN32s])
@pytest.mark.parametrize("size", [(1, 1), (2, 7), (17, 16), (33, 45), (64, 31), (100, 127)])
def test_trimmed_trunk_gives_the_full_trunks_scores(cls, size, seed):
    """Each candidate plan: restores after pool1, pool2 and pool3 (6, 8 and 6 rows put back at VGG's padding of
    100: conv1_1 padded by 8), after pool3 alone (padded by 52), and none."""
    m = random_fcn(cls)
    plans = margin.candidates(m, *size)
    assert [[(r.layer, r.rows.m, r.cols.m) for r in p.restores] for p in plans[:2]] == [
        [("pool1", 6, 6), ("pool2", 8, 8), ("pool3", 6, 6)],
        [("pool3", 6, 6)],
    ]
    assert [p.padding for p in plans[:2]] == [(8, 8), (52, 52)] and plans[2] is None
    x = torch.randn(2, 3, *size, dtype=torch.float64)
    for p in plans:
        assert_same(*both(m, x, p))


def test_channels_last_and_batch_zero(seed):
    m = random_fcn(FCN8s).to(memory_format=torch.channels_last)
    x = torch.randn(3, 3, 23, 40, dtype=torch.float64).contiguous(memory_format=torch.channels_last)
    assert_same(*both(m, x))
    assert_same(*both(m, torch.randn(0, 3, 23, 40, dtype=torch.float64)))


@pytest.mark.parametrize("axis", ["rows", "cols"])
def test_one_more_row_than_the_plan_changes_the_map(axis, seed):
    """The plan's m is the largest that keeps a margin pixel between the edges' and the image's: with one
    more (conv1_1 padded 8 less, one more row put back) the edge reaches the image and pool3's map differs."""
    m = random_fcn(FCN8s)
    x = torch.randn(1, 3, 20, 24, dtype=torch.float64)
    p = margin.candidates(m, 20, 24)[1]  # pool3 alone
    with torch.no_grad():
        full = margin._through(m, x, None, "pool3")
        assert torch.equal(margin._through(m, x, p, "pool3"), full)
        (r,), dim = p.restores, 0 if axis == "rows" else 1
        a = getattr(r, axis)
        padding = tuple(v - 8 if d == dim else v for d, v in enumerate(p.padding))
        # the trimmed map is one shorter on each side in pool3's units: the image's end moves one back
        over = margin.Plan(padding, (r._replace(**{axis: margin._Axis(a.m + 1, a.left, a.right - 1)}),))
        got = margin._through(m, x, over, "pool3")
    assert got.shape == full.shape and not torch.equal(got, full)


def test_choose_keeps_the_fastest_plan(monkeypatch):
    """choose times each candidate (after a first round that is not counted) and `plan` then gives the
    fastest for that shape only; an InferenceModel chooses once per shape."""
    m = random_fcn(FCN8s).float()
    plans = margin.candidates(m, 30, 31)
    cost = {plans[0]: 3.0, plans[1]: 1.0, None: 2.0}
    timed = []

    def fake(fn, model, x, p, last):
        timed.append(p)
        return cost[p]

    monkeypatch.setattr(margin, "_seconds", fake)
    x = torch.randn(2, 3, 30, 31)
    margin.choose(m, x)
    assert timed == plans * 3
    assert margin.plan(m, x.shape) == plans[1] == margin.plan(m, (1, 3, 30, 31))  # per size, any batch
    assert margin.plan(m, (2, 3, 30, 32)) == margin.candidates(m, 30, 32)[0]  # not chosen: every restore
    margin.choose(m, x[:1])
    assert len(timed) == 9

    from fcn_kernels.models import optimize_for_inference

    fast = optimize_for_inference(m, compile=False)
    timed.clear()
    for _ in range(2):
        fast(x)
    assert timed == plans * 3 and fast.model._margin_chosen == {(30, 31): plans[1]}


@pytest.mark.parametrize("padding", [0, 5, 7])
def test_no_plan_without_a_margin(padding):
    """conv1_1 padded by less than pool3's stride (8) leaves nothing to trim (the plan's geometry alone: an
    FCN's crops need its padding of 100)."""
    spec = margin._spec(random_fcn(FCN8s))
    first = spec[0]
    rows, cols = (g[:2] + (padding,) + g[3:] for g in first[1:3])
    trimmed = ((first[0], rows, cols) + first[3:],) + spec[1:]
    assert margin._plan(trimmed, 64, 64, False) is None
    assert margin._plan(spec, 64, 64, False) is not None


def test_levels_reach():
    """The geometry by hand for one axis of VGG's first stage at padding 100 and a 10-pixel image: conv1_1's
    output has no edge pixels and the image's reach is [98, 110); conv1_2 adds one edge pixel each side and
    widens the image's by one; the ceil-mode pool halves them."""
    conv = (3, 1, 1, 1, True, False)
    pool = (2, 2, 0, 1, False, True)
    levels = margin._levels((conv, conv, pool), 10, 100)
    assert levels[0] == (208, 0, 98, 110, 208)
    assert levels[1] == (208, 1, 97, 111, 207)
    assert levels[2] == (104, 1, 48, 56, 103)


def test_any_size_plan_is_each_sizes_plan():
    """The plan torch.export traces for every size (right indices from the size) is each size's plan with
    the deepest restore alone."""
    spec = margin._spec(random_fcn(FCN8s))
    for h in list(range(1, 70)) + [255, 256, 375, 500, 501, 777]:
        for w in (1, 2, 9, 64, 333, 500):
            assert margin._any_size(spec, h, w) == margin._plan(spec, h, w, True), (h, w)


def test_exported_for_every_size(seed):
    """torch.export with dynamic sizes (the vendor engines' trunk) traces the trimmed trunk, conv1_1 padded
    by 52 (pool3's restore alone), and the one program gives the full trunk's scores at other sizes."""
    from fcn_kernels.export import _in_eval_mode
    from fcn_kernels.models.inference import _Scores

    m = random_fcn(FCN8s)
    margin.enable(m)
    example = torch.randn(1, 3, 32, 40, dtype=torch.float64)
    program = _in_eval_mode(
        _Scores(m).eval(), (example,), True, lambda m, xs, s: torch.export.export(m, xs, dynamic_shapes=s)
    )
    convs = [n for n in program.graph.nodes if n.target == torch.ops.aten.conv2d.default]
    assert list(convs[0].args[4]) == [52, 52]
    run = program.module()
    for shape in [(2, 3, 45, 38), (1, 3, 1, 1), (1, 3, 77, 13)]:
        x = torch.randn(shape, dtype=torch.float64)
        full, _ = both(m, x)
        with torch.no_grad():
            assert_same(full, run(x))


@pytest.mark.parametrize(
    "cls, padding, size",
    [(FCN8s, 150, (20, 24)), (FCN8s, 132, (21, 21)), (FCN8sAtOnce, 150, (21, 21)), (FCN16s, 260, (21, 21))],
)
def test_no_restore_after_a_skip_tap(cls, padding, size, seed):
    """With more padding the geometry would allow restores past pool3 (FCN-8s's first tap) or pool4
    (FCN-16s's): a tap read there would be a trimmed map. The plans stop at the first tap, and give the
    full trunk's scores (found in review: wrong scores or a crop error before)."""
    m = random_fcn(cls, padding=padding)
    first_tap = min(m._taps, key=m._trunk.index)
    x = torch.randn(1, 3, *size, dtype=torch.float64)
    for p in margin.candidates(m, *size):
        if p is not None:
            assert m._trunk.index(p.restores[-1].layer) <= m._trunk.index(first_tap)
        assert_same(*both(m, x, p))


def test_exported_with_a_dynamic_batch_only(seed):
    """Sizes fixed and the batch symbolic: the plan is the size's (found in review: a SymInt in a key)."""
    from fcn_kernels.export import _in_eval_mode
    from fcn_kernels.models.inference import _Scores

    m = random_fcn(FCN8s)
    margin.enable(m)
    x = torch.randn(2, 3, 21, 30, dtype=torch.float64)
    shapes = ({0: torch.export.Dim.DYNAMIC},)
    program = _in_eval_mode(
        _Scores(m).eval(), (x,), False, lambda m, xs, s: torch.export.export(m, xs, dynamic_shapes=shapes)
    )
    full, _ = both(m, x, None)
    with torch.no_grad():
        assert_same(full, program.module()(x))
