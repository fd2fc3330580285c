"""Options shared by train, eval and demo."""
import argparse

from ..data import PREPROCESS_MODES
from ..engine import ARCHS


def common(p, device_default=None):
    p.add_argument("--data", default="synthetic",
                   help="'synthetic' (generated, no download) or a VOC-format directory (default: synthetic)")
    p.add_argument("--n-class", type=int, default=None, help="classes incl. background (VOC 21; synthetic 2-7)")
    p.add_argument("--model", choices=ARCHS, default=None, help="architecture (default fcn8s; from the checkpoint "
                   "when resuming or evaluating)")
    p.add_argument("--width", type=float, default=None, help="trunk channel multiplier (default 1.0)")
    p.add_argument("--device", default=device_default, help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    p.add_argument("--fused", action=argparse.BooleanOptionalAction, default=True,
                   help="fused upsample+crop+skip kernels (--no-fused: the stock composition)")
    p.add_argument("--amp", action="store_true", help="bfloat16 autocast")
    p.add_argument("--batch-size", type=int, default=None, help="global batch (split across ranks)")
    p.add_argument("--out", default=None, help="output folder")
    p.add_argument("--preprocess", choices=PREPROCESS_MODES, default=None,
                   help="input preprocessing (default: bgr_mean, the reference's, for VOC; rgb_norm for synthetic)")
    p.add_argument("--image-size", type=int, default=64, help="synthetic: image side")
    p.add_argument("--max-shapes", type=int, default=3, help="synthetic: at most this many shapes an image")
    p.add_argument("--train-size", type=int, default=1024, help="synthetic: training images")
    p.add_argument("--val-size", type=int, default=64, help="synthetic: validation images")
    p.add_argument("--data-seed", type=int, default=0, help="synthetic: seed of the data")
    p.add_argument("--num-workers", type=int, default=0, help="data-loader worker processes")
    p.add_argument("--overlay-images", type=int, default=4, help="rows in overlay.png")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True, help="progress bars")


def train_opts(p, demo=False):
    p.add_argument("--iters", type=int, default=None, help="optimizer steps" + ("" if demo else " (required)"))
    p.add_argument("--max-seconds", type=float, default=None, help="stop training after this many seconds")
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--overwrite", action="store_true", help="replace an existing checkpoint in --out")
