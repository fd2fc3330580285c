"""PASCAL VOC-format segmentation directories.

Layout (that of VOCdevkit/VOC2012, or any set written the same way)::

    ROOT/JPEGImages/<id>.jpg
    ROOT/SegmentationClass/<id>.png        palette ("P") PNG: pixel value = class, 255 = void
    ROOT/ImageSets/Segmentation/<split>.txt   one <id> a line

ROOT may also be a folder holding ``VOC2012/`` or ``VOCdevkit/VOC2012/``.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import numpy as np

from ..errors import DataError  # re-exported: fcn_kernels.data.DataError
from ._base import SegmentationDataset

__all__ = ["VOCSegmentation", "VOC_CLASSES", "DataError", "write_voc_label"]

VOC_CLASSES = (
    "background",
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
)


def _find_root(root: Path) -> Path:
    for cand in (root, root / "VOC2012", root / "VOCdevkit" / "VOC2012"):
        if (cand / "JPEGImages").is_dir() or (cand / "SegmentationClass").is_dir():
            return cand
    return root


@contextlib.contextmanager
def _reading(path, what):
    """A file PIL cannot decode (truncated, not an image, missing) is a DataError naming it."""
    try:
        yield
    except DataError:
        raise
    except (OSError, SyntaxError, ValueError, EOFError) as exc:  # PIL's errors for broken files
        raise DataError(f"{path}: cannot read the {what} ({type(exc).__name__}: {exc})") from None


def write_voc_label(path, label: np.ndarray) -> None:
    """Write an (H, W) label map as a VOC palette PNG to a path or a binary file."""
    from PIL import Image

    from .transforms import voc_colormap

    im = Image.fromarray(np.asarray(label, dtype=np.uint8), mode="P")
    im.putpalette(voc_colormap().reshape(-1).tolist())
    im.save(path, format="PNG")


class VOCSegmentation(SegmentationDataset):
    """A VOC-format segmentation split.

    Args:
        root: the VOC folder (see the module doc).
        split: the name of a list in ImageSets/Segmentation (``train``, ``val``, ...).
        n_class: number of classes (21 for VOC); a label outside [0, n_class) other
            than ``ignore_index`` is an error naming the file.
        preprocess: "bgr_mean" (the reference's), "rgb_unit", "rgb_norm" or "none".
        flip: random horizontal mirroring (seeded by index and ``set_epoch``).
        seed: seed of the augmentation.

    Items are (image (3, H, W) float32, label (H, W) int64), at the file's size.
    """

    def __init__(self, root, split="train", n_class=21, preprocess="bgr_mean", flip=False, seed=0, ignore_index=255):
        given = Path(root)
        if not given.exists():
            raise DataError(f"data directory {str(given)!r} does not exist")
        if not given.is_dir():
            raise DataError(f"data directory {str(given)!r} is not a directory")
        self.root = _find_root(given)
        self.split = split
        self.n_class = int(n_class)
        self.preprocess = preprocess
        self.flip = flip
        self.seed = seed
        self.epoch = 0
        self.ignore_index = ignore_index
        missing = [
            d
            for d in ("JPEGImages", "SegmentationClass", os.path.join("ImageSets", "Segmentation"))
            if not (self.root / d).is_dir()
        ]
        if missing:
            raise DataError(
                f"{str(given)!r} is not a VOC-format directory: missing {', '.join(m + '/' for m in missing)} "
                "(expected JPEGImages/, SegmentationClass/ and ImageSets/Segmentation/<split>.txt)"
            )
        list_file = self.root / "ImageSets" / "Segmentation" / f"{split}.txt"
        if not list_file.is_file():
            have = sorted(p.stem for p in (self.root / "ImageSets" / "Segmentation").glob("*.txt"))
            raise DataError(f"no split list {str(list_file)!r} (splits found: {have or 'none'})")
        ids = []
        for n, line in enumerate(list_file.read_text().splitlines(), 1):
            line = line.strip()
            if not line:
                continue
            if len(line.split()) != 1:
                raise DataError(f"{list_file}:{n}: expected one image id a line, got {line!r}")
            ids.append(line)
        if not ids:
            raise DataError(f"split list {str(list_file)!r} is empty")
        missing = [
            p
            for i in ids
            for p in (self.root / "JPEGImages" / f"{i}.jpg", self.root / "SegmentationClass" / f"{i}.png")
            if not p.is_file()
        ]
        if missing:
            raise DataError(
                f"{list_file}: {len(missing)} image or label file(s) it names lack JPEGImages/<id>.jpg "
                f"or SegmentationClass/<id>.png, e.g. {str(missing[0])!r} does not exist"
            )
        self.ids = ids
        self.class_names = list(VOC_CLASSES) if self.n_class == 21 else [str(i) for i in range(self.n_class)]

    def __len__(self):
        return len(self.ids)

    def raw(self, index: int):
        """((H, W, 3) uint8 RGB, (H, W) int64 label) of item ``index``, validated."""
        from PIL import Image

        i = self.ids[index]
        img_path = self.root / "JPEGImages" / f"{i}.jpg"
        lab_path = self.root / "SegmentationClass" / f"{i}.png"
        with _reading(img_path, "image"), Image.open(img_path) as im:
            img = np.asarray(im.convert("RGB"))
        with _reading(lab_path, "label"), Image.open(lab_path) as lab_im:
            if lab_im.mode not in ("P", "L"):
                raise DataError(
                    f"{lab_path}: label image has mode {lab_im.mode!r}; expected a palette ('P') "
                    "PNG whose pixel values are class indices (or 'L' grayscale indices)"
                )
            label = np.asarray(lab_im).astype(np.int64)
        if img.shape[:2] != label.shape:
            raise DataError(
                f"{lab_path}: the label is {label.shape[1]}x{label.shape[0]} but its image "
                f"{img_path.name} is {img.shape[1]}x{img.shape[0]}"
            )
        bad = (label != self.ignore_index) & ((label < 0) | (label >= self.n_class))
        if bad.any():
            vals = sorted(set(np.unique(label[bad]).tolist()))[:10]
            raise DataError(
                f"{lab_path}: labels {vals} are outside [0, {self.n_class}) and are not the ignore "
                f"label {self.ignore_index} (wrong --n-class, or not a class-index PNG?)"
            )
        return img, label

    def __repr__(self):
        return f"VOCSegmentation(root={str(self.root)!r}, split={self.split!r}, n={len(self)})"
