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

The recipe: :func:`train` = :func:`setup` (and :func:`resume`), :func:`train_one_epoch` until the steps are
done (:func:`train_step` a batch), :func:`finish`; :func:`checkpoint_payload` is what checkpoint.pt holds.
"""

import dataclasses
import math
import sys
import time
from pathlib import Path

import torch
from torch import nn

from ..errors import CLIError
from ..losses import class_frequencies, class_weights
from . import config as config_mod
from .checkpoint import (
    FORMAT,
    VERSION,
    check_architecture,
    check_finite,
    init_from,
    load_checkpoint,
    load_model_state,
    load_own_checkpoint,
    save_checkpoint,
)
from .device import autocast
from .evaluation import evaluate, format_scores, save_metrics, timed_evaluate
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
        requested = {
            k: getattr(cfg, key)
            for k, key in (("arch", "model"), ("n_class", "n_class"), ("width", "width"))
            if key in given
        }
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
            raise CLIError(
                f"{str(ckpt_path)!r} exists and is not the checkpoint being resumed; pass --overwrite "
                "to replace it, or choose another --out"
            )
        return
    if written_by == "demo":
        try:
            if load_checkpoint(ckpt_path).get("written_by") == "demo":
                return
        except CLIError:
            pass
        raise CLIError(
            f"{str(ckpt_path)!r} was not written by the demo, which replaces only its own; pass "
            "--overwrite to replace it, or choose another --out"
        )
    raise CLIError(
        f"{str(ckpt_path)!r} already exists; pass --overwrite to replace it, --resume "
        f"{ckpt_path} to continue it, or choose another --out"
    )


def lr_at(cfg, step: int) -> float:
    if cfg.lr_schedule == "poly":
        return cfg.lr * (1 - step / cfg.iters) ** 0.9
    return cfg.lr


def log(dist, *msg):
    if dist.main:
        print(*msg, flush=True)


@dataclasses.dataclass(eq=False)
class TrainingRun:
    """One training run: what it is built from, and where it stands (what a checkpoint saves)."""

    cfg: object
    dist: object  # the process group (distributed.Dist)
    device: torch.device
    written_by: str
    out: Path
    model_config: dict
    train_ds: object
    val_ds: object
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    generator: torch.Generator  # the loss-sampling stream
    net: torch.nn.Module | None = None  # ModelLoss(model), wrapped in DistributedDataParallel under torchrun
    weight: torch.Tensor | None = None  # the loss's class weights
    step: int = 0
    epoch: int = 0
    pos: int = 0  # batches of this epoch done
    elapsed0: float = 0.0  # training seconds before this process (a resumed run's)
    elapsed: float = 0.0  # training seconds so far, elapsed0 included
    started: float = 0.0  # perf_counter() when this process began training
    saved_step: int | None = None  # the step of the checkpoint on disk (None: none written or resumed)
    last_loss: float = math.nan
    history: list = dataclasses.field(default_factory=list)

    @property
    def checkpoint_path(self) -> Path:
        return self.out / "checkpoint.pt"


class ModelLoss(nn.Module):
    """The model's loss (FCN*.loss: fused, its last stage is upsample_cross_entropy) as a module's forward,
    so that DistributedDataParallel, which synchronises the gradients of what its forward ran, wraps it."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, images, target, **options):
        return self.model.loss(images, target, **options)


def build_optimizer(cfg, model) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def setup(cfg, dist, device, ckpt=None, written_by="train") -> TrainingRun:
    """Check the options against the world and the data, build the data sets, model, optimizer and random
    streams, and continue `ckpt` when given."""
    out = Path(cfg.out)
    if cfg.batch_size % dist.world:
        raise CLIError(
            f"--batch-size {cfg.batch_size} (the global batch) must be divisible by the world size {dist.world}"
        )
    _check_overwrite(cfg, out / "checkpoint.pt", written_by)
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
    optimizer = build_optimizer(cfg, model)
    run = TrainingRun(
        cfg,
        dist,
        device,
        written_by,
        out,
        mconfig,
        train_ds,
        val_ds,
        model,
        optimizer,
        generator=seed_streams(cfg.seed, dist.rank, device),
    )
    if ckpt is not None:
        resume(run, ckpt)

    if cfg.class_weights != "none":
        run.weight = class_weights(class_frequencies(train_ds, cfg.n_class), cfg.class_weights).to(device)
        log(dist, "class weights:", " ".join(f"{w:.3g}" for w in run.weight.tolist()))

    run.net = ModelLoss(model)
    if dist.enabled:
        from torch.nn.parallel import DistributedDataParallel as DDP

        run.net = DDP(run.net, device_ids=[device.index] if device.type == "cuda" else None)

    out.mkdir(parents=True, exist_ok=True)
    log(
        dist,
        f"training {cfg.model} (n_class={cfg.n_class}, width={cfg.width}, fused={cfg.fused}) on "
        f"{train_ds!r}, device {device}, world {dist.world}, global batch {cfg.batch_size}",
    )
    return run


def resume(run: TrainingRun, ckpt: dict) -> None:
    """Continue `ckpt`: the weights, the optimizer, the position, and every random stream when the world
    size is the checkpoint's."""
    cfg, dist = run.cfg, run.dist
    load_model_state(run.model, ckpt["model"], cfg.resume)
    run.optimizer.load_state_dict(ckpt["optimizer"])
    run.step, run.epoch, run.pos, run.elapsed0 = ckpt["step"], ckpt["epoch"], ckpt["pos"], ckpt["elapsed"]
    run.saved_step = run.step
    if len(ckpt["rng"]) == dist.world:
        set_rng_state(ckpt["rng"][dist.rank], run.generator)
    else:
        log(dist, f"note: checkpoint from {len(ckpt['rng'])} process(es), now {dist.world}: random streams restart")
    if ckpt["world"] != dist.world:
        log(dist, "note: world size changed since the checkpoint; the sample order of this epoch restarts")
        run.pos = 0
    log(dist, f"resumed {cfg.resume} at step {run.step}/{cfg.iters}")


def train_step(run: TrainingRun, x, y, lr: float) -> float:
    """One optimizer step at learning rate `lr` on this rank's part (x, y) of the global batch; returns
    the loss, the same on every rank."""
    cfg, dist = run.cfg, run.dist
    x, y = x.to(run.device, non_blocking=True), y.to(run.device, non_blocking=True)
    for g in run.optimizer.param_groups:
        g["lr"] = lr
    with autocast(run.device, cfg.amp):
        total = run.net(x, y, class_weight=run.weight, sample_p=cfg.sample_p, generator=run.generator, reduction="sum")
    n_valid = dist.all_sum((y != 255).sum().to(torch.float64))
    loss = total * dist.world / n_valid.clamp_min(1)
    loss_value = float(dist.all_sum(loss.detach().double()) / dist.world)  # rank-equal: all ranks stop together
    if not math.isfinite(loss_value):
        kept = (
            f"the checkpoint on disk is the one of step {run.saved_step}"
            if run.saved_step is not None
            else "no checkpoint was written"
        )
        raise CLIError(
            f"the loss is {loss_value} at step {run.step + 1} (lr {lr:g}): training stopped before "
            f"that update; {kept} (lower --lr?)"
        )
    run.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    run.optimizer.step()
    return loss_value


def train_one_epoch(run: TrainingRun, bar=None) -> bool:
    """Train on the rest of epoch run.epoch (from its batch run.pos) until the epoch ends (the run then
    stands at the next epoch's start), the run has done cfg.iters steps, or the time limit passes;
    returns whether the time limit stopped it."""
    cfg, dist = run.cfg, run.dist
    run.train_ds.set_epoch(run.epoch)
    order = epoch_batches(len(run.train_ds), cfg.batch_size, dist, cfg.seed, run.epoch)
    for x, y in batches(run.train_ds, order[run.pos :], cfg.num_workers):
        lr = lr_at(cfg, run.step)
        run.last_loss = train_step(run, x, y, lr)
        run.step, run.pos = run.step + 1, run.pos + 1
        run.elapsed = run.elapsed0 + time.perf_counter() - run.started
        if dist.enabled and cfg.max_seconds is not None:  # one clock for all ranks: a rank-equal stop
            run.elapsed = float(dist.all_max(torch.tensor(run.elapsed, dtype=torch.float64, device=run.device)))
        if run.step % cfg.log_every == 0 or run.step == cfg.iters:
            run.history.append({"step": run.step, "loss": run.last_loss, "lr": lr, "seconds": round(run.elapsed, 2)})
        if bar is not None:
            bar.update(1)
            if run.step % cfg.log_every == 0:
                bar.set_postfix(loss=f"{run.last_loss:.4f}", lr=f"{lr:.2e}")
        if cfg.val_every and run.step % cfg.val_every == 0 and run.step < cfg.iters:
            s = evaluate(run.model, run.val_ds, cfg.n_class, run.device, dist, cfg.batch_size, cfg.amp, cfg.num_workers)
            msg = f"step {run.step}: val {format_scores(s)}"
            (bar.write(msg) if bar is not None else log(dist, msg))
        if cfg.checkpoint_every and run.step % cfg.checkpoint_every == 0 and run.step < cfg.iters:
            write_checkpoint(run)
        if cfg.max_seconds is not None and run.elapsed > cfg.max_seconds:
            return True
        if run.step >= cfg.iters:
            return False
    run.epoch, run.pos = run.epoch + 1, 0
    return False


def checkpoint_payload(run: TrainingRun, rngs: list) -> dict:
    """checkpoint.pt: the model (and how to rebuild it), the optimizer, the position and every rank's
    random streams (`rngs`), so that a resumed run continues the same run; and the run's options."""
    cfg = run.cfg
    return {
        "format": FORMAT,
        "version": VERSION,
        "model_config": run.model_config,
        "model": run.model.state_dict(),
        "optimizer": run.optimizer.state_dict(),
        "step": run.step,
        "epoch": run.epoch,
        "pos": run.pos,
        "elapsed": run.elapsed,
        "world": run.dist.world,
        "rng": rngs,
        "config": config_mod.as_dict(cfg),
        "written_by": run.written_by,
        "class_names": list(getattr(run.train_ds, "class_names", None) or []),
    }


def write_checkpoint(run: TrainingRun) -> None:
    check_finite(run.model, run.step)
    rngs = run.dist.gather(rng_state(run.generator))  # every rank joins the gather
    if run.dist.main:
        save_checkpoint(run.checkpoint_path, checkpoint_payload(run, rngs))
    run.saved_step = run.step


def finish(run: TrainingRun) -> dict:
    """The last checkpoint and the final evaluation; metrics.json and overlay.png. Returns the metrics."""
    cfg, dist, out = run.cfg, run.dist, run.out
    stopped_early = run.step < cfg.iters
    if stopped_early:
        log(dist, f"time limit of {cfg.max_seconds:g} s reached at step {run.step}/{cfg.iters}")
    write_checkpoint(run)
    digests = dist.gather(weight_digest(run.model))

    s, seconds = timed_evaluate(cfg, dist, run.model, run.val_ds, cfg.n_class, run.device)
    result = dict(
        s,
        split=cfg.val_split,
        step=run.step,
        iters=cfg.iters,
        epoch=run.epoch,
        stopped_early=stopped_early,
        train_seconds=round(run.elapsed - run.elapsed0, 3),
        total_train_seconds=round(run.elapsed, 3),
        eval_seconds=seconds,
        final_loss=run.last_loss,
        loss_history=run.history,
        model=run.model_config,
        fused=cfg.fused,
        amp=cfg.amp,
        device=str(run.device),
        world_size=dist.world,
        global_batch=cfg.batch_size,
        checkpoint=str(run.checkpoint_path),
        rank_weight_digests=digests,
    )
    if dist.main:
        from .overlay import write_overlay

        if len(set(digests)) != 1:
            print("warning: the ranks' weights differ", file=sys.stderr)
        result["overlay"] = write_overlay(
            run.model, run.val_ds, out / "overlay.png", run.device, n=cfg.overlay_images, amp=cfg.amp
        )
        save_metrics(out / "metrics.json", result)
        print(f"val ({len(run.val_ds)} images): {format_scores(s)}")
        print(
            f"checkpoint: {run.checkpoint_path}\nmetrics: {out / 'metrics.json'}\noverlay: {result['overlay']}",
            flush=True,
        )
    dist.barrier()
    return result


def train(cfg, dist, device, ckpt=None, written_by="train") -> dict:
    """Train as `cfg` says (a resolved TrainConfig) on the process group `dist`, continuing `ckpt` when
    given; returns the final metrics. Writes checkpoint.pt, metrics.json and overlay.png under cfg.out."""
    run = setup(cfg, dist, device, ckpt, written_by)
    run.model.train()
    run.started = time.perf_counter()
    run.elapsed = run.elapsed0
    bar = None
    if cfg.progress and dist.main:
        from tqdm import tqdm

        bar = tqdm(total=cfg.iters, initial=run.step, desc="train", dynamic_ncols=True, file=sys.stderr)
    out_of_time = False
    while run.step < cfg.iters and not out_of_time:
        out_of_time = train_one_epoch(run, bar)
    if bar is not None:
        bar.close()
    return finish(run)
