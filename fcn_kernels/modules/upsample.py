"""FusedUpsampleSkip: an nn.ConvTranspose2d-compatible upsampling layer fused with crop and skip add."""

import math

import torch
from torch import nn

from .._args import check_int, pair
from ..ops.upsample_skip import upsample_skip
from ._conv import init_conv


def _bilinear_1d(size: int) -> torch.Tensor:
    # FCN's upsample_filt (surgery.py), one axis: the kernel of bilinear interpolation by (size + 1) // 2.
    factor = (size + 1) // 2
    center = factor - 1 if size % 2 == 1 else factor - 0.5
    return 1 - (torch.arange(size, dtype=torch.float64) - center).abs() / factor


def bilinear_kernel(channels, kernel_size, groups=1, *, dtype=torch.float32, device=None):
    r"""FCN's bilinear upsampling weights (Caffe FCN's ``upsample_filt``), for a transposed convolution.

    Each channel is upsampled by ``(K + 1) // 2`` with the bilinear interpolation kernel; channels do not
    mix. See docs/DESIGN.md §3.

    Args:
        channels (int): C, the number of channels (FCN: classes).
        kernel_size (int or Tuple[int, int]): K (rows, cols); FCN uses ``2 * stride``.
        groups (int): 1 (a dense, diagonal weight) or ``channels`` (depthwise). Default: 1.
        dtype (torch.dtype): Default: torch.float32.
        device (torch.device, optional): Default: None (the default device).

    Returns:
        Tensor[C, C, Kh, Kw] for ``groups=1`` (zero off the diagonal), Tensor[C, 1, Kh, Kw] for ``groups=C``:
        in ``nn.ConvTranspose2d``'s layout.

    Example::

        >>> from fcn_kernels import bilinear_kernel
        >>> w = bilinear_kernel(21, 4, groups=21)
        >>> w.shape
        torch.Size([21, 1, 4, 4])
        >>> w[0, 0]
        tensor([[0.0625, 0.1875, 0.1875, 0.0625],
                [0.1875, 0.5625, 0.5625, 0.1875],
                [0.1875, 0.5625, 0.5625, 0.1875],
                [0.0625, 0.1875, 0.1875, 0.0625]])
        >>> bilinear_kernel(21, 4).shape                      # dense diagonal, groups=1
        torch.Size([21, 21, 4, 4])
    """
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
    r"""Transposed-convolution upsampling, crop and skip addition in one op (:func:`fcn_kernels.upsample_skip`).

    A drop-in for ``nn.ConvTranspose2d`` followed by a crop and a skip addition: ``weight`` and ``bias`` have
    its names and layout, so state_dicts are interchangeable. See docs/DESIGN.md §3.

    Args:
        in_channels (int): Cin.
        out_channels (int): Cout.
        kernel_size (int or Tuple[int, int]): (Kh, Kw).
        stride (int or Tuple[int, int]): the upsampling factor.
        groups (int): ``groups=Cin`` is depthwise (FCN's per-class upsampling). Default: 1.
        bias (bool): whether to add a learnable bias. Default: False.
        skip_offset (int or Tuple[int, int]): top-left corner of the window of ``skip`` added. Default: 0.
        out_offset (int or Tuple[int, int]): top-left corner of the crop of the uncropped output. Default: 0.
        init (str): ``"bilinear"`` (FCN's fixed upsampling, :func:`bilinear_kernel`; needs
            ``in_channels == out_channels`` and groups 1 or Cin), ``"default"`` (``nn.ConvTranspose2d``'s
            initialisation) or ``"zeros"``. Default: ``"bilinear"``.
        trainable (bool): False: the weight and bias do not require grad, and backward does no
            weight-gradient work. Default: True.
        backend (str, optional): as in :func:`fcn_kernels.upsample_skip`. Default: None.
        device, dtype: of the parameters. Default: None.

    Example::

        >>> import torch
        >>> from fcn_kernels import FusedUpsampleSkip
        >>> up = FusedUpsampleSkip(21, 21, 4, 2, groups=21, skip_offset=5, trainable=False)   # FCN-8s' upscore2
        >>> score_fr, score_pool4 = torch.randn(1, 21, 8, 8), torch.randn(1, 21, 28, 28)
        >>> up(score_fr, score_pool4).shape                   # (8 - 1) * 2 + 4 = 18 rows, uncropped
        torch.Size([1, 21, 18, 18])
        >>> up(score_fr, out_size=(16, 16)).shape
        torch.Size([1, 21, 16, 16])
    """

    def __init__(
        self,
        in_channels,
        out_channels,
        kernel_size,
        stride,
        *,
        groups=1,
        bias=False,
        skip_offset=0,
        out_offset=0,
        init="bilinear",
        trainable=True,
        backend=None,
        device=None,
        dtype=None,
    ):
        super().__init__()
        factory = init_conv(self, in_channels, out_channels, groups, kernel_size, backend, device, dtype)
        self.stride = pair(stride, "stride", minimum=1)
        self.skip_offset = pair(skip_offset, "skip_offset", minimum=0)
        self.out_offset = pair(out_offset, "out_offset", minimum=0)
        self.weight = nn.Parameter(
            torch.empty(in_channels, out_channels // groups, *self.kernel_size, **factory), requires_grad=trainable
        )
        self.bias = nn.Parameter(torch.empty(out_channels, **factory), requires_grad=trainable) if bias else None
        if init not in ("bilinear", "default", "zeros"):
            raise ValueError(f"init must be 'bilinear', 'default' or 'zeros', got {init!r}")
        self.init = init
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self):
        if self.init == "bilinear":
            if self.in_channels != self.out_channels:
                raise ValueError(
                    f"init='bilinear' needs in_channels == out_channels, got {self.in_channels} and {self.out_channels}"
                )
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
        r"""Upsample ``x``, crop at ``out_offset`` and add the window of ``skip`` at ``skip_offset``.

        Args:
            x (Tensor[N, Cin, H, W]): the input.
            skip (Tensor[N, Cout, Hs, Ws], optional): the map whose window is added. Default: None.
            out_size (int or Tuple[int, int], optional): (Ho, Wo); None: everything from ``out_offset`` to the
                end of the uncropped output. Default: None.

        Returns:
            Tensor[N, Cout, Ho, Wo]: in ``x``'s dtype.
        """
        geometry = dict(
            stride=self.stride, groups=self.groups, out_offset=self.out_offset, skip_offset=self.skip_offset
        )
        return upsample_skip(x, self.weight, self.bias, skip, out_size=out_size, backend=self.backend, **geometry)

    @classmethod
    def from_conv_transpose(cls, m: nn.ConvTranspose2d, **kw):
        r"""A FusedUpsampleSkip with the weight and bias of an ``nn.ConvTranspose2d``.

        The crop (``out_offset``, ``out_size``) replaces padding, output_padding and dilation, which must be
        the defaults. The weight and bias are copied; ``trainable`` defaults to ``m.weight.requires_grad``.

        Args:
            m (nn.ConvTranspose2d): padding 0, output_padding 0, dilation 1.
            **kw: other arguments of the constructor (``skip_offset``, ``out_offset``, ``trainable``,
                ``backend``).

        Returns:
            FusedUpsampleSkip: on ``m``'s device and dtype.

        Example::

            >>> import torch
            >>> from torch import nn
            >>> from fcn_kernels import FusedUpsampleSkip
            >>> m = nn.ConvTranspose2d(4, 4, 4, stride=2, groups=4, bias=False)
            >>> fused = FusedUpsampleSkip.from_conv_transpose(m, out_offset=1)
            >>> x = torch.randn(1, 4, 5, 5)
            >>> torch.allclose(fused(x, out_size=10), m(x)[:, :, 1:11, 1:11])
            True
        """
        if not isinstance(m, nn.ConvTranspose2d):
            raise TypeError(f"from_conv_transpose expects nn.ConvTranspose2d, got {type(m).__name__}")
        if tuple(m.padding) != (0, 0) or tuple(m.output_padding) != (0, 0) or tuple(m.dilation) != (1, 1):
            raise ValueError(
                f"from_conv_transpose: padding {m.padding}, output_padding {m.output_padding} "
                f"and dilation {m.dilation} must be 0, 0 and 1 (use out_offset/out_size to crop)"
            )
        kw.setdefault("trainable", m.weight.requires_grad)
        out = cls(
            m.in_channels,
            m.out_channels,
            m.kernel_size,
            m.stride,
            groups=m.groups,
            bias=m.bias is not None,
            init="zeros",
            device=m.weight.device,
            dtype=m.weight.dtype,
            **kw,
        )
        with torch.no_grad():
            out.weight.copy_(m.weight)
            if m.bias is not None:
                out.bias.copy_(m.bias)
        return out

    def extra_repr(self):
        s = (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
            f"groups={self.groups}, out_offset={self.out_offset}, skip_offset={self.skip_offset}"
        )
        if not self.weight.requires_grad:
            s += ", trainable=False"
        return s
