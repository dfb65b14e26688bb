"""DP noise from the operating system's CSPRNG, which no server value can seed."""

from __future__ import annotations

import os
from typing import Any

import numpy as np


def csprng_normal(shape: tuple[int, ...], *, std: float, device: Any, dtype: Any) -> Any:
    """Gaussian noise N(0, std²) drawn from the operating system's CSPRNG.

    Hand-written because Opacus' ``secure_mode`` needs ``torchcsprng``, which no longer
    builds for current torch. Uniforms come from ``os.urandom`` (53-bit), normals from
    Box-Muller in float64, and -- as Opacus' secure mode does against floating-point
    attacks (Holohan & Braghin, arXiv:2107.10138) -- each value is the sum of four
    draws divided by two.
    """
    import torch

    count = int(np.prod(shape)) if shape else 1
    raw = np.frombuffer(os.urandom(8 * 4 * count), dtype=np.uint64)
    uniform = ((raw >> np.uint64(11)).astype(np.float64) + 0.5) * 2.0**-53
    u1, u2 = uniform[: 2 * count], uniform[2 * count :]
    radius = np.sqrt(-2.0 * np.log(u1))
    normals = np.concatenate([radius * np.cos(2 * np.pi * u2), radius * np.sin(2 * np.pi * u2)])
    value = normals.reshape(4, count).sum(axis=0) / 2.0 * std
    return torch.from_numpy(value.reshape(shape)).to(device=device, dtype=dtype)


def _use_secure_noise(optimizer: Any) -> None:
    """Make an Opacus DP optimizer draw its noise from :func:`csprng_normal`."""
    from opacus.optimizers.optimizer import _check_processed_flag, _mark_as_processed

    base = type(optimizer)

    class SecureNoise(base):  # type: ignore[misc, valid-type]
        def add_noise(self) -> None:  # same contract as Opacus' DPOptimizer.add_noise
            for p in self.params:
                _check_processed_flag(p.summed_grad)
                noise = csprng_normal(
                    tuple(p.summed_grad.shape),
                    std=self.noise_multiplier * self.max_grad_norm,
                    device=p.summed_grad.device,
                    dtype=p.summed_grad.dtype,
                )
                p.grad = (p.summed_grad + noise).view_as(p)
                _mark_as_processed(p.summed_grad)

    SecureNoise.__name__ = f"SecureNoise{base.__name__}"
    optimizer.__class__ = SecureNoise


def _fresh_seed() -> int:
    return int.from_bytes(os.urandom(8), "big") >> 1
