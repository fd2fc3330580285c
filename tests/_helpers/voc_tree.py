"""A tiny VOC-format tree written on the fly (the data tests and the training tests use it)."""

import numpy as np
from PIL import Image

from fcn_kernels.data import write_voc_label


def write_voc(root, n_train=3, n_val=2, n_class=21, size=(20, 28), bad=None):
    rng = np.random.default_rng(0)
    (root / "JPEGImages").mkdir(parents=True)
    (root / "SegmentationClass").mkdir()
    (root / "ImageSets" / "Segmentation").mkdir(parents=True)
    ids = {"train": [f"2007_{i:06d}" for i in range(n_train)], "val": [f"2008_{i:06d}" for i in range(n_val)]}
    for split, names in ids.items():
        (root / "ImageSets" / "Segmentation" / f"{split}.txt").write_text("\n".join(names) + "\n")
        for k, name in enumerate(names):
            h, w = size[0] + k, size[1] - k  # sizes differ between images
            Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(root / "JPEGImages" / f"{name}.jpg")
            lab = rng.integers(0, n_class, (h, w)).astype(np.uint8)
            lab[0, :] = 255  # the void border
            if bad is not None and split == "train" and k == 1:
                lab[1, 1] = bad
            write_voc_label(root / "SegmentationClass" / f"{name}.png", lab)
    return ids
