"""Stand-in: randn_tensor (only the SDE solver variants draw noise in a step)."""
import torch


def randn_tensor(shape, generator=None, device=None, dtype=None, layout=None):
    return torch.randn(shape, generator=generator, dtype=dtype).to(device)
