"""Command lines of the CLI tests, written as one string of words each (`cli`): a tiny FCN-8s on tiny
images trains and evaluates in seconds on a CPU."""

# 1/32 of the channels, 32x32 images, 3 classes
TINY_MODEL = "--width 0.03125 --image-size 32 --n-class 3"


def cli(line, *paths):
    """The argv of `line` split at spaces, then `paths` as strings (a path may hold spaces)."""
    return [*line.split(), *map(str, paths)]
