"""Scoring a model on a data set (the paper's four metrics), and the `eval` job."""

import json
import math
import sys
import time
from pathlib import Path

import torch

from .._io import atomic_write
from ..errors import CLIError
from ..metrics import ConfusionMatrix
from .checkpoint import check_architecture, init_from, is_own_checkpoint, load_checkpoint, load_model_state
from .config import resolve
from .device import autocast
from .factory import batches, build_dataset, build_model


@torch.no_grad()
def evaluate(model, ds, n_class, device, dist, batch_size=1, amp=False, num_workers=0, progress=False):
    """The four metrics over the data set (each rank scores every W-th image, no padding;
    the confusion matrices are summed)."""
    was_training = model.training
    model.eval()
    mine = list(range(dist.rank, len(ds), dist.world))
    local_bs = max(1, batch_size // dist.world)
    cm = ConfusionMatrix(n_class, device=device)
    it = batches(ds, [mine[i : i + local_bs] for i in range(0, len(mine), local_bs)], num_workers)
    if progress:
        from tqdm import tqdm

        it = tqdm(it, desc="eval", leave=False, dynamic_ncols=True, file=sys.stderr)
    for x, y in it:
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        with autocast(device, amp):
            out = model(x)
        cm.update(out.argmax(1), y)
    cm.all_reduce()
    model.train(was_training)
    scores = cm.compute()
    per_class = [None if math.isnan(v) else v for v in cm.per_class_iu()]
    names = getattr(ds, "class_names", None)
    scores["per_class_iu"] = dict(zip(names, per_class)) if names and len(names) == len(per_class) else per_class
    scores["n_images"] = len(ds)
    scores["n_pixels"] = int(cm.hist.sum())
    return scores


def timed_evaluate(cfg, dist, model, ds, n_class, device):
    """evaluate with the run's batch size, amp, workers and progress bar; returns (its scores, its seconds)."""
    t0 = time.perf_counter()
    batch, amp, workers, progress = cfg.batch_size, cfg.amp, cfg.num_workers, cfg.progress and dist.main
    s = evaluate(model, ds, n_class, device, dist, batch, amp, workers, progress=progress)
    return s, round(time.perf_counter() - t0, 3)


def format_scores(s: dict) -> str:
    return " ".join(f"{k} {s[k]:.4f}" for k in ("pixel_acc", "mean_acc", "mean_iu", "fw_iu"))


def save_metrics(path, result: dict) -> None:
    with atomic_write(path, "w") as f:
        json.dump(result, f, indent=2)


def run_eval(cfg, dist, device, given=frozenset()) -> dict:
    """`fcn-kernels eval`: score a checkpoint; metrics.json and overlay.png under cfg.out.
    `given`: the options given on the command line (the architecture comes from the checkpoint)."""
    from .overlay import write_overlay

    ckpt = load_checkpoint(cfg.checkpoint)
    requested = {
        k: getattr(cfg, key)
        for k, key in (("arch", "model"), ("n_class", "n_class"), ("width", "width"))
        if key in given
    }
    if is_own_checkpoint(ckpt):
        check_architecture(ckpt["model_config"], requested, cfg.checkpoint)
        config = dict(ckpt["model_config"])
        cfg.model, cfg.n_class, cfg.width = config["arch"], config["n_class"], config["width"]
    elif "model" not in given or "n_class" not in given:
        raise CLIError(
            f"{cfg.checkpoint!r} is not an fcn-kernels checkpoint; to evaluate a plain or torchfcn "
            "state_dict give --model and --n-class (and --width)"
        )
    else:
        config = {"arch": cfg.model, "n_class": cfg.n_class, "width": cfg.width}
    resolve(cfg)
    model = build_model(config, fused=cfg.fused).to(device)
    if is_own_checkpoint(ckpt):
        load_model_state(model, ckpt["model"], cfg.checkpoint)
    else:
        init_from(model, cfg.checkpoint)
    ds = build_dataset(cfg, cfg.split, train=False)
    s, seconds = timed_evaluate(cfg, dist, model, ds, config["n_class"], device)
    result = dict(
        s,
        split=cfg.split,
        eval_seconds=seconds,
        model=config,
        fused=cfg.fused,
        amp=cfg.amp,
        device=str(device),
        checkpoint=str(cfg.checkpoint),
        step=ckpt.get("step") if is_own_checkpoint(ckpt) else None,
    )
    if dist.main:
        out = Path(cfg.out)
        out.mkdir(parents=True, exist_ok=True)
        result["overlay"] = write_overlay(model, ds, out / "overlay.png", device, n=cfg.overlay_images, amp=cfg.amp)
        save_metrics(out / "metrics.json", result)
        print(f"{cfg.split} ({len(ds)} images): {format_scores(s)}")
        print(f"metrics: {out / 'metrics.json'}\noverlay: {result['overlay']}", flush=True)
    return result
