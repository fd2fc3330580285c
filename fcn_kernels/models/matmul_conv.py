"""FCN's fc6 on the CPU as the matrix product it was before convolutionalization (docs/DESIGN.md §3).

fc6 is VGG16's first fully connected layer made a 7x7 convolution over pool5 (paper §3.1): 4096 filters
of 512 x 7 x 7 applied at a few output positions (81 at batch 1, 256 x 256). Its windows gathered into rows
(im2col: a few MB) times the weight as a (4096, 25088) matrix is a GEMM oneDNN runs near the CPU's peak;
where MATMUL_RULE says so (its measurements are in docs/DESIGN.md §3 and beside it), that replaces the
convolution.
"""

import torch
from torch import nn
from torch.nn import functional as F

# Per the dtype the layer computes in (autocast's where it is on): (the fewest weight elements, the most
# output rows = batch x output positions, and an output width at whose multiples the convolution was as
# fast, or 0) where the product measured faster; other dtypes, smaller weights, more rows and those widths
# run the convolution. Measured on fc6 alone, compiled with Inductor freezing as the torch engine runs it, at
# FCN widths 1, 1/2, 1/4 and 1/16 (2-core Intel Xeon with AMX, 2026-12-07; benchmarks/bench_matmul_conv.py,
# data: benchmarks/results/2026-12-07-cpu-intel-xeon-amx-2core-fc6-matmul-rule.json), the product's time
# over the convolution's:
# - float32: 0.45x to 0.91x at width 1 (103M elements) from 1 to 1024 rows; 0.73x to 0.81x at width 1/2,
#   0.82x to 0.95x at 1/4 (6.4M), 0.93x to 1.06x at 1/16;
# - bf16 (AMX, whose tiles take 16 rows): 0.54x to 0.90x at width 1 up to 400 rows (0.99x at 1 row); 0.98x
#   where fc6's output is 16 wide (a 500 x 500 image; 1.03x in the whole model), where the convolution's
#   tiles are full; 1.04x to 1.28x from 512 rows; 0.77x to 1.40x at widths 1/2 and 1/4, 1.03x to 1.20x at 1/16.
MATMUL_RULE = {torch.float32: (6_000_000, 1024, 0), torch.bfloat16: (100_000_000, 400, 16)}


def matmul_pays(dtype, weight_elements, rows, out_width):
    """Whether a MatmulConv2d of `weight_elements` weights computing in `dtype` over `rows` output rows of
    `out_width` positions runs as the product."""
    _, most, width = MATMUL_RULE.get(dtype, (1, 0, 0))
    return weights_pay(dtype, weight_elements) and 0 < rows <= most and not (width and out_width % width == 0)


def weights_pay(dtype, weight_elements):
    """Whether weights this many are at least the rule's least for `dtype`."""
    return weight_elements >= MATMUL_RULE.get(dtype, (float("inf"),))[0]


def _compute_dtype(x):
    kind = x.device.type
    return torch.get_autocast_dtype(kind) if torch.is_autocast_enabled(kind) else x.dtype


class MatmulConv2d(nn.Conv2d):
    """An ``nn.Conv2d`` (one group, stride 1, no padding, dilation 1: a convolutionalized fully connected
    layer) that runs on CPU inputs, where :func:`matmul_pays` (or ``always``), as im2col times its weight as a
    matrix. Its parameters are the convolution's (same names, shapes and state_dict); its outputs equal the
    convolution's up to the summation order (the dtype's rounding), channels_last-strided."""

    always = False  # the product on every CPU input, the rule unread: for export with dynamic sizes

    @staticmethod
    def fits(conv):
        """Whether ``conv`` is an ``nn.Conv2d`` of the form MatmulConv2d computes."""
        return (
            type(conv) is nn.Conv2d
            and conv.groups == 1
            and conv.stride == (1, 1)
            and conv.padding in ((0, 0), "valid")
            and conv.dilation == (1, 1)
        )

    @classmethod
    def from_conv(cls, conv, always=False):
        """A MatmulConv2d sharing ``conv``'s parameters; ValueError if ``conv`` does not fit."""
        if not cls.fits(conv):
            raise ValueError(f"conv must be an nn.Conv2d of one group, stride 1, no padding, dilation 1, got {conv}")
        new = cls(conv.in_channels, conv.out_channels, conv.kernel_size, bias=conv.bias is not None, device="meta")
        new.weight, new.bias, new.always = conv.weight, conv.bias, bool(always)
        new.train(conv.training)
        return new

    def forward(self, x):
        if x.dim() != 4 or x.device.type != "cpu" or x.shape[1] != self.in_channels:
            return super().forward(x)  # and its errors
        if not self.always:
            n, _, h, w = x.shape
            kh, kw = self.kernel_size
            if h < kh or w < kw:
                return super().forward(x)
            if not matmul_pays(_compute_dtype(x), self.weight.numel(), n * (h - kh + 1) * (w - kw + 1), w - kw + 1):
                return super().forward(x)
        return self._product(x)

    def _product(self, x):
        n, c, h, w = x.shape
        kh, kw = self.kernel_size
        ho, wo = h - kh + 1, w - kw + 1
        # Rows ordered (image, output row, output column), each window (kernel row, kernel column,
        # channel): channels innermost, the order of a channels_last input and weight.
        rows = x.permute(0, 2, 3, 1).unfold(1, kh, 1).unfold(2, kw, 1).permute(0, 1, 2, 4, 5, 3)
        weight = self.weight.permute(0, 2, 3, 1).reshape(self.out_channels, kh * kw * c)
        y = F.linear(rows.reshape(n * ho * wo, kh * kw * c), weight, self.bias)
        return y.view(n, ho, wo, self.out_channels).permute(0, 3, 1, 2)

    def extra_repr(self):
        return super().extra_repr() + (", always=True" if self.always else "")
