"""The training loop behind `fcn-kernels train` and `demo`.

Single process or under torchrun (DistributedDataParallel: gloo on CPU, nccl on CUDA). Semantics that
make runs reproducible and world-size independent:

- ``batch_size`` is the *global* batch; each of W ranks takes batch_size / W (see factory.epoch_batches).
- The loss is the sum of the per-pixel terms over the global batch divided by the global number of
  non-ignored pixels (an all-reduced count), so DDP's gradient averaging gives exactly the
  single-process gradient.
- Checkpoints hold the model, optimizer, step, epoch, position in the epoch and every rank's RNG
  states: a resumed run continues the same run, bitwise on the CPU.
- The run is a fixed amount of work (``iters`` steps); ``max_seconds`` only stops it early.
"""
import math
import sys
import time
from pathlib import Path

import torch

from ..errors import CLIError
from ..losses import class_frequencies, class_weights, pixelwise_cross_entropy
from . import config as config_mod
from .checkpoint import (FORMAT, VERSION, check_architecture, check_finite, init_from, load_checkpoint,
                         load_model_state, load_own_checkpoint, save_checkpoint)
from .device import autocast
from .evaluation import evaluate, format_scores, save_metrics
from .factory import batches, build_dataset, build_model, epoch_batches, kaiming_init, model_config, weight_digest
from .rng import rng_state, seed_streams, set_rng_state


def configure(cls, args, default_out: str):
    """(config, checkpoint being resumed or None) from parsed options: a resumed run takes every option
    not given again from its checkpoint, and writes into the checkpoint's folder unless --out is given."""
    given = config_mod.given(args)
    cfg = config_mod.from_args(cls, args)
    ckpt = None
    if cfg.resume:
        ckpt = load_own_checkpoint(cfg.resume, hint="; to start from pretrained weights use --init-from")
        cfg = config_mod.from_args(cls, args, inherited=ckpt.get("config", {}))
        requested = {k: getattr(cfg, key) for k, key in (("arch", "model"), ("n_class", "n_class"),
                                                          ("width", "width")) if key in given}
        check_architecture(ckpt["model_config"], requested, cfg.resume)
        cfg.model, cfg.n_class, cfg.width = (ckpt["model_config"][k] for k in ("arch", "n_class", "width"))
        if cfg.out is None:
            cfg.out = str(Path(cfg.resume).parent)
    if cfg.out is None:
        cfg.out = default_out
    if cfg.iters is None:
        raise CLIError("--iters (the number of optimizer steps) is required")
    return config_mod.resolve(cfg), ckpt


def _check_overwrite(cfg, ckpt_path: Path, written_by: str) -> None:
    """Never replace a checkpoint unless asked (--overwrite), it is the one being resumed, or the demo
    replaces its own."""
    if not ckpt_path.exists() or cfg.overwrite:
        return
    if cfg.resume:
        if Path(cfg.resume).resolve() != ckpt_path.resolve():
            raise CLIError(f"{str(ckpt_path)!r} exists and is not the checkpoint being resumed; pass --overwrite "
                           "to replace it, or choose another --out")
        return
    if written_by == "demo":
        try:
            if load_checkpoint(ckpt_path).get("written_by") == "demo":
                return
        except CLIError:
            pass
        raise CLIError(f"{str(ckpt_path)!r} was not written by the demo, which replaces only its own; pass "
                       "--overwrite to replace it, or choose another --out")
    raise CLIError(f"{str(ckpt_path)!r} already exists; pass --overwrite to replace it, --resume "
                   f"{ckpt_path} to continue it, or choose another --out")


def lr_at(cfg, step: int) -> float:
    if cfg.lr_schedule == "poly":
        return cfg.lr * (1 - step / cfg.iters) ** 0.9
    return cfg.lr


def log(d, *msg):
    if d.main:
        print(*msg, flush=True)


def train(cfg, d, device, ckpt=None, written_by="train") -> dict:
    """Train as `cfg` says (a resolved TrainConfig), continuing `ckpt` when given; returns the final
    metrics. Writes checkpoint.pt, metrics.json and overlay.png under cfg.out."""
    out = Path(cfg.out)
    ckpt_path = out / "checkpoint.pt"
    if cfg.batch_size % d.world:
        raise CLIError(f"--batch-size {cfg.batch_size} (the global batch) must be divisible by the "
                       f"world size {d.world}")
    _check_overwrite(cfg, ckpt_path, written_by)
    mconfig = model_config(cfg)

    train_ds = build_dataset(cfg, cfg.train_split, train=True)
    val_ds = build_dataset(cfg, cfg.val_split, train=False)
    if len(train_ds) < cfg.batch_size:
        raise CLIError(f"the training split has {len(train_ds)} images, fewer than --batch-size {cfg.batch_size}")

    torch.manual_seed(cfg.seed)
    model = build_model(mconfig, fused=cfg.fused).to(device)
    if ckpt is None:
        if cfg.init == "kaiming":
            kaiming_init(model)
        if cfg.init_from:
            init_from(model, cfg.init_from)
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.optimizer == "sgd":
        opt = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    else:
        opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    step, epoch, pos, elapsed0 = 0, 0, 0, 0.0
    gen = seed_streams(cfg.seed, d.rank, device)
    saved_step = None
    if ckpt is not None:
        load_model_state(model, ckpt["model"], cfg.resume)
        opt.load_state_dict(ckpt["optimizer"])
        step, epoch, pos, elapsed0 = ckpt["step"], ckpt["epoch"], ckpt["pos"], ckpt["elapsed"]
        saved_step = step
        if len(ckpt["rng"]) == d.world:
            set_rng_state(ckpt["rng"][d.rank], gen)
        else:
            log(d, f"note: checkpoint from {len(ckpt['rng'])} process(es), now {d.world}: random streams restart")
        if ckpt["world"] != d.world:
            log(d, "note: world size changed since the checkpoint; the sample order of this epoch restarts")
            pos = 0
        log(d, f"resumed {cfg.resume} at step {step}/{cfg.iters}")

    weight = None
    if cfg.class_weights != "none":
        weight = class_weights(class_frequencies(train_ds, cfg.n_class), cfg.class_weights).to(device)
        log(d, "class weights:", " ".join(f"{w:.3g}" for w in weight.tolist()))

    net = model
    if d.enabled:
        from torch.nn.parallel import DistributedDataParallel as DDP
        net = DDP(model, device_ids=[device.index] if device.type == "cuda" else None)

    out.mkdir(parents=True, exist_ok=True)
    log(d, f"training {cfg.model} (n_class={cfg.n_class}, width={cfg.width}, fused={cfg.fused}) on {train_ds!r}, "
           f"device {device}, world {d.world}, global batch {cfg.batch_size}")

    def checkpoint():
        check_finite(model, step)
        rngs = d.gather(rng_state(gen))  # every rank joins the gather
        if d.main:
            save_checkpoint(ckpt_path, {
                "format": FORMAT, "version": VERSION, "model_config": mconfig, "model": model.state_dict(),
                "optimizer": opt.state_dict(), "step": step, "epoch": epoch, "pos": pos, "elapsed": elapsed,
                "world": d.world, "rng": rngs, "config": config_mod.as_dict(cfg), "written_by": written_by,
                "class_names": list(getattr(train_ds, "class_names", None) or [])})
        return step

    model.train()
    t0 = time.perf_counter()
    elapsed = elapsed0
    bar = None
    if cfg.progress and d.main:
        from tqdm import tqdm
        bar = tqdm(total=cfg.iters, initial=step, desc="train", dynamic_ncols=True, file=sys.stderr)
    train_ds.set_epoch(epoch)
    it = batches(train_ds, epoch_batches(len(train_ds), cfg.batch_size, d, cfg.seed, epoch)[pos:], cfg.num_workers)
    last_loss = math.nan
    stopped_early = False
    history = []
    while step < cfg.iters:
        try:
            x, y = next(it)
        except StopIteration:
            epoch, pos = epoch + 1, 0
            train_ds.set_epoch(epoch)
            it = batches(train_ds, epoch_batches(len(train_ds), cfg.batch_size, d, cfg.seed, epoch),
                         cfg.num_workers)
            continue
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        lr = lr_at(cfg, step)
        for g in opt.param_groups:
            g["lr"] = lr
        with autocast(device, cfg.amp):
            scores = net(x)
        total = pixelwise_cross_entropy(scores, y, weight, sample_p=cfg.sample_p, generator=gen, reduction="sum")
        n_valid = d.all_sum((y != 255).sum().to(torch.float64))
        loss = total * d.world / n_valid.clamp_min(1)
        last_loss = float(d.all_sum(loss.detach().double()) / d.world)  # rank-equal: all ranks stop together
        if not math.isfinite(last_loss):
            kept = (f"the checkpoint on disk is the one of step {saved_step}" if saved_step is not None
                    else "no checkpoint was written")
            raise CLIError(f"the loss is {last_loss} at step {step + 1} (lr {lr:g}): training stopped before "
                           f"that update; {kept} (lower --lr?)")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step, pos = step + 1, pos + 1
        elapsed = elapsed0 + time.perf_counter() - t0
        if d.enabled and cfg.max_seconds is not None:  # one clock for all ranks: a rank-equal stop
            elapsed = float(d.all_max(torch.tensor(elapsed, dtype=torch.float64, device=device)))
        if step % cfg.log_every == 0 or step == cfg.iters:
            history.append({"step": step, "loss": last_loss, "lr": lr, "seconds": round(elapsed, 2)})
        if bar is not None:
            bar.update(1)
            if step % cfg.log_every == 0:
                bar.set_postfix(loss=f"{last_loss:.4f}", lr=f"{lr:.2e}")
        if cfg.val_every and step % cfg.val_every == 0 and step < cfg.iters:
            s = evaluate(model, val_ds, cfg.n_class, device, d, cfg.batch_size, cfg.amp, cfg.num_workers)
            msg = f"step {step}: val {format_scores(s)}"
            (bar.write(msg) if bar is not None else log(d, msg))
        if cfg.checkpoint_every and step % cfg.checkpoint_every == 0 and step < cfg.iters:
            saved_step = checkpoint()
        if cfg.max_seconds is not None and elapsed > cfg.max_seconds:
            stopped_early = step < cfg.iters
            break
    if bar is not None:
        bar.close()
    train_seconds = elapsed - elapsed0
    if stopped_early:
        log(d, f"time limit of {cfg.max_seconds:g} s reached at step {step}/{cfg.iters}")
    checkpoint()
    digests = d.gather(weight_digest(model))

    t1 = time.perf_counter()
    s = evaluate(model, val_ds, cfg.n_class, device, d, cfg.batch_size, cfg.amp, cfg.num_workers,
                 progress=cfg.progress and d.main)
    result = dict(s, split=cfg.val_split, step=step, iters=cfg.iters, epoch=epoch, stopped_early=stopped_early,
                  train_seconds=round(train_seconds, 3), total_train_seconds=round(elapsed, 3),
                  eval_seconds=round(time.perf_counter() - t1, 3), final_loss=last_loss, loss_history=history,
                  model=mconfig, fused=cfg.fused, amp=cfg.amp, device=str(device), world_size=d.world,
                  global_batch=cfg.batch_size, checkpoint=str(ckpt_path), rank_weight_digests=digests)
    if d.main:
        from .overlay import write_overlay

        if len(set(digests)) != 1:
            print("warning: the ranks' weights differ", file=sys.stderr)
        result["overlay"] = write_overlay(model, val_ds, out / "overlay.png", device, n=cfg.overlay_images,
                                          amp=cfg.amp)
        save_metrics(out / "metrics.json", result)
        print(f"val ({len(val_ds)} images): {format_scores(s)}")
        print(f"checkpoint: {ckpt_path}\nmetrics: {out / 'metrics.json'}\noverlay: {result['overlay']}", flush=True)
    d.barrier()
    return result
