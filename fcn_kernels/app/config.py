"""The options of train, eval and demo: every default written once, here; the parsers are built from these.

Each field is one command-line option (``n_class`` -> ``--n-class``); its metadata holds the help text
and the checks. A default that depends on other options (the class count of the data set, the
preprocessing) is None here and resolved in one place, :func:`resolve`.
"""

import argparse
import dataclasses
import types
from dataclasses import dataclass, field

from ..data import PREPROCESS_MODES, SHAPES
from ..data.synthetic import SPLITS as SYNTHETIC_SPLITS
from ..errors import CLIError

ARCHS = ("fcn32s", "fcn16s", "fcn8s", "fcn8s-atonce")
SYNTHETIC_CLASSES = (2, len(SHAPES) + 1)  # background + 1 to 6 shape kinds
VOC_N_CLASS = 21


def opt(
    default, help, *, shown=None, choices=None, negatable=False, at_least=None, above=None, at_most=None, required=False
):
    """A field that is a command-line option. `shown`: the default as --help writes it, when None stands
    for a rule; at_least / above / at_most: bounds checked by :func:`validate`."""
    return field(
        default=default,
        metadata=dict(
            help=help,
            shown=shown,
            choices=choices,
            negatable=negatable,
            at_least=at_least,
            above=above,
            at_most=at_most,
            required=required,
        ),
    )


@dataclass
class Common:
    """Options of every command."""

    data: str = opt("synthetic", "'synthetic' (generated, no download) or a VOC-format directory")
    n_class: int | None = opt(
        None,
        "classes incl. background (synthetic: 2 to 7)",
        at_least=2,
        shown="4 on synthetic, 21 on VOC; the checkpoint's when resuming or evaluating",
    )
    model: str = opt("fcn8s", "architecture (the checkpoint's when resuming or evaluating)", choices=ARCHS)
    width: float = opt(1.0, "trunk channel multiplier (the checkpoint's when resuming or evaluating)", above=0)
    device: str = opt("auto", "cpu, cuda, cuda:1 ... (auto: cuda if available)")
    threads: int | None = opt(None, "CPU threads of this process", at_least=1, shown="PyTorch's (one a core)")
    fused: bool = opt(
        True,
        "fused kernels: upsample+crop+skip, and in training the last upsampling with the loss, without "
        "full-resolution scores (--no-fused: the stock composition)",
        negatable=True,
    )
    amp: bool = opt(False, "bfloat16 autocast")
    batch_size: int = opt(1, "global batch (split across ranks)", at_least=1)
    preprocess: str | None = opt(
        None,
        "input preprocessing",
        choices=PREPROCESS_MODES,
        shown="rgb_norm on synthetic, bgr_mean (the reference's) on VOC",
    )
    image_size: int = opt(64, "synthetic: image side", at_least=1)
    max_shapes: int = opt(3, "synthetic: at most this many shapes an image", at_least=1)
    train_size: int = opt(1024, "synthetic: training images", at_least=1)
    val_size: int = opt(64, "synthetic: validation images", at_least=1)
    data_seed: int = opt(0, "synthetic: seed of the data")
    num_workers: int = opt(0, "data-loader worker processes", at_least=0)
    overlay_images: int = opt(4, "rows in overlay.png", at_least=1)
    progress: bool = opt(True, "progress bars", negatable=True)
    dist_timeout: float = opt(300.0, "torchrun: seconds a rank waits for the others before it fails", above=0)


@dataclass
class TrainConfig(Common):
    """`fcn-kernels train`."""

    out: str | None = opt(None, "output folder", shown="fcn-kernels-run; the checkpoint's folder when resuming")
    iters: int | None = opt(None, "optimizer steps", at_least=1, shown="required; the checkpoint's when resuming")
    max_seconds: float | None = opt(
        None, "also stop (with a checkpoint) after this many seconds of training", at_least=0
    )
    lr: float = opt(1e-4, "learning rate", above=0)
    seed: int = opt(0, "seed of the initialisation, sample order, dropout and loss sampling")
    overwrite: bool = opt(False, "replace an existing checkpoint in --out")
    train_split: str = opt("train", "split to train on")
    val_split: str = opt("val", "split to evaluate on")
    optimizer: str = opt("sgd", "sgd (momentum) or adam (AdamW)", choices=("sgd", "adam"))
    momentum: float = opt(0.9, "sgd momentum", at_least=0)
    weight_decay: float = opt(5e-4, "weight decay", at_least=0)
    lr_schedule: str = opt("constant", "constant, or poly: lr (1 - step/iters)^0.9", choices=("constant", "poly"))
    dropout: float = opt(0.5, "drop6/drop7 probability", at_least=0, at_most=1)
    init: str = opt(
        "reference",
        "reference: the model's own init (for fine-tuning); kaiming: He init of the trunk (training from scratch)",
        choices=("reference", "kaiming"),
    )
    init_from: str | None = opt(None, "torchvision VGG16 or torchfcn weights to start from")
    flip: bool = opt(False, "random mirroring", negatable=True)
    sample_p: float = opt(
        1.0, "loss sampling: keep each pixel's loss with probability p (unbiased, paper 3.4)", above=0, at_most=1
    )
    class_weights: str = opt(
        "none", "class-balanced loss weights computed from the training labels", choices=("none", "inverse", "median")
    )
    resume: str | None = opt(None, "checkpoint to continue (exactly) from; its options are kept unless given")
    val_every: int = opt(0, "evaluate every N steps (0: only at the end)", at_least=0)
    checkpoint_every: int = opt(0, "save every N steps (0: only at the end)", at_least=0)
    log_every: int = opt(10, "record the loss every N steps", at_least=1)


@dataclass
class EvalConfig(Common):
    """`fcn-kernels eval`."""

    checkpoint: str | None = opt(None, "checkpoint (ours, a plain state_dict or torchfcn's) to evaluate", required=True)
    split: str = opt("val", "split to evaluate")
    out: str = opt("fcn-kernels-eval", "output folder")


# Options a resumed run takes from the command line only, never from its checkpoint.
NOT_INHERITED = frozenset(
    {"resume", "out", "overwrite", "progress", "device", "num_workers", "max_seconds", "dist_timeout", "threads"}
)


def with_defaults(base, name: str, **defaults):
    """A subclass of the config `base` whose listed fields have other, concrete defaults (same help and
    checks)."""
    by_name = {f.name: f for f in dataclasses.fields(base)}
    # a concrete default is shown as it is, not as the base's rule
    return dataclasses.make_dataclass(
        name,
        [
            (k, by_name[k].type, field(default=v, metadata=dict(by_name[k].metadata, shown=None)))
            for k, v in defaults.items()
        ],
        bases=(base,),
    )


class _Default:
    """A parser default: shows as its value in --help and tells "not given" from "given the default value"."""

    def __init__(self, value, shown=None):
        self.value, self.shown = value, shown

    def __str__(self):
        return str(self.value) if self.shown is None else self.shown


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """--help that writes each option's default after its help, except where there is none to write: a
    required option, or a default of None (no value, or a rule the help text states)."""

    def _get_help_string(self, action):
        default = action.default
        if isinstance(default, _Default) and default.shown is None:
            default = default.value
        if action.required or default is None:
            return action.help
        return super()._get_help_string(action)


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _scalar(t):
    if isinstance(t, types.UnionType):  # int | None
        t = next(a for a in t.__args__ if a is not type(None))
    return t


def add_arguments(parser: argparse.ArgumentParser, cls, only=None) -> None:
    """One option per field of `cls` (or of the names in `only`), with its help, choices and default."""
    for f in dataclasses.fields(cls):
        if only is not None and f.name not in only:
            continue
        m, kind = f.metadata, _scalar(f.type)
        kw = dict(default=_Default(f.default, m["shown"]), help=m["help"])
        if kind is bool:
            kw["action"] = argparse.BooleanOptionalAction if m["negatable"] else "store_true"
        else:
            kw.update(type=kind, choices=m["choices"])
            if m["required"]:
                kw.update(required=True, default=None)
        parser.add_argument(flag(f.name), **kw)


def given(args: argparse.Namespace) -> set[str]:
    """The options given on the command line."""
    return {k for k, v in vars(args).items() if not isinstance(v, _Default)}


def from_args(cls, args: argparse.Namespace, inherited: dict | None = None):
    """The config of `cls` from parsed options; options not given take `inherited`'s value (a resumed
    run's checkpoint) where it has one, except NOT_INHERITED, then the default."""
    values = {}
    for f in dataclasses.fields(cls):
        v = getattr(args, f.name, _Default(f.default))
        if isinstance(v, _Default):
            v = inherited[f.name] if inherited and f.name in inherited and f.name not in NOT_INHERITED else v.value
        values[f.name] = v
    return cls(**values)


def resolve(cfg):
    """Fill the defaults that depend on other options, then check every bound; returns `cfg`."""
    synthetic = cfg.data == "synthetic"
    if cfg.n_class is None:
        cfg.n_class = 4 if synthetic else VOC_N_CLASS
    if cfg.preprocess is None:
        cfg.preprocess = "rgb_norm" if synthetic else "bgr_mean"
    validate(cfg)
    if synthetic:
        for name in ("train_split", "val_split", "split"):
            if getattr(cfg, name, "train") not in SYNTHETIC_SPLITS:
                raise CLIError(
                    f"{flag(name)} {getattr(cfg, name)!r}: the synthetic set's splits are {', '.join(SYNTHETIC_SPLITS)}"
                )
    lo, hi = SYNTHETIC_CLASSES
    if synthetic and not lo <= cfg.n_class <= hi:
        raise CLIError(
            f"--n-class {cfg.n_class}: the synthetic set has {lo} to {hi} classes (background and "
            f"up to {hi - 1} shape kinds: {', '.join(SHAPES)})"
        )
    return cfg


def validate(cfg) -> None:
    for f in dataclasses.fields(cfg):
        v, m = getattr(cfg, f.name), f.metadata
        if v is None or isinstance(v, bool):
            continue
        for bound, ok, words in (
            ("at_least", lambda b: v >= b, ">="),
            ("above", lambda b: v > b, ">"),
            ("at_most", lambda b: v <= b, "<="),
        ):
            if m.get(bound) is not None and not ok(m[bound]):
                raise CLIError(f"{flag(f.name)} {v}: must be {words} {m[bound]}")


def as_dict(cfg) -> dict:
    """The config as plain values (what a checkpoint stores)."""
    return dataclasses.asdict(cfg)
