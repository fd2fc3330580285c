"""Training and evaluation loops behind `fcn-kernels train / eval / demo`.

Single process or under torchrun (DistributedDataParallel: gloo on CPU, nccl
on CUDA). Semantics that make runs reproducible and world-size independent:

- ``batch_size`` is the *global* batch; each of W ranks takes batch_size / W.
  Epoch e's order is DistributedSampler's permutation for (seed, e); rank r
  takes every W-th index, so the union of the ranks' k-th batches is the
  single-process k-th batch.
- The loss is the sum of the per-pixel terms over the global batch divided by
  the global number of non-ignored pixels (an all-reduced count), so DDP's
  gradient averaging gives exactly the single-process gradient.
- Checkpoints hold the model, optimizer, step, epoch, position in the epoch,
  elapsed time and every rank's RNG states: resuming continues the same run.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn as nn

from .errors import CLIError, DataError
from .data import SyntheticShapes, VOCSegmentation, deprocess, overlay_panel, pad_collate, save_overlay
from .losses import class_frequencies, class_weights, pixelwise_cross_entropy
from .metrics import ConfusionMatrix

CHECKPOINT_FORMAT = "fcn-kernels-checkpoint"
CHECKPOINT_VERSION = 1
ARCHS = ("fcn32s", "fcn16s", "fcn8s", "fcn8s-atonce")


# ---------------------------------------------------------------- distributed ----

class Dist:
    """Process-group facts: world size, rank, local rank (1, 0, 0 when not distributed)."""

    def __init__(self):
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self.enabled = self.world > 1
        self.owned = False

    @property
    def main(self):
        return self.rank == 0

    def setup(self, device: torch.device):
        if not self.enabled or dist.is_initialized():
            return
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend)
        self.owned = True

    def teardown(self):
        if self.owned and dist.is_initialized():
            dist.destroy_process_group()

    def all_sum(self, t: torch.Tensor) -> torch.Tensor:
        if self.enabled:
            dist.all_reduce(t)
        return t

    def all_max(self, t: torch.Tensor) -> torch.Tensor:
        if self.enabled:
            dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return t

    def gather(self, obj):
        if not self.enabled:
            return [obj]
        out = [None] * self.world
        dist.all_gather_object(out, obj)
        return out

    def barrier(self):
        if self.enabled:
            dist.barrier()


def resolve_device(name: str | None, d: Dist) -> torch.device:
    if name in (None, "auto"):
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise CLIError(f"bad --device {name!r}: {exc}") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise CLIError(f"--device {name}: CUDA is not available on this machine (use --device cpu)")
        if device.index is None:
            device = torch.device("cuda", d.local_rank if d.enabled else torch.cuda.current_device())
        torch.cuda.set_device(device)
    return device


# ---------------------------------------------------------------- model ----

def _model_classes():
    from . import models
    return {"fcn32s": models.FCN32s, "fcn16s": models.FCN16s, "fcn8s": models.FCN8s,
            "fcn8s-atonce": models.FCN8sAtOnce}


def build_model(config: dict, fused: bool = True) -> nn.Module:
    """A model from a config {arch, n_class, width, dropout} (the checkpoint's model_config)."""
    arch = config["arch"]
    classes = _model_classes()
    if arch not in classes:
        raise CLIError(f"unknown model {arch!r}; choose one of {', '.join(ARCHS)}")
    return classes[arch](n_class=config["n_class"], fused=fused, width=config["width"],
                         dropout=config.get("dropout", 0.5))


@torch.no_grad()
def kaiming_init(model: nn.Module) -> None:
    """He initialisation of the trunk (conv1_1 ... fc7) for training from scratch; the score
    layers stay zero and the upsampling bilinear, as in the reference."""
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d) and (name.startswith("conv") or name in ("fc6", "fc7")):
            nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            if m.bias is not None:
                m.bias.zero_()


def weight_digest(model: nn.Module) -> str:
    """SHA-256 of the parameters' bytes (in state_dict order): equal iff bitwise equal."""
    h = hashlib.sha256()
    for k, v in model.state_dict().items():
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes()
                 if v.numel() else b"")
    return h.hexdigest()


# ---------------------------------------------------------------- data ----

def build_dataset(args, split: str, train: bool):
    """The synthetic set (``--data synthetic``) or a VOC-format directory."""
    if args.data == "synthetic":
        n = args.train_size if train else args.val_size
        return SyntheticShapes(length=n, size=args.image_size, n_class=args.n_class, seed=args.data_seed,
                               split=split, max_shapes=args.max_shapes, preprocess=args.preprocess or "rgb_norm",
                               flip=train and args.flip)
    return VOCSegmentation(args.data, split=split, n_class=args.n_class, preprocess=args.preprocess or "bgr_mean",
                           flip=train and args.flip, seed=args.seed)


def epoch_batches(n_items: int, batch_size: int, d: Dist, seed: int, epoch: int, shuffle: bool = True):
    """This rank's batches (lists of indices) of an epoch; see the module doc."""
    from torch.utils.data import DistributedSampler

    local = batch_size // d.world
    sampler = DistributedSampler(range(n_items), num_replicas=d.world, rank=d.rank, shuffle=shuffle,
                                 seed=seed, drop_last=True)
    sampler.set_epoch(epoch)
    idx = list(sampler)
    return [idx[i * local:(i + 1) * local] for i in range(len(idx) // local)]


def make_loader(ds, batches, num_workers: int):
    from torch.utils.data import DataLoader

    # its own generator: creating an iterator must not draw from the global RNG (dropout's stream),
    # or a resumed run would see other dropout masks
    return DataLoader(ds, batch_sampler=batches, collate_fn=pad_collate, num_workers=num_workers,
                      persistent_workers=False, generator=torch.Generator())


# ---------------------------------------------------------------- checkpoints ----

def _rng_state(gen: torch.Generator | None):
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    if gen is not None:
        state["loss_sampling"] = gen.get_state()
    return state


def _set_rng_state(state, gen: torch.Generator | None):
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if gen is not None and "loss_sampling" in state:
        gen.set_state(state["loss_sampling"])


def load_checkpoint(path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise CLIError(f"checkpoint {str(path)!r} does not exist")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the same error to the user
        raise CLIError(f"cannot read checkpoint {str(path)!r}: {exc}") from None
    return ckpt


def is_own_checkpoint(ckpt) -> bool:
    return isinstance(ckpt, dict) and ckpt.get("format") == CHECKPOINT_FORMAT


def check_architecture(ckpt_config: dict, requested: dict, path) -> None:
    """Error when the user asked (explicitly) for another architecture than the checkpoint's."""
    diffs = [f"{k}: checkpoint has {ckpt_config.get(k)!r}, asked for {v!r}" for k, v in requested.items()
             if v is not None and ckpt_config.get(k) != v]
    if diffs:
        desc = ", ".join(f"{k}={ckpt_config.get(k)}" for k in ("arch", "n_class", "width"))
        raise CLIError(f"checkpoint {str(path)!r} is of another architecture ({desc}): " + "; ".join(diffs))


def load_model_state(model: nn.Module, state_dict: dict, path) -> None:
    try:
        model.load_state_dict(state_dict, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        raise CLIError(f"checkpoint {str(path)!r} does not fit the model {type(model).__name__}: "
                       + " ".join(line.strip() for line in first[:4])) from None


def save_checkpoint(path: Path, payload: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


# ---------------------------------------------------------------- evaluation ----

def autocast(device: torch.device, amp: bool):
    if not amp:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


@torch.no_grad()
def evaluate(model, ds, n_class, device, d: Dist, batch_size=1, amp=False, num_workers=0, progress=False):
    """The four metrics over the data set (each rank scores every W-th image, no padding;
    the confusion matrices are summed)."""
    from torch.utils.data import DataLoader

    was_training = model.training
    model.eval()
    mine = list(range(d.rank, len(ds), d.world))
    local_bs = max(1, batch_size // d.world)
    batches = [mine[i:i + local_bs] for i in range(0, len(mine), local_bs)]
    cm = ConfusionMatrix(n_class, device=device)
    loader = DataLoader(ds, batch_sampler=batches, collate_fn=pad_collate, num_workers=num_workers,
                        generator=torch.Generator())
    it = loader
    if progress:
        from tqdm import tqdm
        it = tqdm(loader, desc="eval", leave=False, dynamic_ncols=True, file=sys.stderr)
    for x, y in it:
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        with autocast(device, amp):
            out = model(x)
        cm.update(out.argmax(1), y)
    cm.all_reduce()
    model.train(was_training)
    scores = cm.compute()
    scores["per_class_iu"] = [None if math.isnan(v) else v for v in cm.per_class_iu()]
    scores["n_images"] = len(ds)
    scores["n_pixels"] = int(cm.hist.sum())
    return scores


@torch.no_grad()
def write_overlay(model, ds, path, device, n=4, amp=False, preprocess_mode=None, scale=None) -> str:
    """image | ground truth | prediction for the first n items of ds, as a PNG."""
    was_training = model.training
    model.eval()
    rows = []
    for i in range(min(n, len(ds))):
        x, y = ds[i]
        with autocast(device, amp):
            pred = model(x[None].to(device)).argmax(1)[0].cpu()
        image = ds.raw(i)[0] if hasattr(ds, "raw") else deprocess(x, preprocess_mode or "bgr_mean")
        rows.append(overlay_panel(image, y, pred))
    model.train(was_training)
    if scale is None:
        scale = max(1, 256 // max(r.shape[0] for r in rows))
    return save_overlay(path, rows, scale=scale)


def _named(scores: dict, names) -> dict:
    out = dict(scores)
    per = scores.get("per_class_iu")
    if per is not None and names is not None and len(names) == len(per):
        out["per_class_iu"] = dict(zip(names, per))
    return out


def format_scores(s: dict) -> str:
    return " ".join(f"{k} {s[k]:.4f}" for k in ("pixel_acc", "mean_acc", "mean_iu", "fw_iu"))


def log(d: Dist, *msg):
    if d.main:
        print(*msg, flush=True)


# ---------------------------------------------------------------- training ----

def lr_at(args, step: int, elapsed: float) -> float:
    """constant; poly: lr (1 - step / iters)^0.9; poly-time: lr (1 - t / max_seconds)^0.9 with t the
    training time so far, so that a time-budgeted run anneals fully whatever the machine's speed
    (such a run, unlike the others, depends on timing and does not resume exactly)."""
    if args.lr_schedule == "poly":
        return args.lr * (1 - step / args.iters) ** 0.9
    if args.lr_schedule == "poly-time":
        frac = max(step / args.iters, min(1.0, elapsed / args.max_seconds))
        return args.lr * (1 - frac) ** 0.9
    return args.lr


def train(args) -> dict:
    """Run `fcn-kernels train` with parsed args; returns the final metrics dict."""
    d = Dist()
    device = resolve_device(args.device, d)
    d.setup(device)
    try:
        return _train(args, d, device)
    finally:
        d.teardown()


def _train(args, d: Dist, device: torch.device) -> dict:
    out = Path(args.out)
    ckpt_path = out / "checkpoint.pt"
    if args.batch_size % d.world:
        raise CLIError(f"--batch-size {args.batch_size} (the global batch) must be divisible by the "
                       f"world size {d.world}")
    # ---- resume / overwrite policy
    ckpt = None
    requested = {"arch": args.model, "n_class": args.n_class, "width": args.width}
    if args.resume:
        ckpt = load_checkpoint(args.resume)
        if not is_own_checkpoint(ckpt):
            raise CLIError(f"{args.resume!r} is not an fcn-kernels training checkpoint (no 'format' "
                           f"{CHECKPOINT_FORMAT!r}); to start from pretrained weights use --init-from")
        check_architecture(ckpt["model_config"], requested, args.resume)
        model_config = dict(ckpt["model_config"])
        if ckpt_path.exists() and not args.overwrite and Path(args.resume).resolve() != ckpt_path.resolve():
            raise CLIError(f"{str(ckpt_path)!r} exists and is not the checkpoint being resumed; pass --overwrite "
                           "to replace it, or choose another --out")
    else:
        if ckpt_path.exists() and not args.overwrite:
            raise CLIError(f"{str(ckpt_path)!r} already exists; pass --overwrite to replace it, --resume "
                           f"{ckpt_path} to continue it, or choose another --out")
        model_config = {"arch": args.model or "fcn8s", "n_class": args.n_class or (4 if args.data == "synthetic" else 21),
                        "width": args.width if args.width is not None else 1.0,
                        "dropout": args.dropout if args.dropout is not None else 0.5}
    args.n_class = model_config["n_class"]
    if args.iters is None or args.iters < 1:
        raise CLIError("--iters must be a positive number of optimizer steps")
    if args.lr_schedule == "poly-time" and not args.max_seconds:
        raise CLIError("--lr-schedule poly-time needs --max-seconds (the time the schedule spans)")

    # ---- data
    train_ds = build_dataset(args, args.train_split, train=True)
    val_ds = build_dataset(args, args.val_split, train=False)
    if len(train_ds) < args.batch_size:
        raise CLIError(f"the training split has {len(train_ds)} images, fewer than --batch-size {args.batch_size}")
    names = getattr(train_ds, "class_names", None)

    # ---- model, optimizer
    torch.manual_seed(args.seed)
    model = build_model(model_config, fused=args.fused).to(device)
    if ckpt is None:
        if args.init == "kaiming":
            kaiming_init(model)
        if args.init_from:
            _init_from(model, args.init_from)
    params = [p for p in model.parameters() if p.requires_grad]
    if args.optimizer == "sgd":
        opt = torch.optim.SGD(params, lr=args.lr, momentum=args.momentum, weight_decay=args.weight_decay)
    else:
        opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=args.weight_decay)
    step, epoch, pos, elapsed0 = 0, 0, 0, 0.0
    gen = torch.Generator(device=device)
    gen.manual_seed(args.seed * 1000003 + d.rank)
    torch.manual_seed(args.seed * 1000003 + d.rank + 1)  # dropout: a stream per rank
    if ckpt is not None:
        load_model_state(model, ckpt["model"], args.resume)
        opt.load_state_dict(ckpt["optimizer"])
        step, epoch, pos = ckpt["step"], ckpt["epoch"], ckpt["pos"]
        elapsed0 = ckpt.get("elapsed", 0.0)
        rngs = ckpt.get("rng", [])
        if len(rngs) == d.world:
            _set_rng_state(rngs[d.rank], gen)
        else:
            log(d, f"note: checkpoint from {len(rngs)} process(es), now {d.world}: random streams restart")
        if ckpt.get("world", 1) != d.world:
            log(d, "note: world size changed since the checkpoint; the sample order of this epoch restarts")
            pos = 0
        log(d, f"resumed {args.resume} at step {step}/{args.iters}")

    weight = None
    if args.class_weights != "none":
        counts = class_frequencies(train_ds, model_config["n_class"])
        weight = class_weights(counts, args.class_weights).to(device)
        log(d, "class weights:", " ".join(f"{w:.3g}" for w in weight.tolist()))

    net = model
    if d.enabled:
        from torch.nn.parallel import DistributedDataParallel as DDP
        net = DDP(model, device_ids=[device.index] if device.type == "cuda" else None)

    out.mkdir(parents=True, exist_ok=True)
    log(d, f"training {model_config['arch']} (n_class={model_config['n_class']}, width={model_config['width']}, "
           f"fused={args.fused}) on {train_ds!r}, device {device}, world {d.world}, global batch {args.batch_size}")

    def payload():
        rngs = d.gather(_rng_state(gen))
        return {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "model_config": model_config,
                "model": model.state_dict(), "optimizer": opt.state_dict(), "step": step, "epoch": epoch,
                "pos": pos, "elapsed": elapsed, "world": d.world, "rng": rngs,
                "args": {k: v for k, v in vars(args).items() if k != "func"}}

    def checkpoint():
        p = payload()  # every rank joins the gather
        if d.main:
            save_checkpoint(ckpt_path, p)

    # ---- loop
    model.train()
    t0 = time.perf_counter()
    elapsed = elapsed0
    bar = None
    if args.progress and d.main:
        from tqdm import tqdm
        bar = tqdm(total=args.iters, initial=step, desc="train", dynamic_ncols=True, file=sys.stderr)
    batches = epoch_batches(len(train_ds), args.batch_size, d, args.seed, epoch)
    if hasattr(train_ds, "set_epoch"):
        train_ds.set_epoch(epoch)
    it = iter(make_loader(train_ds, batches[pos:], args.num_workers))
    last_loss = math.nan
    stopped_early = False
    history = []
    while step < args.iters:
        try:
            x, y = next(it)
        except StopIteration:
            epoch, pos = epoch + 1, 0
            if hasattr(train_ds, "set_epoch"):
                train_ds.set_epoch(epoch)
            batches = epoch_batches(len(train_ds), args.batch_size, d, args.seed, epoch)
            it = iter(make_loader(train_ds, batches, args.num_workers))
            continue
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        lr = lr_at(args, step, elapsed)
        for g in opt.param_groups:
            g["lr"] = lr
        with autocast(device, args.amp):
            scores = net(x)
        total = pixelwise_cross_entropy(scores, y, weight, sample_p=args.sample_p, generator=gen, reduction="sum")
        n_valid = d.all_sum((y != 255).sum().to(torch.float64))
        loss = total * d.world / n_valid.clamp_min(1)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step, pos = step + 1, pos + 1
        elapsed = elapsed0 + time.perf_counter() - t0
        if d.enabled and args.max_seconds is not None:  # one clock for all ranks: rank-equal lr and stop
            elapsed = float(d.all_max(torch.tensor(elapsed, dtype=torch.float64, device=device)))
        if step % args.log_every == 0 or step == args.iters:
            last_loss = float(d.all_sum(loss.detach().double()) / d.world)
            history.append({"step": step, "loss": last_loss, "lr": lr, "seconds": round(elapsed, 2)})
        if bar is not None:
            bar.update(1)
            if step % args.log_every == 0:
                bar.set_postfix(loss=f"{last_loss:.4f}", lr=f"{lr:.2e}")
        if args.val_every and step % args.val_every == 0 and step < args.iters:
            s = evaluate(model, val_ds, model_config["n_class"], device, d, args.batch_size, args.amp,
                         args.num_workers)
            msg = f"step {step}: val {format_scores(s)}"
            (bar.write(msg) if bar is not None else log(d, msg))
        if args.checkpoint_every and step % args.checkpoint_every == 0 and step < args.iters:
            checkpoint()
        if args.max_seconds is not None and elapsed > args.max_seconds:
            stopped_early = step < args.iters
            break
    if bar is not None:
        bar.close()
    train_seconds = elapsed - elapsed0
    if stopped_early:
        log(d, f"time budget of {args.max_seconds:g} s reached at step {step}/{args.iters}")
    checkpoint()
    digests = d.gather(weight_digest(model))

    # ---- final evaluation
    t1 = time.perf_counter()
    s = evaluate(model, val_ds, model_config["n_class"], device, d, args.batch_size, args.amp,
                 args.num_workers, progress=args.progress and d.main)
    eval_seconds = time.perf_counter() - t1
    result = _named(s, names)
    result.update({
        "split": args.val_split, "step": step, "iters": args.iters, "epoch": epoch,
        "stopped_early": stopped_early, "train_seconds": round(train_seconds, 3),
        "total_train_seconds": round(elapsed, 3), "eval_seconds": round(eval_seconds, 3),
        "final_loss": last_loss, "loss_history": history, "model": model_config, "fused": args.fused,
        "amp": args.amp, "device": str(device), "world_size": d.world, "global_batch": args.batch_size,
        "checkpoint": str(ckpt_path), "rank_weight_digests": digests,
    })
    if d.main:
        if len(set(digests)) != 1:
            print("warning: the ranks' weights differ", file=sys.stderr)
        overlay = out / "overlay.png"
        write_overlay(model, val_ds, overlay, device, n=args.overlay_images, amp=args.amp,
                      preprocess_mode=getattr(val_ds, "preprocess", None))
        result["overlay"] = str(overlay)
        with open(out / "metrics.json", "w") as f:
            json.dump(result, f, indent=2)
        print(f"val ({len(val_ds)} images): {format_scores(s)}")
        print(f"checkpoint: {ckpt_path}\nmetrics: {out / 'metrics.json'}\noverlay: {overlay}", flush=True)
    d.barrier()
    return result


def _init_from(model, path):
    """Start from pretrained weights: torchvision VGG16 (fc layers convolutionalized) or a pytorch-fcn
    (torchfcn) checkpoint."""
    from . import models

    sd = load_checkpoint(path)
    if isinstance(sd, dict) and "model_state_dict" in sd:
        sd = sd["model_state_dict"]
    if not isinstance(sd, dict):
        raise CLIError(f"{path!r} does not hold a state_dict")
    try:
        if any(k.startswith("features.") for k in sd):
            models.load_vgg16(model, sd)
        else:
            models.load_torchfcn(model, sd)
    except (KeyError, ValueError, RuntimeError) as exc:
        raise CLIError(f"cannot initialise from {path!r}: {exc}") from None


# ---------------------------------------------------------------- eval command ----

def run_eval(args) -> dict:
    d = Dist()
    device = resolve_device(args.device, d)
    d.setup(device)
    try:
        return _run_eval(args, d, device)
    finally:
        d.teardown()


def _run_eval(args, d: Dist, device) -> dict:
    ckpt = load_checkpoint(args.checkpoint)
    requested = {"arch": args.model, "n_class": args.n_class, "width": args.width}
    if is_own_checkpoint(ckpt):
        check_architecture(ckpt["model_config"], requested, args.checkpoint)
        model_config = dict(ckpt["model_config"])
        state = ckpt["model"]
    else:
        if args.model is None or args.n_class is None:
            raise CLIError(f"{args.checkpoint!r} is not an fcn-kernels checkpoint; to evaluate a plain or "
                           "torchfcn state_dict give --model and --n-class (and --width)")
        model_config = {"arch": args.model, "n_class": args.n_class,
                        "width": args.width if args.width is not None else 1.0}
        state = None
    args.n_class = model_config["n_class"]
    model = build_model(model_config, fused=args.fused).to(device)
    if state is not None:
        load_model_state(model, state, args.checkpoint)
    else:
        _init_from(model, args.checkpoint)
    ds = build_dataset(args, args.split, train=False)
    t0 = time.perf_counter()
    s = evaluate(model, ds, model_config["n_class"], device, d, args.batch_size, args.amp, args.num_workers,
                 progress=args.progress and d.main)
    result = _named(s, getattr(ds, "class_names", None))
    result.update({"split": args.split, "eval_seconds": round(time.perf_counter() - t0, 3),
                   "model": model_config, "fused": args.fused, "amp": args.amp, "device": str(device),
                   "checkpoint": str(args.checkpoint), "step": ckpt.get("step") if is_own_checkpoint(ckpt) else None})
    if d.main:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        overlay = out / "overlay.png"
        write_overlay(model, ds, overlay, device, n=args.overlay_images, amp=args.amp,
                      preprocess_mode=getattr(ds, "preprocess", None))
        result["overlay"] = str(overlay)
        with open(out / "metrics.json", "w") as f:
            json.dump(result, f, indent=2)
        print(f"{args.split} ({len(ds)} images): {format_scores(s)}")
        print(f"metrics: {out / 'metrics.json'}\noverlay: {overlay}", flush=True)
    return result


__all__ = ["CLIError", "DataError", "train", "run_eval", "evaluate", "build_model", "weight_digest", "ARCHS"]
