"""Models, data sets and data loaders from a config."""

import hashlib

import torch
import torch.nn as nn

from ..data import SyntheticShapes, VOCSegmentation, pad_collate
from ..errors import CLIError, DataError
from .config import ARCHS


def model_config(cfg) -> dict:
    """What a checkpoint needs to rebuild the model."""
    return {"arch": cfg.model, "n_class": cfg.n_class, "width": cfg.width, "dropout": getattr(cfg, "dropout", 0.5)}


def build_model(config: dict, fused: bool = True) -> nn.Module:
    """A model from a model config {arch, n_class, width, dropout} (a checkpoint's model_config)."""
    from .. import models

    classes = {
        "fcn32s": models.FCN32s,
        "fcn16s": models.FCN16s,
        "fcn8s": models.FCN8s,
        "fcn8s-atonce": models.FCN8sAtOnce,
    }
    arch = config["arch"]
    if arch not in classes:
        raise CLIError(f"unknown model {arch!r}; choose one of {', '.join(ARCHS)}")
    try:
        return classes[arch](
            n_class=config["n_class"], fused=fused, width=config["width"], dropout=config.get("dropout", 0.5)
        )
    except ValueError as exc:
        raise CLIError(f"cannot build {arch}: {exc}") from None


@torch.no_grad()
def kaiming_init(model: nn.Module) -> None:
    """He initialisation of the trunk (conv1_1 ... fc7) for training from scratch; the score
    layers stay zero and the upsampling bilinear, as in the reference."""
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d) and (name.startswith("conv") or name in ("fc6", "fc7")):
            nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            if m.bias is not None:
                m.bias.zero_()


def weight_digest(model: nn.Module) -> str:
    """SHA-256 of the parameters' bytes (in state_dict order): equal iff bitwise equal."""
    h = hashlib.sha256()
    for k, v in model.state_dict().items():
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes() if v.numel() else b"")
    return h.hexdigest()


def build_dataset(cfg, split: str, train: bool):
    """The synthetic set (``--data synthetic``) or a VOC-format directory."""
    if cfg.data == "synthetic":
        return SyntheticShapes(
            length=cfg.train_size if train else cfg.val_size,
            size=cfg.image_size,
            n_class=cfg.n_class,
            seed=cfg.data_seed,
            split=split,
            max_shapes=cfg.max_shapes,
            preprocess=cfg.preprocess,
            flip=train and cfg.flip,
        )
    return VOCSegmentation(
        cfg.data,
        split=split,
        n_class=cfg.n_class,
        preprocess=cfg.preprocess,
        flip=train and cfg.flip,
        seed=getattr(cfg, "seed", 0),
    )


def epoch_batches(n_items: int, batch_size: int, dist, seed: int, epoch: int):
    """This rank's batches (lists of indices) of an epoch: DistributedSampler's permutation for (seed,
    epoch), rank r taking every W-th index, so the union of the ranks' k-th batches is the
    single-process k-th batch."""
    from torch.utils.data import DistributedSampler

    local = batch_size // dist.world
    sampler = DistributedSampler(
        range(n_items), num_replicas=dist.world, rank=dist.rank, shuffle=True, seed=seed, drop_last=True
    )
    sampler.set_epoch(epoch)
    idx = list(sampler)
    return [idx[i * local : (i + 1) * local] for i in range(len(idx) // local)]


def batches(ds, batch_indices, num_workers: int):
    """Iterate (images, labels) batches. A DataError raised in a worker process comes back as the same
    one-line DataError (the DataLoader wraps it in a message holding the worker's traceback)."""
    from torch.utils.data import DataLoader

    # its own generator: creating an iterator must not draw from the global RNG (dropout's stream),
    # or a resumed run would see other dropout masks
    loader = DataLoader(
        ds, batch_sampler=batch_indices, collate_fn=pad_collate, num_workers=num_workers, generator=torch.Generator()
    )
    try:
        yield from loader
    except DataError as exc:
        text = str(exc).rstrip()
        if "DataLoader worker" in text:
            raise DataError(text.rsplit("DataError: ", 1)[-1]) from None
        raise
