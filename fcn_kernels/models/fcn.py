"""FCN-32s, FCN-16s, FCN-8s and FCN-8s at-once on VGG16 (Long, Shelhamer, Darrell; docs/DESIGN.md §3).

The layers and their names are those of the Caffe reference and of torchfcn, so their state_dicts map
one to one. The head (upsampling, skip additions, crops) runs, with fused=True, as one
FusedUpsampleSkip call per upsampling: transposed convolution, crop and skip addition in one pass;
with fused=False as the stock composition on the same parameters (nn.ConvTranspose2d with the same
weights and groups, slice, add). `predict` and `loss` end, when fused, in upsample_argmax and
upsample_cross_entropy, which take the last upsampling's input, never the full-resolution scores. The crop
offsets are derived from the layers (coord.py), not written in.
"""

import torch
from torch import nn

from ..losses import pixelwise_cross_entropy
from ..modules.upsample import FusedUpsampleSkip, bilinear_kernel
from ..ops.upsample_argmax import upsample_argmax
from ..ops.upsample_cross_entropy import check_target, upsample_cross_entropy
from . import coord, margin
from .vgg import VGG16_STAGES, scaled, vgg16_layers


class _FCN(nn.Module):
    """Base: subclasses set STAGES, ((upscore name, kernel, stride, skip tap or None), ...), the last
    one upsampling to the input, and SKIP_SCALE, the factor on a tap before its score layer."""

    STAGES = ()
    SKIP_SCALE = {}
    # conv1_1's padded margin computed once (margin.py); optimize_for_inference turns it on. A class
    # attribute: a model pickled before it existed has none of its own.
    _trim_margin = False

    def __init__(
        self,
        n_class: int = 21,
        fused: bool = True,
        *,
        width: float = 1.0,
        padding: int = 100,
        in_channels: int = 3,
        dropout: float = 0.5,
    ):
        super().__init__()
        self.n_class = int(n_class)
        self.fused = bool(fused)
        self.width = width
        layers = vgg16_layers(width, in_channels=in_channels, padding=padding, dropout=dropout)
        self._trunk = tuple(layers)
        for name, m in layers.items():
            self.add_module(name, m)
        self._taps = tuple(tap for _, _, _, tap in self.STAGES if tap is not None)
        self.score_fr = nn.Conv2d(self.fc7.out_channels, n_class, 1)
        tap_channels = {f"pool{stage}": scaled(c, width) for stage, _, c in VGG16_STAGES}
        for tap in self._taps:
            self.add_module(f"score_{tap}", nn.Conv2d(tap_channels[tap], n_class, 1))
        for name, kernel, stride, _ in self.STAGES:
            self.add_module(
                name, self._make_upscore(kernel, stride, bilinear_kernel(n_class, kernel, n_class), trainable=False)
            )
        self.reset_score_layers()
        self.update_offsets()

    # ---- construction -------------------------------------------------------------------------
    @torch.no_grad()
    def reset_score_layers(self):
        """Zero the score layers (the reference initialisation)."""
        for name in self.score_layer_names():
            getattr(self, name).weight.zero_()
            getattr(self, name).bias.zero_()

    def score_layer_names(self):
        return ("score_fr",) + tuple(f"score_{tap}" for tap in self._taps)

    def upscore_names(self):
        return tuple(name for name, _, _, _ in self.STAGES)

    def _make_upscore(self, kernel, stride, weight, trainable):
        """A fixed upsampling layer with `weight` ((C, C // groups, K, K); groups from its shape)."""
        n = self.n_class
        groups = n // weight.shape[1]
        if self.fused:
            m = FusedUpsampleSkip(
                n,
                n,
                kernel,
                stride,
                groups=groups,
                bias=False,
                init="zeros",
                trainable=trainable,
                device=weight.device,
                dtype=weight.dtype,
            )
        else:
            m = nn.ConvTranspose2d(
                n, n, kernel, stride=stride, groups=groups, bias=False, device=weight.device, dtype=weight.dtype
            )
            m.weight.requires_grad_(trainable)
        with torch.no_grad():
            m.weight.copy_(weight)
        return m

    def set_upscore_weight(self, name: str, weight: torch.Tensor):
        """Replace the weight of upsampling layer `name`: (C, 1, K, K) makes it depthwise, (C, C, K, K) dense
        (groups=1). The layer keeps its kind (fused or stock) and trainability."""
        old = getattr(self, name)
        n, k = self.n_class, tuple(old.kernel_size)
        if tuple(weight.shape) not in ((n, 1) + k, (n, n) + k):
            raise ValueError(
                f"{name}.weight: expected ({n}, 1, {k[0]}, {k[1]}) or ({n}, {n}, {k[0]}, {k[1]}), "
                f"got {tuple(weight.shape)}"
            )
        new = self._make_upscore(
            k,
            tuple(old.stride),
            weight.to(device=old.weight.device, dtype=old.weight.dtype),
            trainable=old.weight.requires_grad,
        )
        setattr(self, name, new)
        self.update_offsets()

    # ---- geometry -----------------------------------------------------------------------------
    def trunk_coord_maps(self):
        """Coordinate maps (blob -> input) of the taps and of score_fr's output."""
        maps, m = {}, coord.CoordMap.identity()
        for name in self._trunk:
            m = m.then(coord.layer_map(getattr(self, name)))
            if name in self._taps:
                maps[name] = m.through(getattr(self, f"score_{name}"))
        maps["score_fr"] = m.through(self.score_fr)
        return maps

    def update_offsets(self):
        """Derive every crop from the layer geometry and set it on the head; returns `self.offsets`,
        {tap: (rows, cols) skip offset, ..., "output": (rows, cols) offset of the final crop}."""
        maps = self.trunk_coord_maps()
        m, offsets = maps["score_fr"], {}
        for name, _, _, tap in self.STAGES:
            layer = getattr(self, name)
            m = m.then(coord.deconv_map(layer.kernel_size, layer.stride))  # the uncropped upsampling
            if tap is not None:
                offsets[tap] = coord.crop_offset(maps[tap], m)
        offsets["output"] = coord.crop_offset(m, coord.CoordMap.identity())
        self.offsets = offsets
        if self.fused:
            for name, _, _, tap in self.STAGES:
                layer = getattr(self, name)
                if tap is not None:
                    layer.skip_offset = offsets[tap]
                else:
                    layer.out_offset = offsets["output"]
        return offsets

    # ---- forward ------------------------------------------------------------------------------
    def scores(self, x):
        """The trunk and score layers: (score_fr, score_<tap>, ...) before any crop."""
        taps = {}
        p = margin.plan(self, tuple(x.shape)) if self._trim_margin else None
        h = x
        for i, name in enumerate(self._trunk):
            h = margin.step(self, i, name, h, p)
            if name in self._taps:
                taps[name] = h
        out = [self.score_fr(h)]
        for tap in self._taps:
            t = taps[tap]
            scale = self.SKIP_SCALE.get(tap)
            if scale is not None:
                t = t * scale
            out.append(getattr(self, f"score_{tap}")(t))
        return tuple(out)

    def coarse_head(self, score_fr, *skips):
        """Every stage of the head but the last (upsampling with its skip addition): the input of the
        last upsampling."""
        h = score_fr
        for i, (name, _, _, tap) in enumerate(self.STAGES[:-1]):
            layer = getattr(self, name)
            if self.fused:
                h = layer(h, skip=skips[i])
            else:
                y = layer(h)
                sy, sx = self.offsets[tap]
                h = y + skips[i][:, :, sy : sy + y.shape[2], sx : sx + y.shape[3]]
        return h

    def head(self, score_fr, *skips, out_size):
        """Upsampling, skip additions and crops, from `scores`' outputs to an `out_size` map."""
        h = self.coarse_head(score_fr, *skips)
        last = getattr(self, self.STAGES[-1][0])
        if self.fused:
            return last(h, out_size=out_size)
        oy, ox = self.offsets["output"]
        return last(h)[:, :, oy : oy + out_size[0], ox : ox + out_size[1]].contiguous()

    def forward(self, x):
        r"""Class scores at the input's resolution.

        Args:
            x (Tensor[N, in_channels, H, W]): the images, any H, W >= 1.

        Returns:
            Tensor[N, n_class, H, W]: the scores, in the parameters' dtype.
        """
        return self.head(*self.scores(x), out_size=(x.shape[2], x.shape[3]))

    @torch.no_grad()
    def predict(self, images):
        r"""Per-pixel labels: ``forward(images).argmax(1)``, in eval mode, without gradients.

        With ``fused=True`` the last stage is :func:`fcn_kernels.upsample_argmax`, so the (N, n_class, H, W)
        scores are never built; the labels then equal ``forward(images).argmax(1)`` except at exact ties of
        the rounded scores (docs/DESIGN.md §2.2). With ``fused=False`` it is the stock composition, then
        argmax. Dropout is off during the call; the module's training mode is restored after it.

        Args:
            images (Tensor[N, in_channels, H, W]): the images.

        Returns:
            Tensor[N, H, W]: int64 class indices in [0, n_class).

        Example::

            >>> import torch
            >>> from fcn_kernels.models import FCN8s
            >>> model = FCN8s(n_class=21, width=1 / 16)
            >>> labels = model.predict(torch.randn(2, 3, 32, 48))
            >>> labels.shape, labels.dtype
            (torch.Size([2, 32, 48]), torch.int64)
            >>> model.training                                # the mode is restored
            True
        """
        was_training = self.training
        self.eval()
        try:
            return self.head_labels(*self.scores(images), out_size=(images.shape[2], images.shape[3]))
        finally:
            self.train(was_training)

    def head_labels(self, score_fr, *skips, out_size):
        """`predict`'s head: labels from `scores`' outputs (fused: upsample_argmax, no full-resolution
        scores); optimize_for_inference's vendor engines run it on the engine's `scores`."""
        h = self.coarse_head(score_fr, *skips)
        if self.fused:
            return self._fused_last_stage(upsample_argmax, h, out_size=out_size)
        oy, ox = self.offsets["output"]
        last = getattr(self, self.STAGES[-1][0])
        return last(h)[:, :, oy : oy + out_size[0], ox : ox + out_size[1]].argmax(1)

    def loss(
        self,
        images,
        target,
        *,
        class_weight=None,
        ignore_index=255,
        sample_p=1.0,
        generator=None,
        reduction="mean",
    ):
        r"""The pixelwise loss of the images' scores: ``pixelwise_cross_entropy(model(images), target, ...)``.

        Equal to it in value and in the gradient of every parameter. With ``fused=True`` the last stage
        (the last upsampling, its crop, and the loss) is :func:`fcn_kernels.upsample_cross_entropy` on that
        upsampling's input, so the (N, n_class, H, W) scores are never built, forward or backward; with
        ``fused=False`` it is the stock composition. The model's mode is the caller's (dropout in training
        mode). See docs/DESIGN.md §3.

        Args:
            images (Tensor[N, in_channels, H, W]): the images.
            target (Tensor[N, H, W]): integer labels in [0, n_class), or ``ignore_index``.
            class_weight (Tensor[n_class], optional): per-class weights. Default: None (ones).
            ignore_index (int): the label of pixels that do not count. Default: 255.
            sample_p (float): in (0, 1], the probability to keep each pixel's term (kept terms are divided by
                it); the kept pixels are those ``pixelwise_cross_entropy`` keeps with the same generator
                state. Default: 1.0.
            generator (torch.Generator, optional): drives the sampling, on the images' device. Default: None.
            reduction (str): ``"mean"`` (over the non-ignored pixels), ``"sum"`` or ``"none"``. Default:
                ``"mean"``.

        Returns:
            Tensor: a scalar for ``"mean"`` and ``"sum"``; Tensor[N, H, W] of the terms for ``"none"``.
            float32, or float64 for a float64 model.

        Raises:
            ValueError, TypeError: a target that is not (N, H, W) integer labels of the images' batch and size,
            a label outside [0, n_class) other than ``ignore_index``, or a bad option.

        Example::

            >>> import torch
            >>> from fcn_kernels.losses import pixelwise_cross_entropy
            >>> from fcn_kernels.models import FCN8s
            >>> model = FCN8s(n_class=4, width=1 / 16)
            >>> images, target = torch.randn(2, 3, 32, 48), torch.randint(0, 4, (2, 32, 48))
            >>> loss = model.loss(images, target)             # fused: no (2, 4, 32, 48) scores
            >>> round(loss.item(), 4)                         # zero score layers: log(4) a pixel
            1.3863
            >>> loss.backward()
            >>> model.eval().loss(images, target, reduction="sum").shape
            torch.Size([])
        """
        check_target(target, images, of_x="the images'")
        if target.shape[1:] != images.shape[2:]:
            raise ValueError(
                f"target must have the images' size (N, H, W) = {(images.shape[0], *images.shape[2:])}, "
                f"got {tuple(target.shape)}"
            )
        options = dict(ignore_index=ignore_index, sample_p=sample_p, generator=generator, reduction=reduction)
        if not self.fused:
            return pixelwise_cross_entropy(self(images), target, class_weight, **options)
        h = self.coarse_head(*self.scores(images))
        return self._fused_last_stage(upsample_cross_entropy, h, target, class_weight=class_weight, **options)

    def _fused_last_stage(self, op, h, *args, **kwargs):
        """`op` (upsample_argmax or upsample_cross_entropy) as the last upsampling, from its input `h`."""
        last = getattr(self, self.STAGES[-1][0])
        geometry = dict(stride=last.stride, groups=last.groups, out_offset=last.out_offset, backend=last.backend)
        return op(h, *args, last.weight, last.bias, **geometry, **kwargs)

    def extra_repr(self):
        return f"n_class={self.n_class}, fused={self.fused}, width={self.width}, offsets={self.offsets}"


class FCN32s(_FCN):
    r"""FCN-32s: VGG16's score_fr upsampled by 32 (kernel 64) and cropped to the input.

    The paper's single-stream net; ``upscore`` is fixed bilinear upsampling. See docs/DESIGN.md §3.

    Args:
        n_class, fused, width, padding, in_channels, dropout: as in :class:`FCN8s`.

    Example::

        >>> import torch
        >>> from fcn_kernels.models import FCN32s
        >>> model = FCN32s(n_class=21, width=1 / 16)
        >>> model.offsets                                     # derived from the layers, as Caffe's crop
        {'output': (19, 19)}
        >>> model(torch.randn(1, 3, 32, 32)).shape
        torch.Size([1, 21, 32, 32])
    """

    STAGES = (("upscore", 64, 32, None),)


class FCN16s(_FCN):
    r"""FCN-16s: score_fr upsampled by 2 plus score_pool4, then by 16 (kernel 32), cropped to the input.

    See docs/DESIGN.md §3.

    Args:
        n_class, fused, width, padding, in_channels, dropout: as in :class:`FCN8s`.

    Example::

        >>> from fcn_kernels.models import FCN16s
        >>> FCN16s(n_class=21, width=1 / 16).offsets
        {'pool4': (5, 5), 'output': (27, 27)}
    """

    STAGES = (("upscore2", 4, 2, "pool4"), ("upscore16", 32, 16, None))


class FCN8s(_FCN):
    r"""FCN-8s on VGG16 (Long, Shelhamer, Darrell): the paper's best net.

    score_fr upsampled by 2 plus score_pool4, by 2 again plus score_pool3, then by 8 (kernel 16) and cropped
    to the input. The trunk is VGG16 with conv1_1 padded by 100, ceil-mode pools, fc6 7 x 7 and fc7 1 x 1
    (convolutionalized); score layers start at zero, the upsampling is fixed bilinear and depthwise. Layer
    names are Caffe's and torchfcn's. Every crop offset is derived from the layers. See docs/DESIGN.md §3.

    Args:
        n_class (int): the number of classes (VOC: 21). Default: 21.
        fused (bool): True: each upsampling, skip addition and crop is one :class:`FusedUpsampleSkip`, and
            :meth:`predict` and :meth:`loss` end in :func:`~fcn_kernels.upsample_argmax` and
            :func:`~fcn_kernels.upsample_cross_entropy`; False: the stock composition (``nn.ConvTranspose2d``,
            slice, add) on the same parameters. Default: True.
        width (float): the trunk's channels times ``width`` (at least 1 each); 1 is VGG16. Default: 1.0.
        padding (int): conv1_1's padding. Default: 100.
        in_channels (int): the images' channels. Default: 3.
        dropout (float): drop6's and drop7's probability. Default: 0.5.

    Example::

        >>> import torch
        >>> from fcn_kernels.models import FCN8s
        >>> model = FCN8s(n_class=21, width=1 / 16).eval()    # width 1 is VGG16 (134M parameters)
        >>> model(torch.randn(1, 3, 40, 30)).shape            # any input size
        torch.Size([1, 21, 40, 30])
        >>> model.offsets
        {'pool4': (5, 5), 'pool3': (9, 9), 'output': (31, 31)}
    """

    STAGES = (("upscore2", 4, 2, "pool4"), ("upscore_pool4", 4, 2, "pool3"), ("upscore8", 16, 8, None))


class FCN8sAtOnce(FCN8s):
    r"""FCN-8s trained all at once: pool4 scaled by 0.01 and pool3 by 0.0001 before their score layers.

    The paper's "at-once" variant (instead of the staged 32s, 16s, 8s training). See docs/DESIGN.md §3.

    Args:
        n_class, fused, width, padding, in_channels, dropout: as in :class:`FCN8s`.

    Example::

        >>> from fcn_kernels.models import FCN8sAtOnce
        >>> FCN8sAtOnce(n_class=21, width=1 / 16).SKIP_SCALE
        {'pool4': 0.01, 'pool3': 0.0001}
    """

    SKIP_SCALE = {"pool4": 0.01, "pool3": 0.0001}
