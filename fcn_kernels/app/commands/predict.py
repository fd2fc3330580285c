"""`fcn-kernels predict`: label maps and overlays for images, from a training checkpoint.

    fcn-kernels predict photo.jpg more/*.png --checkpoint runs/a/checkpoint.pt --out preds

For each IMAGE (PNG or JPEG, any size) it writes OUT/<name>.png, the labels as a VOC-palette PNG, and
OUT/<name>_overlay.png, the image beside the prediction. Labels come from FCN*.predict, which on the fused
path never builds the full-resolution scores (fcn_kernels.upsample_argmax).
"""
import argparse

from ...data import PREPROCESS_MODES

NAME = "predict"
HELP = "label maps (VOC-palette PNGs) and overlays for images, from a checkpoint"
DESCRIPTION = ("Predict label maps for PNG/JPEG images of any size with a checkpoint; writes <name>.png (VOC "
               "palette) and <name>_overlay.png (image | prediction) per image to --out.")

def add_arguments(p):
    p.add_argument("images", nargs="+", metavar="IMAGE", help="PNG or JPEG files")
    p.add_argument("--checkpoint", required=True, help="an fcn-kernels training checkpoint (checkpoint.pt)")
    p.add_argument("--out", required=True, help="output folder (created if missing)")
    p.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32",
                   help="compute precision (bfloat16: autocast)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ...; None: cuda if available")
    p.add_argument("--batch-size", type=int, default=1,
                   help="images per forward pass (images of one size are batched together)")
    p.add_argument("--fused", action=argparse.BooleanOptionalAction, default=True,
                   help="fused kernels, labels without full-resolution scores (--no-fused: the stock composition)")
    p.add_argument("--preprocess", choices=PREPROCESS_MODES, default=None,
                   help="input preprocessing (default: the checkpoint's training preprocessing)")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True,
                   help="a progress bar when there are several images")


def _opened(path):
    """The PIL image of a PNG or JPEG file; DataError naming the file otherwise."""
    from PIL import Image, UnidentifiedImageError

    from ...errors import DataError

    if not path.is_file():
        raise DataError(f"image {str(path)!r} does not exist")
    try:
        im = Image.open(path)
    except (UnidentifiedImageError, OSError) as exc:
        raise DataError(f"{str(path)!r} is not a readable image: {exc}") from None
    if im.format not in ("PNG", "JPEG"):
        im.close()
        raise DataError(f"{str(path)!r} is a {im.format} image; expected PNG or JPEG")
    return im


def _read_rgb(path):
    import numpy as np

    from ...errors import DataError

    with _opened(path) as im:
        try:
            return np.asarray(im.convert("RGB"))
        except OSError as exc:  # truncated or corrupt data
            raise DataError(f"cannot decode image {str(path)!r}: {exc}") from None


def _batches(sizes, batch_size):
    """Indices of the images in batches of at most batch_size images of one size, in input order."""
    by_size = {}
    for k, size in enumerate(sizes):
        by_size.setdefault(size, []).append(k)
    return [ks[i:i + batch_size] for ks in by_size.values() for i in range(0, len(ks), batch_size)]


def _load_model(path, fused, device):
    """The checkpoint's model on device in eval mode, its training preprocessing and its class names."""
    from ..checkpoint import load_model_state, load_own_checkpoint
    from ..factory import build_model
    from ...errors import CLIError

    ckpt = load_own_checkpoint(path)
    if not {"model_config", "model", "config"} <= ckpt.keys():
        raise CLIError(f"{path!r} is not a complete fcn-kernels training checkpoint (no model or config)")
    model = build_model(ckpt["model_config"], fused=fused)
    load_model_state(model, ckpt["model"], path)
    if model.n_class > 256:
        raise CLIError(f"{path!r}: {model.n_class} classes do not fit a palette PNG (at most 256)")
    return model.to(device).eval(), ckpt["config"]["preprocess"], ckpt.get("class_names") or None


def run(args):
    import sys
    from pathlib import Path

    import torch

    from ..._io import atomic_write
    from ..device import autocast, resolve_device
    from ..distributed import Dist
    from ...data import preprocess, save_overlay, tint, write_voc_label
    from ...errors import CLIError

    if args.batch_size < 1:
        raise CLIError(f"--batch-size must be >= 1, got {args.batch_size}")
    paths = [Path(p) for p in args.images]
    out = Path(args.out)
    names = [p.stem for p in paths]
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise CLIError(f"several images are named {', '.join(dup)}: their outputs in {str(out)!r} would collide")
    if out.is_dir():
        taken = {(out / f"{n}{s}").resolve() for n in names for s in (".png", "_overlay.png")}
        clash = [str(p) for p in paths if p.resolve() in taken]
        if clash:
            raise CLIError(f"{clash[0]!r} is an input and would be overwritten by an output; choose another --out")
    sizes = []
    for p in paths:  # every file checked before any work
        with _opened(p) as im:
            sizes.append(im.size)
    device = resolve_device(args.device, Dist())
    model, mode, class_names = _load_model(args.checkpoint, args.fused, device)
    mode = args.preprocess or mode
    out.mkdir(parents=True, exist_ok=True)
    bar = None
    if args.progress and len(paths) > 1:
        from tqdm import tqdm
        bar = tqdm(total=len(paths), desc="predict", unit="image", dynamic_ncols=True, file=sys.stderr)
    for batch in _batches(sizes, args.batch_size):
        images = [_read_rgb(paths[k]) for k in batch]
        x = torch.stack([preprocess(im, mode) for im in images]).to(device)
        with autocast(device, args.dtype == "bfloat16"):
            labels = model.predict(x).cpu().numpy()
        for k, image, label in zip(batch, images, labels):
            with atomic_write(out / f"{names[k]}.png") as f:
                write_voc_label(f, label)
            save_overlay(out / f"{names[k]}_overlay.png", [[image, tint(image, label)]],
                         titles=("image", "prediction"), class_names=class_names)
        if bar is not None:
            bar.update(len(batch))
    if bar is not None:
        bar.close()
    print(f"predict: {len(paths)} label map(s) and overlay(s) written to {out}")
    return 0
