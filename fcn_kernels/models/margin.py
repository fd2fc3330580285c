"""The margin that conv1_1's padding makes, computed once instead of across its whole width.

FCN pads the image by 100 before conv1_1 (so that any input survives the pools and fc6's window). Far from
the image and from the map's edges, every pixel of every early layer then holds the same value per channel:
the layer applied to the constant it reads (the "sea"). With 256x256 images, two thirds of conv1's 454x454
maps are sea. So the trunk runs on an image padded by less, and after some pools ("restores") the map is
widened back, by repeating one of its sea rows and columns on each side of the image, to the size it would
have had with the padding the later layers still need: the deepest restore (pool3 for VGG at a padding of
100) puts back the full map, a shallower one the map of the deeper ones' trimmed run. Every other pixel is
computed from the same inputs as in the full map, so the outputs are the model's (up to the order of the
sums a convolution of another size may pick: none in float64 or bf16 here, tests/test_margin.py).

Which pixels are sea follows from the layers' geometry (`_levels`: the pixels that the map's edges, through
the zero padding of each convolution after the first, and the image reach). At each pool, deepest first,
the number put back is the largest for which a sea row and column survive there on both sides. A size
with no sea at any pool runs the layers as they are. `choose` times the plans once per image size (the
torch engine); a program exported for every size (the vendor engines) takes the deepest restore alone.
"""

import functools
import math
import threading
import time
from typing import NamedTuple

import torch
from torch import nn
from torch.nn import functional as F


class _Axis(NamedTuple):
    """One axis of a restore: m rows (or columns) put back on each side, before the pool's output indices
    `left` (the first sea index after the left edge's pixels) and `right` (the first after the image's)."""

    m: int
    left: int
    right: int


class Restore(NamedTuple):
    layer: str  # the pool after whose output the map is widened
    rows: _Axis
    cols: _Axis


class Plan(NamedTuple):
    padding: tuple  # conv1_1's padding in the trimmed run (rows, columns)
    restores: tuple  # Restore, ..., in the trunk's order


def _geometry(module, axis):
    """(kernel, stride, padding, dilation, zero_padded) of a layer along `axis` (0 rows, 1 columns); None
    for a layer that keeps the geometry (ReLU, dropout); raises LookupError for any other layer."""
    if isinstance(module, nn.Conv2d):
        if isinstance(module.padding, str) or module.padding_mode != "zeros":
            raise LookupError
        return (module.kernel_size[axis], module.stride[axis], module.padding[axis], module.dilation[axis], True)
    if isinstance(module, nn.MaxPool2d):
        pick = lambda v: v if isinstance(v, int) else v[axis]  # noqa: E731
        return (pick(module.kernel_size), pick(module.stride), pick(module.padding), pick(module.dilation), False)
    if isinstance(module, (nn.ReLU, nn.Dropout, nn.Dropout2d, nn.Identity)):
        return None
    raise LookupError


def _out_size(n, kernel, stride, padding, dilation, ceil):
    """PyTorch's output size of a convolution or (ceil mode) pool."""
    span = n + 2 * padding - dilation * (kernel - 1) - 1
    out = (-(-span // stride) if ceil else span // stride) + 1
    if ceil and (out - 1) * stride >= n + padding:  # the last window may not start in the end padding
        out -= 1
    return out


@functools.lru_cache(maxsize=1024)
def _levels(geoms, n, pad):
    """Along one axis, for the layers `geoms` (the first a convolution whose padding is `pad`, its input `n`
    long): after each layer, (size, left, image_start, image_end, right): the pixels reached by the map's
    left edge are [0, left), by the image [image_start, image_end), by the right edge [right, size); the
    others are sea. The first layer reads the image padded with zeros, the same zeros as beyond its
    padding, so no edge reaches its output; after it, a convolution's zero padding differs from the sea
    and reaches the pixels whose windows cross it (a pool's padding is ignored: it only takes a max)."""
    size, left, image, right = n + 2 * pad, 0, (pad, pad + n), n + 2 * pad
    out = []
    for i, (kernel, stride, padding, dilation, zero_padded, ceil) in enumerate(geoms):
        padding = 0 if i == 0 else padding  # the first layer's padding is in the line already
        new_size = _out_size(size, kernel, stride, padding, dilation, ceil)
        reach = dilation * (kernel - 1)
        new_left, new_right, first, last = 0, new_size, None, None
        for j in range(new_size):
            lo = j * stride - padding
            hi = lo + reach
            if lo < left or (zero_padded and i > 0 and lo < 0):
                new_left = j + 1
            if hi >= right or (zero_padded and i > 0 and hi >= size):
                new_right = min(new_right, j)
            if lo < image[1] and hi >= image[0]:
                first = j if first is None else first
                last = j
        size, left, right = new_size, new_left, new_right
        image = (first, last + 1) if first is not None else (0, 0)
        out.append((size, left, image[0], image[1], right))
    return tuple(out)


def _sea(level):
    """Whether a sea index lies between the left edge's pixels and the image's, and between the image's and
    the right edge's."""
    size, left, start, end, right = level
    return left < start and end < right


def _axis_plan(geoms, n, pad, stride):
    """(m, levels at m) with the largest m for which both seas survive the last layer; m = 0 if none does."""
    for m in range(pad // stride, 0, -1):
        levels = _levels(geoms, n, pad - stride * m)
        if _sea(levels[-1]):
            return m, levels
    return 0, _levels(geoms, n, pad)


def _spec(model):
    """The trunk's geometry as a hashable value: ((name, rows geometry, columns geometry, ceil mode,
    multiply-adds per output pixel), ...) from conv1_1 up to the first layer the margin cannot pass (a
    strided convolution or a layer of another kind), and no further than the first skip tap (`model._taps`:
    a tap's map leaves the trunk there, so no restore may come after it); () where conv1_1 is not a padded
    stride-1 convolution. Kept on the model: its layers are fixed once optimize_for_inference has copied it
    (`enable` forgets it)."""
    spec = model.__dict__.get("_margin_spec")
    if spec is not None:
        return spec
    out, taps = [], set(getattr(model, "_taps", ()))
    for i, name in enumerate(model._trunk):
        module = getattr(model, name)
        if isinstance(module, nn.Conv2d) and module.stride != (1, 1):
            break
        try:
            rows, cols = _geometry(module, 0), _geometry(module, 1)
        except LookupError:
            break
        if i == 0 and not isinstance(module, nn.Conv2d):
            break
        if rows is None:
            continue
        conv = isinstance(module, nn.Conv2d)
        macs = module.in_channels // module.groups * module.out_channels * math.prod(module.kernel_size) if conv else 0
        out.append((name, rows, cols, not conv and module.ceil_mode, macs))
        if name in taps:
            break
    model.__dict__["_margin_spec"] = spec = tuple(out)
    return spec


def plan(model, shape):
    """The Plan of `model` (an FCN) for images of `shape` (N, C, H, W): the one `choose` timed fastest for
    that height and width, else every restore the geometry allows; for a shape with symbolic sizes
    (torch.export with dynamic shapes), the plan every size shares; None where no margin is dropped."""
    if any(isinstance(d, torch.SymInt) for d in shape):
        return _any_size(_spec(model), shape[-2], shape[-1])
    return _sized(model, shape[-2], shape[-1])


@torch.compiler.assume_constant_result  # traced once per size: Dynamo takes the plan as a constant
def _sized(model, height, width):
    chosen = model.__dict__.get("_margin_chosen", {})
    key = (height, width)
    return chosen[key] if key in chosen else _plan(_spec(model), height, width, False)


def _any_size_sizes(spec):
    """The sizes a plan for every size is checked at: every remainder modulo the product of the strides,
    twice over from 1 and once from 500 (past the image's first pixels the geometry repeats with that
    period), and a size past them all to pair them with."""
    period = math.prod(max(entry[1][1], entry[2][1]) for entry in spec)
    return tuple(range(1, 2 * period + 2)) + tuple(range(500, 500 + period + 1))


@functools.lru_cache(maxsize=64)
def _uniform(spec):
    """(padding, restores with `right` None) of the plan that every size in _any_size_sizes shares, or None
    where they differ (the number put back or the left index varies with the size). The deepest restore
    alone: with no timing per size to steer around a slow map size (`choose`), it moves fewer of them, and
    measured faster in OpenVINO (docs/DESIGN.md §3)."""
    sizes, shared = _any_size_sizes(spec), None
    for n in sizes:
        for p in (_plan(spec, n, sizes[-1], True), _plan(spec, sizes[-1], n, True)):
            if p is None:
                return None
            key = (p.padding, tuple((r.layer, r.rows[:2], r.cols[:2]) for r in p.restores))
            if shared not in (None, key):
                return None
            shared = key
    return shared


def _image_end(spec, layer, axis, n, padding):
    """The first index past the image's pixels in `layer`'s output along `axis`, for conv1_1 padded by
    `padding` and an n-pixel image: each layer's last window that reads the image (ints or SymInts)."""
    end = padding + n  # conv1_1's output on the padded line
    for name, *geoms, _ in spec[1:]:
        _, stride, pad, _, _ = geoms[axis]
        end = (end - 1 + pad) // stride + 1
        if name == layer:
            return end
    raise LookupError(layer)


def _any_size(spec, height, width):
    """The plan for images of any size (height, width may be SymInts: torch.export with dynamic shapes):
    the shared restore, its right indices computed from the size; None where sizes differ."""
    shared = _uniform(spec)
    if shared is None:
        return None
    padding, restores = shared
    out = []
    for layer, rows, cols in restores:
        # each restore's indices are those of the run trimmed by its own and the deeper restores
        deeper = [r for r in restores if _index(spec, r[0]) >= _index(spec, layer)]
        axes = []
        for axis, n, (m, left) in ((0, height, rows), (1, width, cols)):
            pad = spec[0][1 + axis][2] - sum(r[1 + axis][0] * _stride(spec, r[0], axis) for r in deeper)
            axes.append(_Axis(m, left, _image_end(spec, layer, axis, n, pad)))
        out.append(Restore(layer, *axes))
    return Plan(padding, tuple(out))


def _index(spec, layer):
    return next(i for i, entry in enumerate(spec) if entry[0] == layer)


def _stride(spec, layer, axis):
    return math.prod(entry[1 + axis][1] for entry in spec[: _index(spec, layer) + 1])


def candidates(model, height, width):
    """The plans `choose` times: every restore the geometry allows, the deepest alone, and none."""
    spec, out = _spec(model), []
    for p in (_plan(spec, height, width, False), _plan(spec, height, width, True), None):
        if p not in out:
            out.append(p)
    return out


_choosing = threading.Lock()
_CHOSEN_SIZES = 64


def enable(model):
    """Turn the trimmed trunk on for `model` (an FCN), with no plan chosen yet (a copy of a model that
    chose at another dtype chooses again)."""
    model._trim_margin = True
    model.__dict__.pop("_margin_chosen", None)
    model.__dict__.pop("_margin_spec", None)


def choose(model, x, rounds=2):
    """Time each candidate plan once per image size (H, W) on `x` itself, through the layers up to the
    deepest restore, and keep the fastest for `plan`. Why time: oneDNN's convolutions run some map sizes
    several times slower than their neighbours (docs/performance.md, session 25), and a plan moves every
    early map's size. Runs in the caller's no_grad and autocast; a second call for the same size does
    nothing, nor a call off the CPU (unmeasured there: `plan` gives every restore)."""
    key = (x.shape[-2], x.shape[-1])
    if x.device.type != "cpu" or key in model.__dict__.get("_margin_chosen", {}):
        return  # off the CPU unmeasured: every restore
    with _choosing:
        chosen = model.__dict__.setdefault("_margin_chosen", {})
        if key in chosen:
            return
        if len(chosen) >= _CHOSEN_SIZES:  # a server seeing ever new sizes: forget the oldest
            del chosen[next(iter(chosen))]
        plans = candidates(model, x.shape[-2], x.shape[-1])
        if len(plans) == 1:
            chosen[key] = plans[0]
            return
        last = plans[0].restores[-1].layer
        best = {}
        for r in range(1 + rounds):  # the first round builds oneDNN's kernels for the new sizes
            for i, p in enumerate(plans):
                seconds = _seconds(_through, model, x, p, last)
                if r:
                    best[i] = min(best.get(i, math.inf), seconds)
        chosen[key] = plans[min(best, key=best.get)]


def _seconds(fn, *args):
    t0 = time.perf_counter()
    fn(*args)
    return time.perf_counter() - t0


def _through(model, x, p, last):
    """The trunk with plan p (None: as it is) on x, up to layer `last`'s output."""
    h = x
    for i, name in enumerate(model._trunk):
        h = step(model, i, name, h, p)
        if name == last:
            return h


def step(model, i, name, h, p):
    """Trunk layer `name` (the i-th) of `model` on `h` under plan p (None: the layer as it is): conv1_1 with
    the plan's padding, a restore's pool followed by its widening."""
    layer = getattr(model, name)
    if p is None:
        return layer(h)
    return after(name, first_layer(layer, h, p) if i == 0 else layer(h), p)


@functools.lru_cache(maxsize=256)
def _plan(spec, height, width, deepest_only):
    restores, trims = [], [0, 0]  # input pixels trimmed per side by the deeper restores, rows and columns
    pools = [i for i in range(1, len(spec)) if not spec[i][4]]
    for last in reversed(pools):
        layers, axes = spec[: last + 1], []
        for axis, n in ((0, height), (1, width)):
            geoms = tuple(layer[1 + axis] + (layer[3],) for layer in layers)
            stride = math.prod(g[1] for g in geoms)
            axes.append((stride,) + _axis_plan(geoms, n, geoms[0][2] - trims[axis], stride))
        if not all(m for _, m, _ in axes):
            continue
        for axis, (stride, m, _) in enumerate(axes):
            trims[axis] += stride * m
        rows, cols = (_Axis(m, levels[-1][1], levels[-1][3]) for _, m, levels in axes)
        restores.insert(0, Restore(layers[-1][0], rows, cols))
        if deepest_only:
            break
    if not restores:
        return None
    return Plan(tuple(spec[0][1 + axis][2] - trims[axis] for axis in (0, 1)), tuple(restores))


def first_layer(conv, x, p):
    """conv1_1 on `x` with the plan's trimmed padding."""
    return F.conv2d(x, conv.weight, conv.bias, conv.stride, p.padding, conv.dilation, conv.groups)


def _put_back(h, dim, axis):
    """`h` with `axis.m` copies of index axis.left inserted before it, and of axis.right before it."""
    n, copies = h.shape[dim], [axis.m if d == dim % h.dim() else -1 for d in range(h.dim())]
    parts = [
        h.narrow(dim, 0, axis.left),
        h.narrow(dim, axis.left, 1).expand(*copies),
        h.narrow(dim, axis.left, axis.right - axis.left),
        h.narrow(dim, axis.right, 1).expand(*copies),
        h.narrow(dim, axis.right, n - axis.right),
    ]
    return torch.cat(parts, dim)


def after(name, h, p):
    """`h`, the output of layer `name` in the trimmed run, widened where the plan restores after that layer."""
    for r in p.restores:
        if r.layer == name:
            out = _put_back(_put_back(h, -2, r.rows), -1, r.cols)
            # the convolutions after it run in the layout they were given (channels_last in optimize_for_inference)
            channels_last = h.is_contiguous(memory_format=torch.channels_last)
            return out.contiguous(memory_format=torch.channels_last) if channels_last else out
    return h
