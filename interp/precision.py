"""What this machine can compute with. A device the config names must exist here (`require_device`),
checked before a model is loaded or anything written. A bf16 request is honoured only where its
matrix multiplies really are faster, and refused in one line (with the measured rates) where they
are not, so a slower or silently different arithmetic is never chosen by accident."""

from __future__ import annotations

import functools
import time

import torch


@functools.cache
def matmul_gflops(device_type: str = "cpu", n: int = 1024, reps: int = 4, trials: int = 3) -> dict[str, float]:
    """Square n x n matmul rate per dtype in GFLOP/s on this device (best of `trials`); about 0.3 s
    on a 2-core CPU, measured once per process."""
    rates = {}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        a = torch.randn(n, n, device=device_type).to(dtype)
        b = torch.randn(n, n, device=device_type).to(dtype)
        a @ b  # warm-up (kernel selection, page faults)
        best = float("inf")
        for _ in range(trials):
            if device_type == "cuda":
                torch.cuda.synchronize()
            t = time.perf_counter()
            for _ in range(reps):
                a @ b
            if device_type == "cuda":
                torch.cuda.synchronize()
            best = min(best, time.perf_counter() - t)
        rates[name] = 2 * n**3 * reps / best / 1e9
    return rates


def require_device(device: str | torch.device, field: str = "device") -> torch.device:
    """`device` ('auto': CUDA where available, else the CPU), or a one-line ValueError naming
    `field` where this machine has no such device (torch itself fails later, with a traceback)."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda":
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if n == 0:
            why = "this torch is built without CUDA" if torch.version.cuda is None else "no CUDA GPU is visible"
            raise ValueError(f'{field}: {str(device)!r} but {why} on this machine; use {field} = "cpu" (or "auto")')
        if (dev.index or 0) >= n:
            raise ValueError(
                f"{field}: {str(device)!r} but this machine has {n} CUDA device(s), cuda:0 to cuda:{n - 1}"
            )
    elif dev.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f'{field}: \'mps\' but this machine has no Apple GPU; use {field} = "cpu" (or "auto")')
    return dev


def require_fast_bf16(device: torch.device | str, field: str = "train.dtype") -> dict[str, float]:
    """The measured rates, or a one-line ValueError where bf16 matmul is not faster than fp32."""
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ValueError(f'{field}: this GPU has no bf16 support; use {field} = "fp32"')
    rates = matmul_gflops(device.type)
    if rates["bf16"] <= rates["fp32"]:
        raise ValueError(
            f"{field}: bf16 matmul runs at {rates['bf16']:.0f} GFLOP/s on this {device.type} against "
            f'{rates["fp32"]:.0f} in fp32, so bf16 would be slower; use {field} = "fp32"'
        )
    return rates
