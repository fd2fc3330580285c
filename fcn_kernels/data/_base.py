"""The item of every data set here: a raw (image, label) pair, mirrored at random, preprocessed."""

import numpy as np
import torch
from torch.utils.data import Dataset

from .transforms import preprocess, random_flip


class SegmentationDataset(Dataset):
    """A subclass gives ``raw(index)`` -> ((H, W, 3) uint8 RGB, (H, W) int64 label) and the attributes
    ``seed``, ``flip`` and ``preprocess``. Items are (image (3, H, W) float32, label (H, W) int64); the
    mirroring is a pure function of (seed, epoch, index), so every worker and rank draws the same."""

    epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def raw(self, index: int):
        raise NotImplementedError

    def __getitem__(self, index):
        img, label = self.raw(index)
        if self.flip:
            img, label = random_flip(img, label, np.random.default_rng([self.seed, 7, self.epoch, index]))
        return preprocess(img, self.preprocess), torch.from_numpy(np.ascontiguousarray(label))
