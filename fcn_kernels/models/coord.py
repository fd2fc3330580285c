"""Coordinate maps: derive FCN crop offsets from layer geometry (Caffe's coord_map, Long et al.).

Every spatial layer maps a coordinate of its output to the coordinate of its input that the
output's receptive field is centred on; the map is affine per axis, ``in = scale * out + shift``,
kept exactly as Fractions. A blob's map (blob coordinate -> input-image coordinate) is the
composition of the maps of the layers that produced it. Two blobs on the same grid (equal scale)
differ by a shift; that shift, an integer, is the crop offset that aligns them. Nothing about
VGG16 is hard-coded here: another padding, another trunk gives its own offsets.

Layer maps (k kernel, s stride, p padding, d dilation; per axis):
  Conv2d, MaxPool2d, AvgPool2d:      in = s * out + (d * (k - 1) / 2 - p)
  ConvTranspose2d:                   in = (out - d * (k - 1) / 2 + p) / s
  FusedUpsampleSkip (out_offset c):  the transposed conv (p = 0) after a crop at c: out -> out + c
  ReLU, dropout, norms, Identity:    in = out
Ceil-mode pooling adds outputs at the far edge only, so its map is that of floor mode.
"""

from fractions import Fraction
from typing import NamedTuple

from torch import nn

from .._args import pair


class Affine(NamedTuple):
    """in = scale * out + shift, on one axis."""

    scale: Fraction
    shift: Fraction

    def then(self, inner: "Affine") -> "Affine":
        """The map of a blob produced by a layer with map `inner` from the blob with map `self`:
        out -> self(inner(out))."""
        return Affine(self.scale * inner.scale, self.scale * inner.shift + self.shift)


class CoordMap(NamedTuple):
    """Per-axis affine maps (rows, cols) from a blob's coordinates to those of the network input."""

    rows: Affine
    cols: Affine

    @classmethod
    def identity(cls) -> "CoordMap":
        one = Affine(Fraction(1), Fraction(0))
        return cls(one, one)

    def then(self, layer_map: "CoordMap") -> "CoordMap":
        return CoordMap(self.rows.then(layer_map.rows), self.cols.then(layer_map.cols))

    def through(self, *modules) -> "CoordMap":
        """The map of the blob obtained by applying `modules` in order to the blob with this map."""
        out = self
        for m in modules:
            out = out.then(layer_map(m))
        return out


PASS_THROUGH = (
    nn.ReLU,
    nn.LeakyReLU,
    nn.PReLU,
    nn.ELU,
    nn.GELU,
    nn.SiLU,
    nn.Sigmoid,
    nn.Tanh,
    nn.Identity,
    nn.Dropout,
    nn.Dropout2d,
    nn.Dropout3d,
    nn.AlphaDropout,
    nn.BatchNorm2d,
    nn.GroupNorm,
    nn.InstanceNorm2d,
    nn.LocalResponseNorm,
)


def window_map(kernel, stride=1, padding=0, dilation=1) -> CoordMap:
    """The map of a convolution or pooling window."""
    k, s, p, d = (
        pair(v, n)
        for v, n in ((kernel, "kernel_size"), (stride, "stride"), (padding, "padding"), (dilation, "dilation"))
    )
    return CoordMap(*(Affine(Fraction(s[a]), Fraction(d[a] * (k[a] - 1), 2) - p[a]) for a in (0, 1)))


def deconv_map(kernel, stride=1, padding=0, dilation=1, crop=0) -> CoordMap:
    """The map of a transposed convolution, followed by a crop at offset `crop`."""
    k, s, p, d, c = (
        pair(v, n)
        for v, n in (
            (kernel, "kernel_size"),
            (stride, "stride"),
            (padding, "padding"),
            (dilation, "dilation"),
            (crop, "crop"),
        )
    )
    return CoordMap(*(Affine(Fraction(1, s[a]), (c[a] + p[a] - Fraction(d[a] * (k[a] - 1), 2)) / s[a]) for a in (0, 1)))


def layer_map(m: nn.Module) -> CoordMap:
    """The coordinate map of one layer (output -> input). Unknown spatial layers are an error."""
    from ..modules.upsample import FusedUpsampleSkip

    if isinstance(m, nn.Conv2d):
        if isinstance(m.padding, str):
            if m.padding == "valid":
                padding = 0
            else:  # "same" (stride 1): PyTorch puts the odd extra padding at the far edge
                padding = tuple(d * (k - 1) // 2 for k, d in zip(m.kernel_size, m.dilation))
        else:
            padding = m.padding
        return window_map(m.kernel_size, m.stride, padding, m.dilation)
    if isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)):
        stride = m.stride if m.stride is not None else m.kernel_size
        dilation = getattr(m, "dilation", 1)
        return window_map(m.kernel_size, stride, m.padding, dilation)
    if isinstance(m, nn.ConvTranspose2d):
        return deconv_map(m.kernel_size, m.stride, m.padding, m.dilation)
    if isinstance(m, FusedUpsampleSkip):
        return deconv_map(m.kernel_size, m.stride, crop=m.out_offset)
    if isinstance(m, PASS_THROUGH):
        return CoordMap.identity()
    if isinstance(m, nn.Sequential):
        return CoordMap.identity().through(*m)
    raise TypeError(f"no coordinate map for {type(m).__name__}; give a map for it or use a known layer")


def crop_offset(blob: CoordMap, reference: CoordMap) -> tuple:
    """The (rows, cols) offset at which to crop `blob` so that it aligns with `reference`:
    blob[..., i + oy, j + ox] sits at the same input coordinate as reference[..., i, j].

    Both must be on the same grid (equal scale) and the offset a non-negative integer, else
    ValueError (the net's geometry admits no crop)."""
    out = []
    for axis, a, r in zip(("rows", "cols"), blob, reference):
        if a.scale != r.scale:
            raise ValueError(f"cannot align blobs on different grids ({axis}: scales {a.scale} and {r.scale})")
        off = (r.shift - a.shift) / a.scale
        if off.denominator != 1 or off < 0:
            raise ValueError(
                f"blobs are misaligned by {off} on {axis}: no crop (a non-negative integer offset) aligns them"
            )
        out.append(int(off))
    return tuple(out)
