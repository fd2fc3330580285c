"""Input preprocessing, label colouring, batching and overlays.

Preprocessing modes (``preprocess=``):

- ``"bgr_mean"``: the reference's (Caffe FCN): channels reordered RGB -> BGR,
  values kept in [0, 255] as float32, and the ImageNet (VGG16) mean pixel
  subtracted per channel, B 104.00698793, G 116.66876762, R 122.67891434.
  Use it with VGG16 weights converted from Caffe.
- ``"rgb_unit"``: RGB scaled to [-0.5, 0.5] (x / 255 - 0.5); convenient for
  training from scratch (the synthetic demo).
- ``"rgb_norm"``: RGB centred and scaled to about unit variance, (x - 127.5) / 64;
  what the synthetic demo trains from scratch on.
- ``"none"``: RGB float32 in [0, 255].

Images in and out of these functions are (H, W, 3) uint8 RGB arrays; tensors
are (3, H, W) float32.
"""
from __future__ import annotations

import numpy as np
import torch

__all__ = [
    "BGR_MEAN", "PREPROCESS_MODES", "preprocess", "deprocess", "voc_colormap",
    "colorize", "overlay_panel", "save_overlay", "pad_collate", "random_flip",
]

BGR_MEAN = (104.00698793, 116.66876762, 122.67891434)
PREPROCESS_MODES = ("bgr_mean", "rgb_unit", "rgb_norm", "none")


def preprocess(image: np.ndarray, mode: str = "bgr_mean") -> torch.Tensor:
    """(H, W, 3) uint8 RGB -> (3, H, W) float32 network input."""
    img = np.asarray(image)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) RGB image, got shape {img.shape}")
    x = img.astype(np.float32)
    if mode == "bgr_mean":
        x = x[:, :, ::-1] - np.asarray(BGR_MEAN, dtype=np.float32)
    elif mode == "rgb_unit":
        x = x / 255.0 - 0.5
    elif mode == "rgb_norm":
        x = (x - 127.5) / 64.0
    elif mode != "none":
        raise ValueError(f"unknown preprocessing {mode!r}; choose one of {PREPROCESS_MODES}")
    return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))


def deprocess(x: torch.Tensor, mode: str = "bgr_mean") -> np.ndarray:
    """Inverse of :func:`preprocess`: (3, H, W) tensor -> (H, W, 3) uint8 RGB."""
    a = x.detach().float().cpu().numpy().transpose(1, 2, 0)
    if mode == "bgr_mean":
        a = (a + np.asarray(BGR_MEAN, dtype=np.float32))[:, :, ::-1]
    elif mode == "rgb_unit":
        a = (a + 0.5) * 255.0
    elif mode == "rgb_norm":
        a = a * 64.0 + 127.5
    elif mode != "none":
        raise ValueError(f"unknown preprocessing {mode!r}; choose one of {PREPROCESS_MODES}")
    return np.clip(np.rint(a), 0, 255).astype(np.uint8)


def voc_colormap(n: int = 256) -> np.ndarray:
    """PASCAL VOC's label palette, (n, 3) uint8 (index 255, "void", is (224, 224, 192))."""
    cmap = np.zeros((n, 3), dtype=np.uint8)
    for i in range(n):
        c, r, g, b = i, 0, 0, 0
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        cmap[i] = (r, g, b)
    return cmap


_CMAP = voc_colormap()


def colorize(label) -> np.ndarray:
    """(H, W) integer label map -> (H, W, 3) uint8 RGB in the VOC palette."""
    lab = np.asarray(torch.as_tensor(label).cpu().numpy(), dtype=np.int64)
    return _CMAP[np.clip(lab, 0, 255)]


def overlay_panel(image: np.ndarray, label, pred, alpha: float = 0.6, gap: int = 4) -> np.ndarray:
    """One row: image | ground truth | prediction (class colours blended over the image,
    background pixels untinted)."""
    img = np.asarray(image, dtype=np.float32)
    parts = [img]
    for lab in (label, pred):
        lab = np.asarray(torch.as_tensor(lab).cpu().numpy())
        tint = (1 - alpha) * img + alpha * colorize(lab).astype(np.float32)
        parts.append(np.where((lab != 0)[..., None], tint, img))  # background left as is
    h = img.shape[0]
    sep = np.full((h, gap, 3), 255.0, dtype=np.float32)
    row = np.concatenate([parts[0], sep, parts[1], sep, parts[2]], axis=1)
    return np.clip(np.rint(row), 0, 255).astype(np.uint8)


def save_overlay(path, rows, scale: int = 1, gap: int = 4) -> str:
    """Stack rows from :func:`overlay_panel` (padded to one width) and write a PNG."""
    from PIL import Image

    if not rows:
        raise ValueError("no rows to write")
    width = max(r.shape[1] for r in rows)
    out = []
    for i, r in enumerate(rows):
        if r.shape[1] < width:
            r = np.concatenate([r, np.full((r.shape[0], width - r.shape[1], 3), 255, np.uint8)], axis=1)
        out.append(r)
        if i + 1 < len(rows):
            out.append(np.full((gap, width, 3), 255, np.uint8))
    pic = Image.fromarray(np.concatenate(out, axis=0))
    if scale != 1:
        pic = pic.resize((pic.width * scale, pic.height * scale), Image.NEAREST)
    pic.save(str(path))
    return str(path)


def pad_collate(batch, ignore_index: int = 255):
    """Collate (image, label) pairs of different sizes: pad to the largest, images
    with 0 (the mean, after mean subtraction) and labels with ``ignore_index``."""
    images, labels = zip(*batch)
    h = max(i.shape[1] for i in images)
    w = max(i.shape[2] for i in images)
    x = images[0].new_zeros((len(images), images[0].shape[0], h, w))
    y = labels[0].new_full((len(labels), h, w), ignore_index)
    for k, (im, lab) in enumerate(zip(images, labels)):
        x[k, :, : im.shape[1], : im.shape[2]] = im
        y[k, : lab.shape[0], : lab.shape[1]] = lab
    return x, y


def random_flip(image: np.ndarray, label: np.ndarray, rng: np.random.Generator):
    """Horizontal mirror with probability 1/2 (the reference's only augmentation)."""
    if rng.random() < 0.5:
        return image[:, ::-1].copy(), label[:, ::-1].copy()
    return image, label
