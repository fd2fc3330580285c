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
    "BGR_MEAN",
    "PREPROCESS_MODES",
    "preprocess",
    "deprocess",
    "voc_colormap",
    "colorize",
    "tint",
    "overlay_panel",
    "save_overlay",
    "pad_collate",
    "random_flip",
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


def tint(image: np.ndarray, label, alpha: float = 0.6) -> np.ndarray:
    """Class colours of `label` blended over `image` ((H, W, 3) uint8); background (0) left as is."""
    img = np.asarray(image, dtype=np.float32)
    lab = np.asarray(torch.as_tensor(label).cpu().numpy())
    blended = (1 - alpha) * img + alpha * colorize(lab).astype(np.float32)
    return np.clip(np.rint(np.where((lab != 0)[..., None], blended, img)), 0, 255).astype(np.uint8)


def overlay_panel(image: np.ndarray, label, pred, alpha: float = 0.6) -> list:
    """One overlay row: [image, ground truth tinted over it, prediction tinted over it]."""
    return [np.asarray(image, dtype=np.uint8), tint(image, label, alpha), tint(image, pred, alpha)]


def save_overlay(path, rows, *, scale=None, titles=None, class_names=None, gap: int = 4) -> str:
    """Write rows of panels as one PNG, atomically; returns the path.

    rows: a list of rows, each a list of (H, W, 3) uint8 panels (columns). scale: integer zoom
    (default: panels about 256 pixels high). titles: one per column, written above it. class_names:
    a legend under the picture, a swatch of each class's colour (classes 1 ..; the background is
    left untinted) and its name."""
    from PIL import Image, ImageDraw, ImageFont

    from .._io import atomic_write

    if not rows or not all(len(r) for r in rows):
        raise ValueError("save_overlay: rows must be a non-empty list of non-empty lists of panels")
    n_cols = max(len(r) for r in rows)
    if titles is not None and len(titles) != n_cols:
        raise ValueError(f"save_overlay: {len(titles)} titles for {n_cols} columns")
    panel_h = max(p.shape[0] for r in rows for p in r)
    scale = max(1, 256 // panel_h) if scale is None else int(scale)
    col_w = [max(r[c].shape[1] for r in rows if c < len(r)) * scale for c in range(n_cols)]
    row_h = [max(p.shape[0] for p in r) * scale for r in rows]
    font = ImageFont.load_default()
    line_h = font.getbbox("Ag")[3] + 6
    width = sum(col_w) + gap * (n_cols - 1)
    legend = [(k, name) for k, name in enumerate(class_names or []) if k > 0]
    # legend entries flow left to right, wrapping at the picture's width
    entries, x, y = [], 0, 0
    for k, name in legend:
        w = line_h + 4 + int(font.getlength(str(name))) + 12
        if x and x + w > width:
            x, y = 0, y + line_h
        entries.append((x, y, k, str(name)))
        x += w
    top = line_h if titles is not None else 0
    body = sum(row_h) + gap * (len(rows) - 1)
    height = top + body + ((gap + y + line_h) if entries else 0)
    pic = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(pic)
    left = [sum(col_w[:c]) + gap * c for c in range(n_cols)]
    if titles is not None:
        for c, title in enumerate(titles):
            tw = font.getlength(str(title))
            draw.text((left[c] + max(0, (col_w[c] - tw) / 2), 2), str(title), fill=(0, 0, 0), font=font)
    y0 = top
    for r, h in zip(rows, row_h):
        for c, panel in enumerate(r):
            im = Image.fromarray(np.ascontiguousarray(panel, dtype=np.uint8))
            pic.paste(im.resize((im.width * scale, im.height * scale), Image.NEAREST), (left[c], y0))
        y0 += h + gap
    for ex, ey, k, name in entries:
        sy = top + body + gap + ey
        draw.rectangle(
            [ex, sy + 2, ex + line_h - 4, sy + line_h - 2], fill=tuple(int(v) for v in _CMAP[k]), outline=(0, 0, 0)
        )
        draw.text((ex + line_h, sy + 2), name, fill=(0, 0, 0), font=font)
    with atomic_write(path) as f:
        pic.save(f, format="PNG")
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
