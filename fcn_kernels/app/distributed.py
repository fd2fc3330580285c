"""Process-group facts and the few collectives the training loop needs (no-ops in a single process)."""

import datetime
import os
import re

import torch
import torch.distributed as torch_dist

from ..errors import CLIError

# what gloo and NCCL say when a peer is gone or silent past the timeout
_PEER_LOST = re.compile(r"gloo|nccl|connection (reset|closed|refused)|timed out|timeout", re.IGNORECASE)


class PeerLost(CLIError):
    """Another rank died or went silent. The process group's C++ threads are then stuck on dead sockets and
    cannot be joined, so the CLI ends this process without running destructors (an orderly exit could abort
    in std::terminate instead of returning the error's exit status)."""


class Dist:
    """World size, rank and local rank from torchrun's environment (1, 0, 0 when not distributed)."""

    def __init__(self):
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self.enabled = self.world > 1
        self.owned = False

    @property
    def main(self):
        return self.rank == 0

    def setup(self, device: torch.device, timeout: float):
        """Join the process group; every collective then fails after `timeout` seconds without its peers
        (a rank that died makes the others exit with an error, not hang)."""
        if not self.enabled or torch_dist.is_initialized():
            return
        backend = "nccl" if device.type == "cuda" else "gloo"
        torch_dist.init_process_group(backend=backend, timeout=datetime.timedelta(seconds=timeout))
        self.owned = True

    def teardown(self):
        if self.owned and torch_dist.is_initialized():
            torch_dist.destroy_process_group()

    def all_sum(self, t: torch.Tensor) -> torch.Tensor:
        if self.enabled:
            torch_dist.all_reduce(t)
        return t

    def all_max(self, t: torch.Tensor) -> torch.Tensor:
        if self.enabled:
            torch_dist.all_reduce(t, op=torch_dist.ReduceOp.MAX)
        return t

    def gather(self, obj):
        if not self.enabled:
            return [obj]
        out = [None] * self.world
        torch_dist.all_gather_object(out, obj)
        return out

    def barrier(self):
        if self.enabled:
            torch_dist.barrier()


def run_distributed(job, cfg, device_name: str):
    """Run job(cfg, dist, device) inside the process group. A peer lost or silent past the timeout is a
    one-line CLIError naming this rank."""
    from .device import resolve_device

    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    dist = Dist()
    device = resolve_device(device_name, dist)
    try:
        dist.setup(device, cfg.dist_timeout)
        return job(cfg, dist, device)
    except RuntimeError as exc:  # DistError, or a plain RuntimeError from gloo inside DDP's backward
        text = str(exc).strip()
        if not dist.enabled or not (isinstance(exc, torch_dist.DistError) or _PEER_LOST.search(text)):
            raise
        first = text.splitlines()[0] if text else type(exc).__name__
        raise PeerLost(
            f"rank {dist.rank} of {dist.world}: lost the other processes ({first[:300]}); did another rank fail?"
        ) from None
    finally:
        dist.teardown()
