"""Loading weights people already have: torchvision's VGG16 and torchfcn (pytorch-fcn) checkpoints.

Nothing is downloaded: pass a path or a state_dict.
"""

import os

import torch
from torch import nn

from .._io import load_weights
from ..convolutionalize import convolutionalize
from .vgg import TORCHVISION_CONV_INDICES, conv_names


def _read(path_or_state_dict):
    if isinstance(path_or_state_dict, (str, bytes, os.PathLike)):
        return load_weights(path_or_state_dict)  # refuses (ValueError) anything that could run code
    if not isinstance(path_or_state_dict, dict):
        raise TypeError(f"expected a path or a state_dict, got {type(path_or_state_dict).__name__}")
    return path_or_state_dict


def _check(key, got, expected):
    if not isinstance(got, torch.Tensor):
        raise TypeError(f"{key}: expected a tensor, got {type(got).__name__}")
    if tuple(got.shape) != tuple(expected):
        raise ValueError(f"{key}: checkpoint has shape {tuple(got.shape)}, the model expects {tuple(expected)}")


def _require(sd, key, what):
    if key not in sd:
        raise KeyError(f"{key} is missing from the {what} state_dict")
    return sd[key]


@torch.no_grad()
def load_vgg16(model, state_dict):
    r"""Fill an FCN's trunk, fc6 and fc7 from torchvision's VGG16 weights.

    conv1_1 ... conv5_3 take ``features.N.weight/bias``; fc6 and fc7 take ``classifier.0`` and
    ``classifier.3`` convolutionalized (paper 3.1, :func:`fcn_kernels.convolutionalize`): classifier.0 reads
    pool5's flattened (512, 7, 7) map and becomes the 7 x 7 fc6. ``classifier.6`` (ImageNet's classifier) is
    ignored; the score and upsampling layers are left as they are. Nothing is downloaded. See
    docs/DESIGN.md §3.

    Args:
        model (FCN32s, FCN16s, FCN8s or FCN8sAtOnce): the model to fill, of the checkpoint's width.
        state_dict (dict or str or os.PathLike): torchvision's ``vgg16().state_dict()``, or a path to one
            (loaded with ``weights_only=True``).

    Returns:
        nn.Module: ``model``, filled in place.

    Raises:
        KeyError: a key is missing. ValueError: a tensor's shape does not match the model's (both named).

    Example::

        >>> import torch
        >>> from fcn_kernels.models import FCN8s, load_vgg16
        >>> from fcn_kernels.models.vgg import TORCHVISION_CONV_INDICES, conv_names
        >>> model = FCN8s(n_class=21, width=1 / 16)
        >>> # A torchvision VGG16 state_dict of this width (with torchvision: vgg16(weights=...).state_dict()):
        >>> sd = {f"features.{i}.{p}": torch.ones_like(getattr(getattr(model, name), p))
        ...       for name, i in zip(conv_names(), TORCHVISION_CONV_INDICES) for p in ("weight", "bias")}
        >>> sd |= {"classifier.0.weight": torch.ones(256, 32 * 7 * 7), "classifier.0.bias": torch.ones(256),
        ...        "classifier.3.weight": torch.ones(256, 256), "classifier.3.bias": torch.ones(256)}
        >>> load_vgg16(model, sd) is model
        True
        >>> model.fc6.weight.shape                            # classifier.0 as a 7 x 7 convolution
        torch.Size([256, 32, 7, 7])
    """
    sd = _read(state_dict)
    new = {}
    for name, idx in zip(conv_names(), TORCHVISION_CONV_INDICES):
        conv = getattr(model, name)
        for p in ("weight", "bias"):
            key = f"features.{idx}.{p}"
            t = _require(sd, key, "torchvision VGG16")
            _check(f"{key} (-> {name}.{p})", t, getattr(conv, p).shape)
            new[f"{name}.{p}"] = t
    for key, name in (("classifier.0", "fc6"), ("classifier.3", "fc7")):
        conv = getattr(model, name)
        w, b = _require(sd, f"{key}.weight", "torchvision VGG16"), _require(sd, f"{key}.bias", "torchvision VGG16")
        c, h, k = conv.in_channels, *conv.kernel_size
        _check(f"{key}.weight (-> {name}.weight)", w, (conv.out_channels, c * h * k))
        _check(f"{key}.bias (-> {name}.bias)", b, (conv.out_channels,))
        linear = nn.Linear(w.shape[1], w.shape[0], device="meta")
        linear.weight, linear.bias = nn.Parameter(w, requires_grad=False), nn.Parameter(b, requires_grad=False)
        fc = convolutionalize(linear, (c, h, k))
        new[f"{name}.weight"], new[f"{name}.bias"] = fc.weight, fc.bias
    params = dict(model.named_parameters())
    for key, t in new.items():
        params[key].copy_(t)
    return model


def _is_diagonal(w):
    n = w.shape[0]
    off = ~torch.eye(n, dtype=torch.bool, device=w.device)
    return bool((w[off] == 0).all())


@torch.no_grad()
def load_torchfcn(model, path_or_state_dict):
    r"""Load a torchfcn (pytorch-fcn) checkpoint into the matching model.

    torchfcn's upsampling weights are dense (C, C, K, K); an exactly diagonal one becomes the fused model's
    depthwise (C, 1, K, K) weight, any other stays dense (that layer runs with groups=1), so the model
    gives the checkpoint's outputs. Depthwise (C, 1, K, K) weights are taken as they are. See docs/DESIGN.md
    §3.

    Args:
        model (FCN32s, FCN16s, FCN8s or FCN8sAtOnce): the architecture the checkpoint was trained as.
        path_or_state_dict (dict or str or os.PathLike): a state_dict, or torchfcn's trainer checkpoint
            holding one as ``model_state_dict`` (a ``module.`` prefix from DataParallel is dropped), or a
            path to either (loaded with ``weights_only=True``).

    Returns:
        nn.Module: ``model``, filled in place.

    Raises:
        KeyError: missing or unexpected keys. ValueError: a shape mismatch (the key and shapes named).

    Example::

        >>> from fcn_kernels import bilinear_kernel
        >>> from fcn_kernels.models import FCN32s, load_torchfcn
        >>> sd = FCN32s(n_class=21, width=1 / 16).state_dict()
        >>> sd["upscore.weight"] = bilinear_kernel(21, 64)     # torchfcn's dense (21, 21, 64, 64)
        >>> model = load_torchfcn(FCN32s(n_class=21, width=1 / 16), sd)
        >>> model.upscore.groups, tuple(model.upscore.weight.shape)   # the diagonal weight made depthwise
        (21, (21, 1, 64, 64))
    """
    sd = _read(path_or_state_dict)
    if "model_state_dict" in sd and isinstance(sd["model_state_dict"], dict):
        sd = sd["model_state_dict"]
    if sd and all(k.startswith("module.") for k in sd):
        sd = {k[len("module.") :]: v for k, v in sd.items()}
    expected = model.state_dict()
    missing = [k for k in expected if k not in sd]
    unexpected = [k for k in sd if k not in expected]
    if missing or unexpected:
        raise KeyError(
            f"checkpoint does not match {type(model).__name__}: missing keys {missing}, unexpected keys {unexpected}"
        )
    upscore = {f"{name}.weight": name for name in model.upscore_names()}
    rest = {}
    for key, t in sd.items():
        if key in upscore:
            n, k = model.n_class, tuple(getattr(model, upscore[key]).kernel_size)
            if not isinstance(t, torch.Tensor) or tuple(t.shape) not in ((n, 1) + k, (n, n) + k):
                shape = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
                raise ValueError(
                    f"{key}: checkpoint has shape {shape}, the model expects "
                    f"({n}, {n}, {k[0]}, {k[1]}) (dense) or ({n}, 1, {k[0]}, {k[1]}) (depthwise)"
                )
            if t.shape[1] == n and n > 1 and _is_diagonal(t):
                idx = torch.arange(n, device=t.device)
                t = t[idx, idx].unsqueeze(1)  # (C, 1, K, K)
            model.set_upscore_weight(upscore[key], t)
        else:
            _check(key, t, expected[key].shape)
            rest[key] = t
    state = model.state_dict()
    for key, t in rest.items():
        state[key].copy_(t)
    return model
