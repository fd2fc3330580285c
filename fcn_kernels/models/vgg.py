"""The VGG16 trunk of the FCNs, with the layer names of Caffe's and torchfcn's models.

conv1_1 is padded by 100 (so that any input, 1x1 up, survives the five pools and fc6's 7x7
window), pools are 2x2 stride 2 in ceil mode, fc6 is a 7x7 convolution, fc7 a 1x1
(convolutionalized fully connected layers, paper 3.1), each followed by ReLU and dropout.
"""

from collections import OrderedDict

from torch import nn

# (stage, convolutions in it, channels at width 1)
VGG16_STAGES = ((1, 2, 64), (2, 2, 128), (3, 3, 256), (4, 3, 512), (5, 3, 512))
FC_CHANNELS = 4096
# torchvision's vgg16().features indices of the 13 convolutions, in order.
TORCHVISION_CONV_INDICES = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)


def scaled(channels: int, width: float) -> int:
    """Channels of a layer at `width` (at least 1)."""
    return max(1, int(round(channels * width)))


def conv_names():
    return [f"conv{stage}_{i}" for stage, n, _ in VGG16_STAGES for i in range(1, n + 1)]


def vgg16_layers(width: float = 1.0, in_channels: int = 3, padding: int = 100, dropout: float = 0.5):
    """OrderedDict name -> module of the trunk, conv1_1 ... pool5, fc6, relu6, drop6, fc7, relu7, drop7."""
    if not width > 0:
        raise ValueError(f"width must be > 0, got {width}")
    layers = OrderedDict()
    c_in = in_channels
    for stage, n, channels in VGG16_STAGES:
        c = scaled(channels, width)
        for i in range(1, n + 1):
            pad = padding if (stage, i) == (1, 1) else 1
            layers[f"conv{stage}_{i}"] = nn.Conv2d(c_in, c, 3, padding=pad)
            layers[f"relu{stage}_{i}"] = nn.ReLU(inplace=True)
            c_in = c
        layers[f"pool{stage}"] = nn.MaxPool2d(2, stride=2, ceil_mode=True)
    fc = scaled(FC_CHANNELS, width)
    layers["fc6"] = nn.Conv2d(c_in, fc, 7)
    layers["relu6"] = nn.ReLU(inplace=True)
    layers["drop6"] = nn.Dropout(dropout)  # Caffe's elementwise dropout (torchfcn: Dropout2d; same in eval)
    layers["fc7"] = nn.Conv2d(fc, fc, 1)
    layers["relu7"] = nn.ReLU(inplace=True)
    layers["drop7"] = nn.Dropout(dropout)
    return layers
