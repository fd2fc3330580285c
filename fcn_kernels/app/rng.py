"""Every random stream of a training process, as tensors (so that a checkpoint loads with weights_only)."""

import torch


def rng_state(gen: torch.Generator) -> dict:
    """The global CPU stream (dropout), the CUDA streams when in use, and the loss-sampling generator."""
    state = {"torch": torch.get_rng_state(), "loss_sampling": gen.get_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict, gen: torch.Generator) -> None:
    torch.set_rng_state(state["torch"])
    gen.set_state(state["loss_sampling"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_streams(seed: int, rank: int, device: torch.device) -> torch.Generator:
    """Seed this rank's streams: dropout (global) and loss sampling (the returned generator) differ per rank."""
    gen = torch.Generator(device=device)
    gen.manual_seed(seed * 1000003 + rank)
    torch.manual_seed(seed * 1000003 + rank + 1)
    return gen
