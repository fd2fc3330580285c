"""`fcn-kernels bench`: time the fused FCN-8s head against the stock ops and torch.compile."""

import torch

from ... import backends
from ...errors import CLIError

NAME = "bench"
HELP = "time the fused FCN-8s head against the stock ops and torch.compile"
DESCRIPTION = (
    "Times the FCN-8s head (its three upsample + crop + skip stages, 21 classes, the geometry of "
    "fcn_kernels.models.FCN8s) fused, as the stock ops (eager) and as torch.compile(stock); one row "
    "per batch and weights, one fused column per backend. On CUDA in float32, the stock columns are "
    "timed with TF32 (cuDNN's default) and with IEEE float32; the fused kernels compute in IEEE "
    "float32."
)


def positive_int(text):
    value = int(text)
    if value < 1:
        raise ValueError(text)
    return value


def add_arguments(p):
    p.add_argument("--batch", type=positive_int, nargs="+", default=[1, 4], help="batch sizes, one row each")
    p.add_argument(
        "--weights",
        nargs="+",
        choices=["depthwise", "dense"],
        default=["depthwise", "dense"],
        help="upsampling weights: depthwise (FCN's fixed bilinear, groups=21) or dense (21x21, groups=1)",
    )
    p.add_argument(
        "--dtype",
        default="float32",
        choices=["float32", "bfloat16", "float16", "float64"],
        help="dtype of the scores and weights",
    )
    p.add_argument("--backward", action="store_true", help="also time forward+backward (a second table)")
    p.add_argument(
        "--no-compile",
        action="store_true",
        help="skip the torch.compile(stock) column (compiling takes a minute or more on a CPU)",
    )
    p.add_argument(
        "--repeat",
        type=positive_int,
        default=10,
        help="timed calls per cell, after 2 warm-up calls; the table shows their median",
    )
    p.add_argument(
        "--image", type=positive_int, default=500, help="side of the square input image the head's maps are sized for"
    )
    p.add_argument(
        "--device",
        default="cuda" if torch.cuda.is_available() else "cpu",
        help="cpu, cuda or cuda:N (the default is cuda where a GPU is present)",
    )
    p.add_argument(
        "--backend",
        nargs="+",
        choices=backends.BACKENDS,
        default=None,
        help="fused backends to time, one column each (default: the automatic choice)",
    )
    p.add_argument(
        "--json",
        metavar="PATH",
        default=None,
        help='also write the rows as JSON, rewritten as each row is measured ("complete": false '
        "until the last; a run cut short keeps the rows before)",
    )

    p.add_argument(
        "--peers",
        action="store_true",
        help="instead of the head table: the peers' table on CPU (fcn_kernels.app.peers), the head and the "
        "whole FCN-8s against torch.compile, ONNX Runtime and OpenVINO; --repeat interleaved rounds",
    )
    p.add_argument(
        "--peers-cases",
        nargs="+",
        default=["1:256", "1:500", "4:256"],
        metavar="BATCH:IMAGE",
        help="--peers: the (batch, image size) cases",
    )
    p.add_argument("--peers-width", type=float, default=1.0, help="--peers: the FCN-8s trunk's width")


def _device(name):
    try:
        device = torch.device(name)
    except RuntimeError:
        raise CLIError(f"--device {name!r} is not a device (cpu, cuda or cuda:N)") from None
    if device.type not in ("cpu", "cuda"):
        raise CLIError(f"--device {name!r}: only cpu and cuda are benchmarked")
    if device.type == "cuda":
        count = torch.cuda.device_count()
        if count == 0:
            raise CLIError(f"--device {name}: no CUDA GPU is available here (use --device cpu)")
        if device.index is not None and device.index >= count:
            raise CLIError(f"--device {name}: there are {count} CUDA devices (cuda:0 to cuda:{count - 1})")
    return device


def _cases(specs):
    try:
        cases = [tuple(int(v) for v in spec.split(":")) for spec in specs]
    except ValueError:
        cases = []
    if not cases or any(len(c) != 2 or min(c) < 1 for c in cases):
        raise CLIError(f"--peers-cases takes BATCH:IMAGE pairs of positive ints, got {' '.join(specs)}")
    return cases


def run(args):
    import time

    from ..._io import write_json
    from ..bench import run as run_head
    from ..peers import cpu_name

    device = _device(args.device)
    for b in args.backend or []:
        try:
            backends.resolve(b, device, "upsample_skip")
        except (RuntimeError, ValueError) as exc:
            raise CLIError(f"--backend {b}: {exc}") from None
    dtype = getattr(torch, args.dtype)
    rows = []

    def save(complete):
        if args.json:
            where = torch.device("cpu") if args.peers else device
            name = torch.cuda.get_device_name(where) if where.type == "cuda" else cpu_name()
            write_json(
                args.json,
                dict(
                    device=str(where),
                    device_name=name,
                    date=time.strftime("%Y-%m-%d"),
                    torch=torch.__version__,
                    threads=torch.get_num_threads(),
                    rows=rows,
                    complete=complete,
                ),
            )

    def add(row):  # saved as it comes
        rows.append(row)
        save(False)

    if args.peers:  # a CPU table
        from ..peers import run as run_peers

        rows = run_peers(
            cases=_cases(args.peers_cases), width=args.peers_width, rounds=args.repeat, compile=not args.no_compile
        )
        args.device = "cpu"
    for backward in [] if args.peers else [False, True] if args.backward else [False]:
        run_head(
            batches=args.batch,
            weights=args.weights,
            dtype=dtype,
            backward=backward,
            compile=not args.no_compile,
            repeat=args.repeat,
            image=args.image,
            device=device,
            backends=args.backend or [None],
            on_row=add,
        )
    save(True)
    if args.json:
        print(f"wrote {args.json}")
    return 0
