"""Export of models that use the fcn_kernels ops (docs/DESIGN.md §3). ONNX: every op becomes its stock ONNX
composition, so the file runs in ONNX Runtime, OpenVINO, TensorRT ... without our kernels; AOTInductor:
a compiled package (.pt2) that calls our kernels.

    upsample_skip    -> ConvTranspose, Slice (the crop), Add (the skip's window, also a Slice)
    rarefied_conv2d  -> Conv with dilations
    upsample_argmax  -> ConvTranspose, Slice (, Slice, Add), ArgMax over the classes
    interpolate_argmax -> Resize (linear; pytorch_half_pixel, or align_corners), ArgMax over the classes
The loss ops (upsample_logsumexp, interpolate_logsumexp: TRAINING_ONLY) are not exported: an inference
graph holds no loss.

Crop windows are Slices whose ends are computed from the graph's shapes where the op's out_size is an
input size (the FCN's final crop), so a dynamic export takes any batch and image size.
Needs the `deploy` extra (onnx, onnxscript).
"""

import os

import torch

from ._io import atomic_path

OPSET = 18


def _ints(values):
    """A 1-D INT64 ONNX value from ints and (under dynamic shapes) the graph's symbolic sizes."""
    from onnxscript import opset18 as op

    if all(isinstance(v, int) for v in values):
        return op.Constant(value_ints=[int(v) for v in values])
    return op.Concat(
        *[
            op.Constant(value_ints=[v]) if isinstance(v, int) else op.Reshape(v, op.Constant(value_ints=[1]))
            for v in values
        ],
        axis=0,
    )


def _window(t, offset, size):
    """t[:, :, oy:oy + h, ox:ox + w]."""
    from onnxscript import opset18 as op

    starts = op.Constant(value_ints=[int(v) for v in offset])
    return op.Slice(t, starts, op.Add(starts, _ints(size)), op.Constant(value_ints=[2, 3]))


def _upsample_skip(x, weight, bias, skip, stride, groups, out_offset, out_size, skip_offset):
    from onnxscript import opset18 as op

    inputs = (x, weight) if bias is None else (x, weight, bias)
    y = _window(op.ConvTranspose(*inputs, strides=[int(s) for s in stride], group=int(groups)), out_offset, out_size)
    return y if skip is None else op.Add(y, _window(skip, skip_offset, out_size))


def _upsample_argmax(x, weight, bias, skip, stride, groups, out_offset, out_size, skip_offset):
    from onnxscript import opset18 as op

    # ArgMax returns the first maximal index, as torch.argmax does at ties.
    return op.ArgMax(
        _upsample_skip(x, weight, bias, skip, stride, groups, out_offset, out_size, skip_offset),
        axis=1,
        keepdims=0,
        select_last_index=0,
    )


def _interpolate_argmax(x, size, align_corners):
    from onnxscript import opset18 as op

    # F.interpolate(bilinear)'s source coordinates: ONNX's pytorch_half_pixel (align_corners=False), as
    # torch's own exporter writes them.
    mode = "align_corners" if align_corners else "pytorch_half_pixel"
    sizes = op.Concat(op.Slice(op.Shape(x), _ints([0]), _ints([2])), _ints(size), axis=0)
    y = op.Resize(x, None, None, sizes, mode="linear", coordinate_transformation_mode=mode)
    return op.ArgMax(y, axis=1, keepdims=0, select_last_index=0)


def _rarefied_conv2d(x, weight, bias, rarefaction, padding, groups):
    from onnxscript import opset18 as op

    inputs = (x, weight) if bias is None else (x, weight, bias)
    ph, pw = (int(p) for p in padding)
    return op.Conv(*inputs, dilations=[int(r) for r in rarefaction], pads=[ph, pw, ph, pw], group=int(groups))


# fcn_kernels::NAME -> its translation. A backend's twin of an op (the Triton ops) shares the op's
# signature and so its translation: a new op or a renamed twin is one line here.
TRANSLATIONS = {
    "upsample_skip": _upsample_skip,
    "upsample_skip_triton": _upsample_skip,
    "upsample_argmax": _upsample_argmax,
    "upsample_argmax_triton": _upsample_argmax,
    "rarefied_conv2d": _rarefied_conv2d,
    "rarefied_conv2d_triton": _rarefied_conv2d,
    "interpolate_argmax": _interpolate_argmax,
    "interpolate_argmax_triton": _interpolate_argmax,
}

# Forward ops of training alone (the fused losses): never in an inference graph, so never exported.
TRAINING_ONLY = (
    "upsample_logsumexp",
    "upsample_logsumexp_triton",
    "interpolate_logsumexp",
    "interpolate_logsumexp_triton",
)


def onnx_translations():
    r"""The custom translation table for ``torch.onnx.export(..., dynamo=True)``.

    Each fcn_kernels op becomes its stock ONNX composition (this module's docstring), so the file runs
    without our kernels. See docs/DESIGN.md §3.

    Returns:
        Dict[OpOverload, Callable]: ``{op overload: onnxscript translation}`` for every fcn_kernels op
        registered now (the Triton ops only once ``fcn_kernels.triton`` was imported).

    Example::

        >>> import torch
        >>> from fcn_kernels import onnx_translations
        >>> table = onnx_translations()
        >>> torch.ops.fcn_kernels.upsample_skip.default in table
        True
        >>> # torch.onnx.export(model, inputs, dynamo=True, custom_translation_table=table)
    """
    table = {}
    for name, fn in TRANSLATIONS.items():
        packet = getattr(torch.ops.fcn_kernels, name, None)
        if packet is not None:
            table[packet.default] = fn
    return table


def _in_eval_mode(model, example_inputs, dynamic, export):
    """export(model, inputs, dynamic_shapes) with the model in eval mode (its mode restored after).
    dynamic: every dimension but the channels (dim 1) of each tensor input is symbolic."""
    inputs = (example_inputs,) if isinstance(example_inputs, torch.Tensor) else tuple(example_inputs)
    shapes = (
        tuple(
            {d: torch.export.Dim.DYNAMIC for d in range(t.dim()) if d != 1} if isinstance(t, torch.Tensor) else None
            for t in inputs
        )
        if dynamic
        else None
    )
    # Size-oblivious: an example of batch 1 must not specialise the batch to 1.
    oblivious = torch.fx.experimental._config.patch(backed_size_oblivious=dynamic)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), oblivious:
            return export(model, inputs, shapes)
    finally:
        model.train(was_training)


def export_onnx(model, example_inputs, path, dynamic=True, opset=OPSET):
    r"""Write ``model`` to ``path`` as ONNX of standard ops only, which runs without our kernels.

    The model is traced in eval mode (its mode is restored after) with :func:`onnx_translations`; the file
    is written atomically (a temporary file in the same folder, then renamed). Needs the ``deploy`` extra
    (onnx, onnxscript). See docs/DESIGN.md §3.

    Args:
        model (nn.Module): the model, e.g. an FCN.
        example_inputs (Tensor or Tuple[Tensor, ...]): inputs to trace with, e.g. Tensor[N, 3, H, W].
        path (str or os.PathLike): the file to write.
        dynamic (bool): every dimension but the channels (dim 1) of each input is symbolic, so the file
            takes any batch and image size; False: the example's sizes only. Default: True.
        opset (int): the ONNX opset, at least 17. Default: 18.

    Returns:
        str: ``path``.

    Raises:
        RuntimeError: the graph holds an op without a translation (named).

    Example::

        >>> import os, tempfile, torch
        >>> from fcn_kernels import FusedUpsampleSkip, export_onnx
        >>> model = FusedUpsampleSkip(2, 2, 4, 2, groups=2)
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     path = export_onnx(model, torch.randn(1, 2, 5, 5), os.path.join(folder, "up.onnx"))
        ...     os.path.basename(path), os.path.getsize(path) > 0
        ('up.onnx', True)
    """
    if opset < 17:
        raise ValueError(f"opset must be >= 17, got {opset}")
    program = _in_eval_mode(
        model,
        example_inputs,
        dynamic,
        lambda m, inputs, shapes: torch.onnx.export(
            m,
            inputs,
            None,
            dynamo=True,
            opset_version=opset,
            verbose=False,
            custom_translation_table=onnx_translations(),
            dynamic_shapes=shapes,
        ),
    )
    foreign = sorted(
        {f"{n.domain}::{n.op_type}" for n in program.model_proto.graph.node if n.domain not in ("", "ai.onnx")}
    )
    if foreign:
        raise RuntimeError(
            f"export_onnx: the graph has non-standard ONNX ops {foreign}: an op without a "
            "translation in fcn_kernels.export.TRANSLATIONS"
        )
    with atomic_path(path) as tmp:
        program.save(tmp, external_data=False)
    return os.fspath(path)


def export_aoti(model, example_inputs, path):
    r"""Compile ``model`` ahead of time with AOTInductor into a package (.pt2) that calls our kernels.

    The model is exported in eval mode (its mode is restored after) for the example's batch and image size
    only (not dynamic: docs/DESIGN.md §3 says why), and the package is written atomically. To run it:
    ``import fcn_kernels`` (which loads ``fcn_kernels/_C.so``, registering the ops the package calls), then
    ``torch._inductor.aoti_load_package(path)``. A C++ deployment links libtorch
    (``torch::inductor::AOTIModelPackageLoader``) and loads ``fcn_kernels/_C.so`` (dlopen) first.

    Args:
        model (nn.Module): the model, e.g. an FCN.
        example_inputs (Tensor or Tuple[Tensor, ...]): the inputs, of the sizes the package will take.
        path (str or os.PathLike): the package to write; must end in ``.pt2``.

    Returns:
        str: ``path``.

    Example::

        >>> import torch
        >>> from fcn_kernels.export import export_aoti
        >>> from fcn_kernels.models import FCN8s
        >>> model = FCN8s(n_class=21, width=1 / 16)
        >>> export_aoti(model, torch.randn(1, 3, 64, 64), "fcn8s.pt2")  # doctest: +SKIP
        'fcn8s.pt2'
        >>> runner = torch._inductor.aoti_load_package("fcn8s.pt2")     # doctest: +SKIP
        >>> runner(torch.randn(1, 3, 64, 64)).shape                      # doctest: +SKIP
        torch.Size([1, 21, 64, 64])
    """
    if not os.fspath(path).endswith(".pt2"):
        raise ValueError(f"path of an AOTInductor package must end in .pt2, got {os.fspath(path)!r}")
    program = _in_eval_mode(
        model, example_inputs, False, lambda m, inputs, shapes: torch.export.export(m, inputs, dynamic_shapes=shapes)
    )
    with atomic_path(path, suffix=".pt2") as tmp:
        torch._inductor.aoti_compile_and_package(program, package_path=tmp)
    return os.fspath(path)
