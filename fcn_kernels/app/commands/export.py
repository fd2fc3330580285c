"""`fcn-kernels export`: a checkpoint as an ONNX file or an AOTInductor package.

fcn-kernels export --checkpoint runs/a/checkpoint.pt --format onnx --out fcn8s.onnx
fcn-kernels export --checkpoint runs/a/checkpoint.pt --format aoti --out fcn8s.pt2
"""

from ...errors import CLIError

NAME = "export"
HELP = "export a checkpoint to ONNX (standard ops only) or an AOTInductor package"
DESCRIPTION = (
    "Export a checkpoint of `fcn-kernels train` to ONNX (standard ops only, for ONNX Runtime, "
    "OpenVINO, TensorRT ...) or to an AOTInductor package (.pt2; load it with "
    "torch._inductor.aoti_load_package after `import fcn_kernels`). ONNX takes any batch and image "
    "size unless --static; an AOTInductor package takes the example's (--batch-size, --image-size)."
)


def add_arguments(p):
    p.add_argument("--checkpoint", required=True, help="an fcn-kernels checkpoint (train's checkpoint.pt)")
    p.add_argument(
        "--format", choices=["onnx", "aoti"], default="onnx", help="onnx: an ONNX file; aoti: an AOTInductor package"
    )
    p.add_argument("--out", required=True, help="the file to write (.onnx; .pt2 for aoti)")
    p.add_argument(
        "--image-size",
        type=int,
        nargs="+",
        default=[256],
        metavar="SIZE",
        help="the example input's size: H [W]; with --static the only size the export takes",
    )
    p.add_argument("--batch-size", type=int, default=1, help="the example input's batch")
    p.add_argument(
        "--static", action="store_true", help="onnx: fix the batch and image size to the example's (aoti always does)"
    )
    p.add_argument("--opset", type=int, default=None, help="ONNX opset (default: fcn_kernels.export.OPSET)")


def run(args):
    import torch

    from ...export import OPSET, export_aoti, export_onnx
    from ..checkpoint import load_model_state, load_own_checkpoint
    from ..factory import build_model

    if len(args.image_size) not in (1, 2) or min(args.image_size) < 1:
        raise CLIError(f"--image-size takes one or two positive sizes (H [W]), got {args.image_size}")
    if args.batch_size < 1:
        raise CLIError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.format == "aoti" and not args.out.endswith(".pt2"):
        raise CLIError(f"--out of an AOTInductor package must end in .pt2, got {args.out!r}")
    ckpt = load_own_checkpoint(args.checkpoint)
    model = build_model(ckpt["model_config"])
    load_model_state(model, ckpt["model"], args.checkpoint)
    h, w = args.image_size * 2 if len(args.image_size) == 1 else args.image_size
    x = torch.randn(args.batch_size, model.conv1_1.in_channels, h, w)
    if args.format == "onnx":
        export_onnx(model, x, args.out, dynamic=not args.static, opset=args.opset or OPSET)
    else:
        export_aoti(model, x, args.out)
    static = args.static or args.format == "aoti"
    shapes = f"for {'x'.join(map(str, x.shape))}" if static else "any batch and image size"
    print(f"wrote {args.out} ({args.format}, {shapes})")
    return 0
