"""Data sets: a seeded synthetic set (no download) and VOC-format directories."""

from .synthetic import SHAPES, SyntheticShapes
from .transforms import (
    BGR_MEAN,
    PREPROCESS_MODES,
    colorize,
    deprocess,
    overlay_panel,
    pad_collate,
    preprocess,
    save_overlay,
    tint,
    voc_colormap,
)
from .voc import VOC_CLASSES, DataError, VOCSegmentation, write_voc_label

__all__ = [
    "SyntheticShapes",
    "SHAPES",
    "VOCSegmentation",
    "VOC_CLASSES",
    "DataError",
    "write_voc_label",
    "BGR_MEAN",
    "PREPROCESS_MODES",
    "preprocess",
    "deprocess",
    "colorize",
    "overlay_panel",
    "save_overlay",
    "tint",
    "pad_collate",
    "voc_colormap",
]
