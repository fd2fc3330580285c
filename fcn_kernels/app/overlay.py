"""overlay.png: image | ground truth | prediction for the first images of a data set."""

import torch

from ..data import deprocess, overlay_panel, save_overlay
from .device import autocast

TITLES = ("image", "ground truth", "prediction")


@torch.no_grad()
def write_overlay(model, ds, path, device, n=4, amp=False) -> str:
    was_training = model.training
    model.eval()
    rows = []
    for i in range(min(n, len(ds))):
        x, y = ds[i]
        with autocast(device, amp):
            pred = model(x[None].to(device)).argmax(1)[0].cpu()
        image = ds.raw(i)[0] if hasattr(ds, "raw") else deprocess(x, ds.preprocess)
        rows.append(overlay_panel(image, y, pred))
    model.train(was_training)
    return save_overlay(path, rows, titles=TITLES, class_names=getattr(ds, "class_names", None))
