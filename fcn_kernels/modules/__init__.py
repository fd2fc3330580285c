"""Drop-in nn.Modules over the fused ops."""

from .rarefied import RarefiedAvgPool2d, RarefiedConv2d, RarefiedMaxPool2d
from .upsample import FusedUpsampleSkip, bilinear_kernel

__all__ = ["FusedUpsampleSkip", "bilinear_kernel", "RarefiedConv2d", "RarefiedMaxPool2d", "RarefiedAvgPool2d"]
