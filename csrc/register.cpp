// Every op schema of the fcn_kernels namespace, defined once. Kernels register
// per backend (csrc/cpu/*_kernel.cpp, csrc/cuda/*); fake kernels and autograd
// are registered in Python (fcn_kernels/ops/).
#include <Python.h>
#include <torch/library.h>

// `import fcn_kernels._C` loads this library, which runs the registrations below.
// PyMODINIT_FUNC keeps the symbol visible under -fvisibility=hidden.
PyMODINIT_FUNC PyInit__C(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module_def);
}

TORCH_LIBRARY(fcn_kernels, m) {
  // docs/DESIGN.md §2 upsample_skip; out_size is explicit here (Python fills the default).
  m.def(
      "upsample_skip(Tensor x, Tensor weight, Tensor? bias, Tensor? skip, int[2] stride, "
      "int groups, int[2] out_offset, SymInt[2] out_size, int[2] skip_offset) -> Tensor");
  // docs/DESIGN.md §2 upsample_argmax: upsample_skip(...).argmax(1) as int64 (N, Ho, Wo); not differentiable.
  m.def(
      "upsample_argmax(Tensor x, Tensor weight, Tensor? bias, Tensor? skip, int[2] stride, int groups, "
      "int[2] out_offset, SymInt[2] out_size, int[2] skip_offset) -> Tensor");
  m.def(
      "upsample_skip_backward_input(Tensor grad_out, Tensor weight, int[4] input_size, "
      "int[2] stride, int groups, int[2] out_offset) -> Tensor");
  m.def(
      "upsample_skip_backward_weight(Tensor grad_out, Tensor x, int[4] weight_size, "
      "int[2] stride, int groups, int[2] out_offset) -> Tensor");

  // docs/DESIGN.md §2.5 upsample_cross_entropy's per-pixel statistics of the scores upsample_skip(x, weight,
  // bias, skip, ..., out_size = target's (Ho, Wo)) would give: lse = their log-sum-exp over the classes
  // (F.log_softmax's normaliser: NaN where the largest score is infinite), picked = the target class's
  // score (0 where target == ignore_index); (N, Ho, Wo), float32 (float64 for float64 x). A label outside
  // [0, Cout) other than ignore_index is a ValueError.
  m.def(
      "upsample_logsumexp(Tensor x, Tensor weight, Tensor? bias, Tensor? skip, Tensor target, int[2] stride, "
      "int groups, int[2] out_offset, int[2] skip_offset, int ignore_index) -> (Tensor lse, Tensor picked)");
  // Its gradient in x, weight, bias and skip (output_mask: which to compute; the others come back empty,
  // shape (0,)) from those of lse and picked, recomputing the scores; lse is the forward's.
  m.def(
      "upsample_logsumexp_backward(Tensor grad_lse, Tensor grad_picked, Tensor x, Tensor weight, Tensor? bias, "
      "Tensor? skip, Tensor target, Tensor lse, int[2] stride, int groups, int[2] out_offset, int[2] skip_offset, "
      "int ignore_index, bool[4] output_mask) -> (Tensor, Tensor, Tensor, Tensor)");

  // docs/DESIGN.md §2.6 the same statistics of F.interpolate(x, size=target's (Ho, Wo), mode="bilinear",
  // align_corners)'s scores, and their gradient in x (from those of lse and picked, recomputing the scores).
  m.def(
      "interpolate_logsumexp(Tensor x, Tensor target, bool align_corners, int ignore_index) -> "
      "(Tensor lse, Tensor picked)");
  m.def(
      "interpolate_logsumexp_backward(Tensor grad_lse, Tensor grad_picked, Tensor x, Tensor target, Tensor lse, "
      "bool align_corners, int ignore_index) -> Tensor");
  // docs/DESIGN.md §2.6 F.interpolate(x, size, mode="bilinear", align_corners).argmax(1): int64 (N, Ho, Wo).
  m.def("interpolate_argmax(Tensor x, SymInt[2] size, bool align_corners) -> Tensor");

  // docs/DESIGN.md §2 rarefied_conv2d: F.conv2d(x, w, b, padding=padding, dilation=rarefaction, groups).
  m.def(
      "rarefied_conv2d(Tensor x, Tensor weight, Tensor? bias, int[2] rarefaction, int[2] padding, "
      "int groups) -> Tensor");
  m.def(
      "rarefied_conv2d_backward_input(Tensor grad_out, Tensor weight, int[4] input_size, "
      "int[2] rarefaction, int[2] padding, int groups) -> Tensor");
  m.def(
      "rarefied_conv2d_backward_weight(Tensor grad_out, Tensor x, int[4] weight_size, "
      "int[2] rarefaction, int[2] padding, int groups) -> Tensor");
}
