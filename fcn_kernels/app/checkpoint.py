"""Checkpoint files: written atomically, read without running code.

A training checkpoint is a dict of tensors, containers, numbers and strings only (it loads with
``torch.load(weights_only=True)``): format, version, model_config, model, optimizer, step, epoch,
pos (batches done in the epoch), elapsed (training seconds), world, rng (one state per rank),
config (every option of the run, for resuming), written_by ("train" or "demo") and class_names (the
training set's, for legends; empty when it has none)."""

from pathlib import Path

import torch
import torch.nn as nn

from .._io import atomic_write, load_weights
from ..errors import CLIError

FORMAT = "fcn-kernels-checkpoint"
VERSION = 2


def load_checkpoint(path) -> dict:
    """Any weights file (ours, a state_dict, torchvision's or torchfcn's), refusing anything that could run code."""
    path = Path(path)
    if not path.is_file():
        raise CLIError(f"checkpoint {str(path)!r} does not exist")
    try:
        return load_weights(path)
    except ValueError as exc:
        raise CLIError(str(exc)) from None


def is_own_checkpoint(ckpt) -> bool:
    return isinstance(ckpt, dict) and ckpt.get("format") == FORMAT


def load_own_checkpoint(path, hint: str = "") -> dict:
    """A checkpoint written by `fcn-kernels train` or `demo`; `hint` ends the error for any other file."""
    ckpt = load_checkpoint(path)
    if not is_own_checkpoint(ckpt):
        raise CLIError(
            f"{str(path)!r} is not an fcn-kernels checkpoint (one written by `fcn-kernels train`; no "
            f"'format' {FORMAT!r}){hint}"
        )
    return ckpt


def save_checkpoint(path, payload: dict) -> None:
    with atomic_write(path) as f:
        torch.save(payload, f)


def check_finite(model: nn.Module, step: int) -> None:
    """Refuse to save weights that are not finite (the checkpoint on disk stays the last good one)."""
    bad = [k for k, v in model.state_dict().items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise CLIError(
            f"weights are not finite at step {step} ({', '.join(bad[:3])}); not saved, the "
            "checkpoint on disk is the previous one (lower --lr?)"
        )


def check_architecture(ckpt_config: dict, requested: dict, path) -> None:
    """Error when the user asked (explicitly) for another architecture than the checkpoint's."""
    diffs = [
        f"{k}: checkpoint has {ckpt_config.get(k)!r}, asked for {v!r}"
        for k, v in requested.items()
        if ckpt_config.get(k) != v
    ]
    if diffs:
        desc = ", ".join(f"{k}={ckpt_config.get(k)}" for k in ("arch", "n_class", "width"))
        raise CLIError(f"checkpoint {str(path)!r} is of another architecture ({desc}): " + "; ".join(diffs))


def load_model_state(model: nn.Module, state_dict: dict, path) -> None:
    try:
        model.load_state_dict(state_dict, strict=True)
    except (RuntimeError, TypeError, AttributeError) as exc:
        first = str(exc).strip().splitlines()
        raise CLIError(
            f"checkpoint {str(path)!r} does not fit the model {type(model).__name__}: "
            + " ".join(line.strip() for line in first[:4])
        ) from None


def init_from(model: nn.Module, path) -> None:
    """Start from pretrained weights: torchvision VGG16 (fc layers convolutionalized) or a pytorch-fcn
    (torchfcn) checkpoint."""
    from .. import models

    sd = load_checkpoint(path)
    if isinstance(sd, dict) and "model_state_dict" in sd:
        sd = sd["model_state_dict"]
    if not isinstance(sd, dict):
        raise CLIError(f"{str(path)!r} does not hold a state_dict")
    try:
        if any(isinstance(k, str) and k.startswith("features.") for k in sd):
            models.load_vgg16(model, sd)
        else:
            models.load_torchfcn(model, sd)
    except (KeyError, ValueError, TypeError, RuntimeError) as exc:
        raise CLIError(f"cannot initialise from {str(path)!r}: {exc}") from None
