"""RarefiedConv2d (drop-in for a dilated nn.Conv2d) and the rarefied pools that `rarefy` builds."""

import math

import torch
import torch.nn.functional as F
from torch import nn

from .._args import check_int, pair
from ..ops.rarefied_conv2d import rarefied_conv2d
from ._conv import init_conv


class RarefiedConv2d(nn.Module):
    r"""Convolution with the paper's rarefied filter (:func:`fcn_kernels.rarefied_conv2d`).

    A drop-in for ``nn.Conv2d(..., dilation=rarefaction, padding=padding)``: ``weight`` and ``bias`` have its
    names, layout and default initialisation, so state_dicts are interchangeable. ``stride`` is always 1 and
    ``dilation`` is ``rarefaction`` (read-only aliases, for code that inspects conv layers). See
    docs/DESIGN.md §3.

    Args:
        in_channels (int): Cin.
        out_channels (int): Cout.
        kernel_size (int or Tuple[int, int]): (Kh, Kw).
        rarefaction (int or Tuple[int, int]): the distance between the filter's taps. Default: 1.
        padding (int or Tuple[int, int]): zeros added on both sides of each spatial axis. Default: 0.
        groups (int): as in ``nn.Conv2d``. Default: 1.
        bias (bool): whether to add a learnable bias. Default: True.
        backend (str, optional): as in :func:`fcn_kernels.rarefied_conv2d`. Default: None.
        device, dtype: of the parameters. Default: None.

    Example::

        >>> import torch
        >>> from fcn_kernels import RarefiedConv2d
        >>> conv = RarefiedConv2d(8, 16, 3, rarefaction=2, padding=2)
        >>> conv(torch.randn(1, 8, 20, 20)).shape
        torch.Size([1, 16, 20, 20])
        >>> sorted(conv.state_dict())                         # nn.Conv2d's keys
        ['bias', 'weight']
    """

    def __init__(
        self,
        in_channels,
        out_channels,
        kernel_size,
        rarefaction=1,
        padding=0,
        groups=1,
        bias=True,
        *,
        backend=None,
        device=None,
        dtype=None,
    ):
        super().__init__()
        factory = init_conv(self, in_channels, out_channels, groups, kernel_size, backend, device, dtype)
        self.rarefaction = pair(rarefaction, "rarefaction", minimum=1)
        self.padding = pair(padding, "padding", minimum=0)
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels // groups, *self.kernel_size, **factory))
        self.bias = nn.Parameter(torch.empty(out_channels, **factory)) if bias else None
        self.reset_parameters()

    @property
    def stride(self):
        return (1, 1)

    @property
    def dilation(self):
        return self.rarefaction

    @torch.no_grad()
    def reset_parameters(self):
        # nn.Conv2d's default initialisation.
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in = self.weight.shape[1] * self.kernel_size[0] * self.kernel_size[1]
            bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0
            nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x):
        r"""The rarefied convolution of ``x``.

        Args:
            x (Tensor[N, Cin, H, W]): the input.

        Returns:
            Tensor[N, Cout, Ho, Wo]: ``Ho = H + 2 * ph - (Kh - 1) * rh`` (``Wo`` alike), in ``x``'s dtype.
        """
        return rarefied_conv2d(
            x,
            self.weight,
            self.bias,
            rarefaction=self.rarefaction,
            padding=self.padding,
            groups=self.groups,
            backend=self.backend,
        )

    @classmethod
    def from_conv(cls, m: nn.Conv2d, rarefaction=1, *, drop_stride=False, backend=None):
        r"""A RarefiedConv2d with the weight and bias of an ``nn.Conv2d``, rarefied by ``rarefaction``.

        Dilation becomes ``m.dilation * rarefaction`` and padding ``m.padding * rarefaction``: the layer as it
        acts on a map upsampled by ``rarefaction``. With ``rarefaction=1`` it computes exactly ``m``. Weight
        and bias are copied, with their requires_grad, and the training mode is kept.

        Args:
            m (nn.Conv2d): stride 1 (unless ``drop_stride``), padding_mode ``"zeros"``; ``padding="same"``
                needs an even total padding ``dilation * (kernel - 1)`` on each axis.
            rarefaction (int or Tuple[int, int]): the factor on dilation and padding. Default: 1.
            drop_stride (bool): accept a strided ``m`` and drop its stride (what :func:`fcn_kernels.rarefy`
                does: the stride moves into the rarefaction of the later layers). Default: False.
            backend (str, optional): as in :func:`fcn_kernels.rarefied_conv2d`. Default: None.

        Returns:
            RarefiedConv2d: on ``m``'s device and dtype.

        Example::

            >>> import torch
            >>> from torch import nn
            >>> from fcn_kernels import RarefiedConv2d
            >>> m = nn.Conv2d(4, 4, 3, padding=1)
            >>> RarefiedConv2d.from_conv(m, 2)
            RarefiedConv2d(4, 4, kernel_size=(3, 3), rarefaction=(2, 2), padding=(2, 2))
            >>> x = torch.randn(1, 4, 9, 9)
            >>> torch.allclose(RarefiedConv2d.from_conv(m)(x), m(x), atol=1e-6)
            True
        """
        if not isinstance(m, nn.Conv2d):
            raise TypeError(f"from_conv expects nn.Conv2d, got {type(m).__name__}")
        if m.padding_mode != "zeros":
            raise ValueError(f"from_conv: padding_mode {m.padding_mode!r} is not supported (only 'zeros')")
        if tuple(m.stride) != (1, 1) and not drop_stride:
            raise ValueError(
                f"from_conv: the conv has stride {tuple(m.stride)}; a RarefiedConv2d has stride 1 "
                f"(pass drop_stride=True to rarefy the later layers instead, as rarefy() does)"
            )
        rarefaction = pair(rarefaction, "rarefaction", minimum=1)
        dilation = tuple(m.dilation)
        if isinstance(m.padding, str):
            if m.padding == "valid":
                padding = (0, 0)
            else:  # "same" (nn.Conv2d allows it only with stride 1)
                total = [d * (k - 1) for d, k in zip(dilation, m.kernel_size)]
                if any(t % 2 for t in total):
                    raise ValueError(
                        f"from_conv: padding='same' with kernel {m.kernel_size} and dilation "
                        f"{dilation} pads asymmetrically, which RarefiedConv2d cannot express"
                    )
                padding = (total[0] // 2, total[1] // 2)
        else:
            padding = tuple(m.padding)
        out = cls(
            m.in_channels,
            m.out_channels,
            m.kernel_size,
            rarefaction=(dilation[0] * rarefaction[0], dilation[1] * rarefaction[1]),
            padding=(padding[0] * rarefaction[0], padding[1] * rarefaction[1]),
            groups=m.groups,
            bias=m.bias is not None,
            backend=backend,
            device=m.weight.device,
            dtype=m.weight.dtype,
        )
        with torch.no_grad():
            out.weight.copy_(m.weight)
            out.weight.requires_grad_(m.weight.requires_grad)
            if m.bias is not None:
                out.bias.copy_(m.bias)
                out.bias.requires_grad_(m.bias.requires_grad)
        out.train(m.training)
        return out

    def extra_repr(self):
        s = (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"rarefaction={self.rarefaction}, padding={self.padding}"
        )
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        return s


class RarefiedMaxPool2d(nn.Module):
    """Stride-1 max pool over the rarefied window: taps at multiples of `rarefaction`, `padding` of -inf.
    (nn.MaxPool2d has dilation but rejects padding above half the kernel, which rarefied padding needs.)"""

    def __init__(self, kernel_size, rarefaction=1, padding=0):
        super().__init__()
        self.kernel_size = pair(kernel_size, "kernel_size", minimum=1)
        self.rarefaction = pair(rarefaction, "rarefaction", minimum=1)
        self.padding = pair(padding, "padding", minimum=0)

    def forward(self, x):
        ph, pw = self.padding
        if ph or pw:
            x = F.pad(x, (pw, pw, ph, ph), value=-math.inf)
        return F.max_pool2d(x, self.kernel_size, stride=1, dilation=self.rarefaction)

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, rarefaction={self.rarefaction}, padding={self.padding}"


class RarefiedAvgPool2d(nn.Module):
    """Stride-1 average pool over the rarefied window (PyTorch's avg pool has no dilation), computed as
    a depthwise rarefied_conv2d with all-ones taps, then one division, as avg_pool2d divides its sum:
      * count_include_pad=True: by kH * kW (padded taps count, as in nn.AvgPool2d);
      * count_include_pad=False: by the number of taps that land inside the input;
      * divisor_override: by that number.
    """

    def __init__(
        self, kernel_size, rarefaction=1, padding=0, count_include_pad=True, divisor_override=None, *, backend=None
    ):
        super().__init__()
        self.kernel_size = pair(kernel_size, "kernel_size", minimum=1)
        self.rarefaction = pair(rarefaction, "rarefaction", minimum=1)
        self.padding = pair(padding, "padding", minimum=0)
        self.count_include_pad = bool(count_include_pad)
        self.divisor_override = (
            None if divisor_override is None else check_int(divisor_override, "divisor_override", minimum=1)
        )
        self.backend = backend

    def _tap_counts(self, size, ax, device):
        k, r, p = self.kernel_size[ax], self.rarefaction[ax], self.padding[ax]
        out = size + 2 * p - (k - 1) * r
        idx = torch.arange(out, device=device)[:, None] - p + torch.arange(k, device=device)[None, :] * r
        return ((idx >= 0) & (idx < size)).sum(1)

    def forward(self, x):
        c = x.shape[1]
        ones = x.new_ones(c, 1, *self.kernel_size)
        s = rarefied_conv2d(
            x, ones, None, rarefaction=self.rarefaction, padding=self.padding, groups=c, backend=self.backend
        )
        if self.divisor_override is not None:
            return s / self.divisor_override
        if self.count_include_pad:
            return s / (self.kernel_size[0] * self.kernel_size[1])
        rows = self._tap_counts(x.shape[2], 0, x.device)
        cols = self._tap_counts(x.shape[3], 1, x.device)
        return s / (rows[:, None] * cols[None, :]).to(s.dtype)

    def extra_repr(self):
        return (
            f"kernel_size={self.kernel_size}, rarefaction={self.rarefaction}, padding={self.padding}, "
            f"count_include_pad={self.count_include_pad}, divisor_override={self.divisor_override}"
        )
