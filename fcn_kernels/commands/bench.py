"""`fcn-kernels bench`: time the fused FCN-8s head against the stock ops and torch.compile."""
import torch

NAME = "bench"
HELP = "time the fused FCN-8s head against the stock ops and torch.compile"


def add_arguments(p):
    p.add_argument("--batch", type=int, nargs="+", default=[1, 4])
    p.add_argument("--weights", nargs="+", choices=["depthwise", "dense"], default=["depthwise", "dense"])
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16", "float64"])
    p.add_argument("--backward", action="store_true", help="also time forward+backward")
    p.add_argument("--no-compile", action="store_true", help="skip torch.compile(stock)")
    p.add_argument("--repeat", type=int, default=10)
    p.add_argument("--image", type=int, default=500)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--backend", nargs="+", help="fused backends to time, one column each (default: automatic)")
    p.add_argument("--json", help="also write the rows as JSON")
    p.add_argument("--peers", action="store_true",
                   help="instead of the head table: the peers' table on CPU (fcn_kernels.peers), the head and the "
                        "whole FCN-8s against torch.compile, ONNX Runtime and OpenVINO; --repeat interleaved rounds")
    p.add_argument("--peers-cases", nargs="+", default=["1:256", "1:500", "4:256"], metavar="BATCH:IMAGE",
                   help="--peers: the (batch, image size) cases")
    p.add_argument("--peers-width", type=float, default=1.0, help="--peers: the FCN-8s trunk's width")


def _cases(specs):
    from ..errors import CLIError

    try:
        cases = [tuple(int(v) for v in spec.split(":")) for spec in specs]
    except ValueError:
        cases = []
    if not cases or any(len(c) != 2 or min(c) < 1 for c in cases):
        raise CLIError(f"--peers-cases takes BATCH:IMAGE pairs of positive ints, got {' '.join(specs)}")
    return cases


def run(args):
    import json
    import platform
    import time

    from ..bench import run as run_head

    dtype = getattr(torch, args.dtype)
    rows = []
    if args.peers:  # a CPU table
        from ..peers import run as run_peers
        rows = run_peers(cases=_cases(args.peers_cases), width=args.peers_width, rounds=args.repeat,
                         compile=not args.no_compile)
        args.device = "cpu"
    for backward in ([] if args.peers else [False, True] if args.backward else [False]):
        rows += run_head(batches=args.batch, weights=args.weights, dtype=dtype, backward=backward,
                         compile=not args.no_compile, repeat=args.repeat, image=args.image, device=args.device,
                         backends=args.backend or [None])
    if args.json:
        name = torch.cuda.get_device_name() if args.device.startswith("cuda") else platform.processor()
        with open(args.json, "w") as f:
            json.dump(dict(device=args.device, device_name=name, date=time.strftime("%Y-%m-%d"),
                           torch=torch.__version__, threads=torch.get_num_threads(), rows=rows), f, indent=1)
        print(f"wrote {args.json}")
    return 0
