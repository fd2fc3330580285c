"""FusedUpsampleSkip: an nn.ConvTranspose2d-compatible upsampling layer fused with crop and skip add."""
import math

import torch
from torch import nn

from .._args import check_channels, check_int, pair
from ..ops.upsample_skip import upsample_skip


def _bilinear_1d(size: int) -> torch.Tensor:
    # FCN's upsample_filt (surgery.py), one axis: the kernel of bilinear interpolation by (size + 1) // 2.
    factor = (size + 1) // 2
    center = factor - 1 if size % 2 == 1 else factor - 0.5
    return 1 - (torch.arange(size, dtype=torch.float64) - center).abs() / factor


def bilinear_kernel(channels, kernel_size, groups=1, *, dtype=torch.float32, device=None):
    """FCN's bilinear upsampling weights: (C, C, K, K) diagonal for groups=1, (C, 1, K, K) for groups=C."""
    channels = check_int(channels, "channels", minimum=1)
    groups = check_int(groups, "groups", minimum=1)
    kh, kw = pair(kernel_size, "kernel_size", minimum=1)
    filt = torch.outer(_bilinear_1d(kh), _bilinear_1d(kw)).to(dtype=dtype, device=device)
    if groups == channels:
        return filt.expand(channels, 1, kh, kw).clone()
    if groups == 1:
        w = torch.zeros(channels, channels, kh, kw, dtype=dtype, device=device)
        idx = torch.arange(channels, device=device)
        w[idx, idx] = filt
        return w
    raise ValueError(f"bilinear_kernel: groups must be 1 (dense diagonal) or channels ({channels}), got {groups}")


class FusedUpsampleSkip(nn.Module):
    """Transposed-conv upsampling, crop and skip addition in one op (fcn_kernels.upsample_skip).

    `weight` (in_channels, out_channels // groups, kH, kW) and `bias` (out_channels,) have
    nn.ConvTranspose2d's names and layout, so state_dicts are interchangeable with one.
    forward(x, skip=None, out_size=None) returns
    conv_transpose2d(x)[..., oy:oy+Ho, ox:ox+Wo] (+ skip[..., sy:sy+Ho, sx:sx+Wo]).

    init: "bilinear" (FCN's fixed upsampling; needs in_channels == out_channels and groups 1 or C),
    "default" (nn.ConvTranspose2d's initialisation) or "zeros". trainable=False keeps the weight
    fixed: it does not require grad, and backward does no weight-gradient work.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride, *, groups=1, bias=False,
                 skip_offset=0, out_offset=0, init="bilinear", trainable=True, backend=None,
                 device=None, dtype=None):
        super().__init__()
        self.in_channels, self.out_channels, self.groups = check_channels(in_channels, out_channels, groups)
        self.kernel_size = pair(kernel_size, "kernel_size", minimum=1)
        self.stride = pair(stride, "stride", minimum=1)
        self.skip_offset = pair(skip_offset, "skip_offset", minimum=0)
        self.out_offset = pair(out_offset, "out_offset", minimum=0)
        self.backend = backend
        factory = {"device": device, "dtype": dtype}
        self.weight = nn.Parameter(torch.empty(in_channels, out_channels // groups, *self.kernel_size, **factory),
                                   requires_grad=trainable)
        self.bias = nn.Parameter(torch.empty(out_channels, **factory), requires_grad=trainable) if bias else None
        if init not in ("bilinear", "default", "zeros"):
            raise ValueError(f"init must be 'bilinear', 'default' or 'zeros', got {init!r}")
        self.init = init
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self):
        if self.init == "bilinear":
            if self.in_channels != self.out_channels:
                raise ValueError(f"init='bilinear' needs in_channels == out_channels, got "
                                 f"{self.in_channels} and {self.out_channels}")
            self.weight.copy_(bilinear_kernel(self.out_channels, self.kernel_size, self.groups))
        elif self.init == "zeros":
            self.weight.zero_()
        else:  # nn.ConvTranspose2d's default
            nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            if self.init == "default":
                fan_in = self.weight.shape[1] * self.kernel_size[0] * self.kernel_size[1]
                bound = 1 / math.sqrt(fan_in)
                nn.init.uniform_(self.bias, -bound, bound)
            else:
                self.bias.zero_()

    def forward(self, x, skip=None, out_size=None):
        return upsample_skip(x, self.weight, self.bias, skip, stride=self.stride, groups=self.groups,
                             out_offset=self.out_offset, out_size=out_size, skip_offset=self.skip_offset,
                             backend=self.backend)

    @classmethod
    def from_conv_transpose(cls, m: nn.ConvTranspose2d, **kw):
        """Adopt an nn.ConvTranspose2d (its weight and bias are copied). Padding, output_padding and
        dilation must be the defaults: the crop (out_offset, out_size) replaces them."""
        if not isinstance(m, nn.ConvTranspose2d):
            raise TypeError(f"from_conv_transpose expects nn.ConvTranspose2d, got {type(m).__name__}")
        if tuple(m.padding) != (0, 0) or tuple(m.output_padding) != (0, 0) or tuple(m.dilation) != (1, 1):
            raise ValueError(f"from_conv_transpose: padding {m.padding}, output_padding {m.output_padding} "
                             f"and dilation {m.dilation} must be 0, 0 and 1 (use out_offset/out_size to crop)")
        kw.setdefault("trainable", m.weight.requires_grad)
        out = cls(m.in_channels, m.out_channels, m.kernel_size, m.stride, groups=m.groups,
                  bias=m.bias is not None, init="zeros", device=m.weight.device, dtype=m.weight.dtype, **kw)
        with torch.no_grad():
            out.weight.copy_(m.weight)
            if m.bias is not None:
                out.bias.copy_(m.bias)
        return out

    def extra_repr(self):
        s = (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
             f"groups={self.groups}, out_offset={self.out_offset}, skip_offset={self.skip_offset}")
        if not self.weight.requires_grad:
            s += ", trainable=False"
        return s
