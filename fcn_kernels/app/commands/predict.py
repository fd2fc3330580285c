"""`fcn-kernels predict`: label maps and overlays for images, from a training checkpoint.

    fcn-kernels predict photo.jpg more/*.png --checkpoint runs/a/checkpoint.pt --out preds
    fcn-kernels predict photos/ --checkpoint runs/a/checkpoint.pt --out preds --keep-going

For each IMAGE (PNG, JPEG, BMP, PPM, TIFF or WebP, any size; a folder stands for the images in it) it writes
OUT/<name>.png, the labels as a VOC-palette PNG, and OUT/<name>_overlay.png, the image beside the
prediction. Labels come from FCN*.predict, which on the fused path never builds the full-resolution scores
(fcn_kernels.upsample_argmax).
"""

import argparse
import functools

from ...data import PREPROCESS_MODES

NAME = "predict"
HELP = "label maps (VOC-palette PNGs) and overlays for images, from a checkpoint"
DESCRIPTION = (
    "Predict label maps for images of any size with a checkpoint; writes <name>.png (VOC palette) "
    "and <name>_overlay.png (image | prediction) per image to --out. Every image is opened before "
    "any work: one that cannot be read stops the run, unless --keep-going."
)

# A folder's images, as mmsegmentation's and ultralytics' predict take a source folder.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".tif", ".tiff", ".webp")
# PIL's names of the formats those extensions hold; MPO is the JPEG of many cameras (several pictures).
FORMATS = ("PNG", "JPEG", "MPO", "BMP", "PPM", "TIFF", "WEBP")


def add_arguments(p):
    p.add_argument(
        "images",
        nargs="+",
        metavar="IMAGE",
        help="image files, or folders: a folder stands for its files named "
        f"*{' *'.join(IMAGE_EXTENSIONS)} (any case; not hidden ones, not subfolders), sorted by name",
    )
    p.add_argument("--checkpoint", required=True, help="an fcn-kernels training checkpoint (checkpoint.pt)")
    p.add_argument("--out", required=True, help="output folder (created if missing)")
    p.add_argument(
        "--dtype", choices=("float32", "bfloat16"), default="float32", help="compute precision (bfloat16: autocast)"
    )
    p.add_argument(
        "--engine",
        choices=("torch", "openvino", "onnxruntime"),
        default="torch",
        help="torch: all of the model in PyTorch; openvino, onnxruntime: the trunk and score layers in that engine "
        "on the CPU (onnxruntime: float32 only), the fused head in PyTorch (optimize_for_inference)",
    )
    p.add_argument(
        "--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available; cpu with --engine)"
    )
    p.add_argument(
        "--batch-size", type=int, default=1, help="images per forward pass (images of one size are batched together)"
    )
    switch = functools.partial(p.add_argument, action=argparse.BooleanOptionalAction, default=True)
    switch("--fused", help="fused kernels, labels without full-resolution scores (--no-fused: the stock composition)")
    p.add_argument(
        "--preprocess",
        choices=PREPROCESS_MODES,
        default=None,
        help="input preprocessing (default: the checkpoint's training preprocessing)",
    )
    switch("--progress", help="a progress bar when there are several images")
    p.add_argument(
        "--keep-going",
        action="store_true",
        help="skip an image that cannot be read (one line on stderr each), write the others, then "
        "exit with status 1 and a summary (without it: such an image stops the run before any "
        "work, status 2)",
    )


def _image_paths(sources):
    """The images of the command line: a file as it is, a folder as its images (IMAGE_EXTENSIONS in any
    case, regular files, not hidden ones), sorted by name. CLIError for a folder without any."""
    from pathlib import Path

    from ...errors import CLIError

    paths = []
    for source in sources:
        path = Path(source)
        if not path.is_dir():
            paths.append(path)
            continue
        found = sorted(
            (
                f
                for f in path.iterdir()
                if f.suffix.lower() in IMAGE_EXTENSIONS and not f.name.startswith(".") and f.is_file()
            ),
            key=lambda f: f.name,
        )
        if not found:
            raise CLIError(f"folder {source!r} has no images (files named *{' *'.join(IMAGE_EXTENSIONS)}, any case)")
        paths += found
    return paths


def _pil_errors():
    from PIL import Image

    # what PIL raises for a broken file: OSError (UnidentifiedImageError among them) and, from some of its
    # decoders, SyntaxError, ValueError or EOFError; DecompressionBombError for a picture too big to open
    return OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError


def _opened(path):
    """The PIL image of a file in one of FORMATS; DataError naming the file otherwise."""
    from PIL import Image

    from ...errors import DataError

    if not path.is_file():
        raise DataError(f"image {str(path)!r} does not exist")
    try:
        im = Image.open(path)
    except _pil_errors() as exc:
        raise DataError(f"{str(path)!r} is not a readable image: {exc}") from None
    if im.format not in FORMATS:
        im.close()
        raise DataError(f"{str(path)!r} is a {im.format} image; expected {', '.join(FORMATS)}")
    return im


def _read_rgb(path):
    import numpy as np

    from ...errors import DataError

    with _opened(path) as im:
        try:
            return np.asarray(im.convert("RGB"))
        except _pil_errors() as exc:  # truncated or corrupt data
            raise DataError(f"cannot decode image {str(path)!r}: {exc}") from None


def _stops(exc, n_images):
    """The error that ends a run at a bad image, with the way round it when there are others."""
    from ...errors import DataError

    return DataError(f"{exc} (--keep-going skips such images)") if n_images > 1 else exc


def _batches(sizes, batch_size):
    """Indices of the images in batches of at most batch_size images of one size, in input order."""
    by_size = {}
    for k, size in enumerate(sizes):
        by_size.setdefault(size, []).append(k)
    return [ks[i : i + batch_size] for ks in by_size.values() for i in range(0, len(ks), batch_size)]


def _load_model(path, fused, device):
    """The checkpoint's model on device in eval mode, its training preprocessing and its class names."""
    from ...errors import CLIError
    from ..checkpoint import load_model_state, load_own_checkpoint
    from ..factory import build_model

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
    from ...data import preprocess, save_overlay, tint, write_voc_label
    from ...errors import CLIError, DataError
    from ..device import autocast, resolve_device
    from ..distributed import Dist

    if args.batch_size < 1:
        raise CLIError(f"--batch-size must be >= 1, got {args.batch_size}")
    paths = _image_paths(args.images)
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
    skipped = []
    bar = None

    def skip(k, exc):  # --keep-going: report a bad image, go on without it
        skipped.append(k)
        line = f"fcn-kernels predict: skipped: {exc}"
        if bar is None:
            print(line, file=sys.stderr)
        else:
            bar.write(line, file=sys.stderr)

    good, sizes = [], {}
    for k, p in enumerate(paths):  # every file checked before any work
        try:
            with _opened(p) as im:
                sizes[k] = im.size
            good.append(k)
        except DataError as exc:
            if not args.keep_going:
                raise _stops(exc, len(paths)) from None
            skip(k, exc)
    written = 0
    if good:
        device = resolve_device(args.device or ("cpu" if args.engine != "torch" else None), Dist())
        if args.engine != "torch" and device.type != "cpu":
            raise CLIError(f"--engine {args.engine} runs on the CPU, not on --device {args.device}")
        model, mode, class_names = _load_model(args.checkpoint, args.fused, device)
        if args.engine != "torch":
            from ...models import optimize_for_inference

            try:  # the engine converts the model on the first batch
                model = optimize_for_inference(model, getattr(torch, args.dtype), compile=False, engine=args.engine)
            except (ImportError, ValueError) as exc:
                raise CLIError(f"--engine {args.engine}: {exc}") from None
        mode = args.preprocess or mode
        out.mkdir(parents=True, exist_ok=True)
        if args.progress and len(good) > 1:
            from tqdm import tqdm

            bar = tqdm(total=len(good), desc="predict", unit="image", dynamic_ncols=True, file=sys.stderr)
        for batch in _batches([sizes[k] for k in good], args.batch_size):
            batch, images = [good[i] for i in batch], []
            tried = len(batch)
            for k in list(batch):
                try:
                    images.append(_read_rgb(paths[k]))
                except DataError as exc:  # the header was fine, the data is not
                    if not args.keep_going:
                        raise _stops(exc, len(paths)) from None
                    batch.remove(k)
                    skip(k, exc)
            if images:
                x = torch.stack([preprocess(im, mode) for im in images]).to(device)
                with autocast(device, args.dtype == "bfloat16" and args.engine == "torch"):
                    labels = model.predict(x).cpu().numpy()
                for k, image, label in zip(batch, images, labels):
                    with atomic_write(out / f"{names[k]}.png") as f:
                        write_voc_label(f, label)
                    save_overlay(
                        out / f"{names[k]}_overlay.png",
                        [[image, tint(image, label)]],
                        titles=("image", "prediction"),
                        class_names=class_names,
                    )
                written += len(batch)
            if bar is not None:
                bar.update(tried)  # skipped ones too
        if bar is not None:
            bar.close()
    if written or not skipped:
        print(f"predict: {written} label map(s) and overlay(s) written to {out}")
    if skipped:
        print(
            f"fcn-kernels predict: error: {len(skipped)} of {len(paths)} image(s) could not be read and were "
            f"skipped (listed above); {written} written",
            file=sys.stderr,
        )
        return 1
    return 0
