"""A synthetic segmentation data set, generated from a seed (no download).

Each image is a textured background (a random two-colour gradient, random
stripes and pixel noise) with 1 to ``max_shapes`` shapes painted over it,
later shapes on top. Class 0 is the background; class k >= 1 is a shape kind
(disk, square, triangle, ring, cross, diamond), drawn at a random place, size
and rotation, in a colour near the kind's own hue (jittered) with its own
texture. The label map holds each pixel's class. Image i of a split is a pure
function of (seed, split, i), so data sets need no storage and every process
(data-loader workers, distributed ranks) sees the same pictures.
"""

from __future__ import annotations

import colorsys

import numpy as np

from ._base import SegmentationDataset

__all__ = ["SyntheticShapes", "SHAPES"]

SHAPES = ("disk", "square", "triangle", "ring", "cross", "diamond")
SPLITS = {"train": 0, "val": 1, "test": 2}


def _shape_mask(kind, yy, xx, cy, cx, r, theta):
    dy, dx = yy - cy, xx - cx
    c, s = np.cos(theta), np.sin(theta)
    u, v = c * dx + s * dy, -s * dx + c * dy
    if kind == "disk":
        return dx * dx + dy * dy <= r * r
    if kind == "square":
        return (np.abs(u) <= r * 0.85) & (np.abs(v) <= r * 0.85)
    if kind == "diamond":
        return np.abs(u) + np.abs(v) <= r * 1.1
    if kind == "ring":
        d2 = dx * dx + dy * dy
        return (d2 <= r * r) & (d2 >= (0.55 * r) ** 2)
    if kind == "cross":
        w = 0.35 * r
        return ((np.abs(u) <= r) & (np.abs(v) <= w)) | ((np.abs(v) <= r) & (np.abs(u) <= w))
    if kind == "triangle":
        inside = np.ones_like(u, dtype=bool)
        for k in range(3):
            a = theta + 2 * np.pi * k / 3
            inside &= (np.cos(a) * dx + np.sin(a) * dy) <= 0.6 * r
        return inside
    raise ValueError(kind)


class SyntheticShapes(SegmentationDataset):
    """Seeded synthetic scenes of shapes on textured backgrounds.

    Args:
        length: images in the split.
        size: side of the square images (pixels), int or (H, W).
        n_class: classes including background (2 to 7).
        seed: the data set's seed; splits ("train", "val", "test") draw disjoint streams.
        split: which split.
        max_shapes: at most this many shapes per image (at least 1).
        preprocess: see :mod:`fcn_kernels.data.transforms`.
        flip: mirror at random (seeded by the index and ``set_epoch``) for augmentation.

    Items are (image (3, H, W) float32, label (H, W) int64).
    """

    def __init__(
        self, length=256, size=64, n_class=4, seed=0, split="train", max_shapes=3, preprocess="rgb_norm", flip=False
    ):
        if not 2 <= n_class <= len(SHAPES) + 1:
            raise ValueError(f"n_class must be in [2, {len(SHAPES) + 1}] (background + shape kinds), got {n_class}")
        if split not in SPLITS:
            raise ValueError(f"split must be one of {sorted(SPLITS)}, got {split!r}")
        self.length = int(length)
        self.size = (size, size) if isinstance(size, int) else tuple(size)
        self.n_class = n_class
        self.seed = int(seed)
        self.split = split
        self.max_shapes = max(1, int(max_shapes))
        self.preprocess = preprocess
        self.flip = flip
        self.epoch = 0
        self.class_names = ["background"] + list(SHAPES[: n_class - 1])
        # each shape kind owns a hue, evenly spread
        self.hues = [k / (n_class - 1) for k in range(n_class - 1)]

    def __len__(self):
        return self.length

    def raw(self, index: int):
        """Image i as ((H, W, 3) uint8 RGB, (H, W) int64 label) before preprocessing."""
        if not 0 <= index < self.length:
            raise IndexError(index)
        rng = np.random.default_rng([self.seed, SPLITS[self.split], index])
        h, w = self.size
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        # background: gradient between two random dull colours + stripes + noise
        c0, c1 = rng.uniform(40, 200, size=(2, 3))
        ang = rng.uniform(0, 2 * np.pi)
        t = ((np.cos(ang) * xx + np.sin(ang) * yy) / max(h, w) + 1) / 2
        img = c0 * (1 - t[..., None]) + c1 * t[..., None]
        period = rng.uniform(4, 16)
        sang = rng.uniform(0, np.pi)
        stripes = np.sin((np.cos(sang) * xx + np.sin(sang) * yy) * 2 * np.pi / period)
        img += rng.uniform(5, 25) * stripes[..., None]
        img += rng.normal(0, 10, size=img.shape)
        label = np.zeros((h, w), dtype=np.int64)
        for _ in range(rng.integers(1, self.max_shapes + 1)):
            cls = int(rng.integers(1, self.n_class))
            kind = SHAPES[cls - 1]
            r = rng.uniform(0.14, 0.3) * min(h, w)
            cy, cx = rng.uniform(0.1, 0.9, size=2) * (h, w)
            mask = _shape_mask(kind, yy, xx, cy, cx, r, rng.uniform(0, 2 * np.pi))
            hue = (self.hues[cls - 1] + rng.uniform(-0.06, 0.06)) % 1.0
            rgb = np.asarray(colorsys.hsv_to_rgb(hue, rng.uniform(0.6, 1.0), rng.uniform(0.6, 1.0))) * 255
            tex = rng.normal(0, 12, size=(h, w, 1)) + rng.uniform(0, 20) * np.sin(xx * rng.uniform(0.3, 1.2))[..., None]
            img = np.where(mask[..., None], rgb + tex, img)
            label[mask] = cls
        img = np.clip(np.rint(img), 0, 255).astype(np.uint8)
        return img, label

    def __repr__(self):
        return (
            f"SyntheticShapes(length={self.length}, size={self.size}, n_class={self.n_class}, "
            f"seed={self.seed}, split={self.split!r})"
        )
