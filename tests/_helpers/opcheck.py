"""torch.library.opcheck, skipped cleanly where it cannot run: it imports torch.testing._internal, which
needs the `expecttest` package (a test dependency in pyproject.toml, missing from some GPU images; on a
machine without network, carry its wheel and `pip install` it there)."""

import pytest
import torch


def opcheck(op, args, **kwargs):
    pytest.importorskip(
        "expecttest",
        reason="torch.library.opcheck needs the expecttest package (pip install "
        "expecttest), which this environment lacks",
    )
    return torch.library.opcheck(op, args, **kwargs)
