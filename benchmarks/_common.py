"""Shared pieces of the benchmark scripts: the machine's own limit, the working dtype, timing and
the report (a compact table with PASS/FAIL against issue 12's targets, and the same numbers as
JSON).

Every target is a ratio to something measured in the same process, because machines differ: the
matrix-multiply rate is measured first, in fp32 and bf16, and a benchmark works in the faster one
unless its arithmetic is fixed (then it says so). On CUDA the achieved fraction is reported
against the device's published dense peak where it is known, else against the measured rate.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from interp.models import DTYPES  # re-exported: the benchmarks' dtype names are the library's

# transformers/peft deprecation notices are noise in a benchmark table
warnings.filterwarnings("ignore", category=FutureWarning)

# Published dense peaks (TFLOP/s, no sparsity); fp32 is the non-tensor-core rate, which is what
# torch uses for fp32 matmul unless TF32 is enabled. Matched as substrings of the device name.
GPU_PEAK_TFLOPS = {
    "H200": {"fp32": 67.0, "bf16": 989.0},
    "H100 PCIe": {"fp32": 51.0, "bf16": 756.0},
    "H100 NVL": {"fp32": 60.0, "bf16": 835.0},
    "H100": {"fp32": 67.0, "bf16": 989.0},  # SXM (HBM3)
    "A100": {"fp32": 19.5, "bf16": 312.0},
    "L40S": {"fp32": 91.6, "bf16": 362.0},
    "L4": {"fp32": 30.3, "bf16": 121.0},
    "A10G": {"fp32": 31.2, "bf16": 70.0},
}


def child_result(cmd: list[str], what: str, env: dict | None = None) -> dict:
    """Run a benchmark arm in a fresh process and return the JSON it printed on its `RESULT ` line;
    exit with the arm's output tails if it failed or printed none."""
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
    if proc.returncode != 0 or line is None:
        raise SystemExit(f"{what} failed ({proc.returncode}):\n{proc.stdout[-2000:]}{proc.stderr[-3000:]}")
    return json.loads(line.removeprefix("RESULT "))


def parser(doc: str) -> argparse.ArgumentParser:
    """The options every benchmark shares: --model, --device, --out."""
    ap = argparse.ArgumentParser(description=doc.split("\n")[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--out", help="write the numbers as JSON here")
    return ap


def pick_device(name: str) -> torch.device:
    """`cuda` when asked for and available, else the CPU (saying why)."""
    if name == "cuda":
        if torch.cuda.is_available():
            return torch.device("cuda")
        print("--device cuda: torch.cuda is not available here; running on the CPU")
    return torch.device("cpu")


def sync(device: torch.device | str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def device_label(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return f"cpu ({torch.get_num_threads()} threads)"


def matmul_gflops(
    dtype: torch.dtype,
    n: int | None = None,
    reps: int | None = None,
    device: torch.device | str = "cpu",
    trials: int = 3,
) -> float:
    """Square n x n matmul rate in GFLOP/s (best of `trials` runs of `reps` products)."""
    device = torch.device(device)
    n = n or (8192 if device.type == "cuda" else 1024)
    reps = reps or 20
    a = torch.randn(n, n, dtype=dtype, device=device)
    b = torch.randn(n, n, dtype=dtype, device=device)
    a @ b
    sync(device)
    best = float("inf")
    for _ in range(trials):
        t = time.perf_counter()
        for _ in range(reps):
            a @ b
        sync(device)
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 * reps / best / 1e9


def machine_rates(device: torch.device | str = "cpu") -> dict[str, float]:
    """{'fp32': GFLOP/s, 'bf16': GFLOP/s} measured on `device`."""
    return {name: matmul_gflops(dt, device=device) for name, dt in DTYPES.items()}


def faster_dtype(rates: dict[str, float]) -> str:
    return max(rates, key=rates.get)


def known_peak_gflops(device: torch.device, dtype_name: str) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for key, peaks in GPU_PEAK_TFLOPS.items():
        if key in name:
            return peaks[dtype_name] * 1e3
    return None


def reference_rate(rates: dict[str, float], dtype_name: str, device: torch.device) -> tuple[float, str]:
    """What achieved FLOP/s are compared with: the published peak where known, else the measured rate."""
    peak = known_peak_gflops(device, dtype_name)
    if peak is not None:
        return peak, f"{dtype_name} published peak {peak / 1e3:.0f} TFLOP/s"
    return rates[dtype_name], f"{dtype_name} measured matmul {rates[dtype_name]:.0f} GFLOP/s"


def print_machine(rates: dict[str, float], device: torch.device, works_in: str, why: str = "") -> None:
    fast = faster_dtype(rates)
    print(
        f"device {device_label(device)}; matmul fp32 {rates['fp32']:.0f} GFLOP/s, bf16 {rates['bf16']:.0f} GFLOP/s "
        f"-> {fast} is faster (x{rates[fast] / min(rates.values()):.2f}); this benchmark works in {works_in}"
        + (f" ({why})" if why else "")
    )


def best_of(fn: Callable[[], float], repeats: int) -> float:
    """Smallest of `repeats` calls (each returns seconds)."""
    return min(fn() for _ in range(repeats))


def timed(fn: Callable[[], object], device: torch.device | str = "cpu") -> float:
    """Seconds one call of `fn` takes, synchronising the device on both sides."""
    sync(device)
    t = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - t


def student_flops(model, tokens: float, completion: float) -> float:
    """A student's training FLOPs, its compute floor's numerator: 6 x block parameters x every
    token trained on, plus the (tied) unembedding at completion positions only (all epochs')."""
    emb = model.hf.get_input_embeddings().weight
    block = sum(p.numel() for p in model.hf.parameters()) - emb.numel()
    return 6 * block * tokens + 6 * emb.numel() * completion


def layer_gemm_gflops(model, tokens: int, dtype: torch.dtype, device, trials: int = 3, backward: bool = True) -> float:
    """FLOP-weighted matmul rate over one decoder layer's GEMMs at `tokens` rows, forward and (with
    `backward`) the input and weight gradients: the ceiling the model's own shapes allow, vs the
    square benchmark."""
    c = model.hf.config.get_text_config()
    d, ff = c.hidden_size, c.intermediate_size
    hd = getattr(c, "head_dim", None) or d // c.num_attention_heads
    q, kv = c.num_attention_heads * hd, c.num_key_value_heads * hd
    shapes = []
    for k, n in ((d, q), (d, kv), (d, kv), (q, d), (d, ff), (d, ff), (ff, d)):
        shapes += (
            [(tokens, k, n), (tokens, n, k), (k, tokens, n)] if backward else [(tokens, k, n)]
        )  # fwd, dgrad, wgrad
    flops = seconds = 0.0
    for m_, k, n in shapes:
        a = torch.randn(m_, k, dtype=dtype, device=device)
        b = torch.randn(k, n, dtype=dtype, device=device)
        a @ b
        t = min(timed_mm(a, b, device) for _ in range(trials))
        flops += 2 * m_ * k * n
        seconds += t
    return flops / seconds / 1e9


def timed_mm(a, b, device) -> float:
    """Seconds of one `a @ b` on `device` (synchronised)."""
    reps = 10 if torch.device(device).type == "cuda" else 1  # amortise the synchronisation on a GPU
    sync(device)
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    sync(device)
    return (time.perf_counter() - t) / reps


# ----------------------------------------------------------------------------- memory


def rss_bytes() -> int | None:
    try:
        import psutil
    except ImportError:
        return None
    return psutil.Process().memory_info().rss


def maxrss_bytes() -> int:
    """The process's peak resident set so far (ru_maxrss is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class PeakRSS:
    """Peak resident memory over a `with` block, sampled every `interval` s by a thread (psutil);
    without psutil, the process's lifetime peak (ru_maxrss) at exit, an upper bound."""

    def __init__(self, interval: float = 0.01):
        self.interval, self.peak, self.source = interval, 0, ""
        self._stop = threading.Event()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, rss_bytes() or 0)

    def __enter__(self) -> "PeakRSS":
        start = rss_bytes()
        if start is None:
            self.source = "ru_maxrss (process lifetime peak)"
            return self
        self.source, self.peak = "psutil RSS sampled every 10 ms", start
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.source.startswith("psutil"):
            self._stop.set()
            self._thread.join()
            self.peak = max(self.peak, rss_bytes() or 0)
        else:
            self.peak = maxrss_bytes()


# ----------------------------------------------------------------------------- the report


@dataclass
class Target:
    name: str
    value: float
    limit: float
    op: str  # ">=" or "<="
    unit: str = "x"  # "x" (ratio), "%" (fraction shown as percent), "GB"

    @property
    def ok(self) -> bool:
        return self.value >= self.limit if self.op == ">=" else self.value <= self.limit

    def fmt(self, v: float) -> str:
        if self.unit == "%":
            return f"{v:.1%}"
        if self.unit == "GB":
            return f"{v:.2f} GB"
        return f"{v:.2f}x"


@dataclass
class Report:
    benchmark: str
    args: dict
    rows: list[tuple[str, str, str]] = field(default_factory=list)  # (what, measured, note)
    targets: list[Target] = field(default_factory=list)
    data: dict = field(default_factory=dict)

    def row(self, what: str, measured: str, note: str = "") -> None:
        self.rows.append((what, measured, note))

    def target(self, name: str, value: float, op: str, limit: float, unit: str = "x") -> Target:
        t = Target(name, float(value), float(limit), op, unit)
        self.targets.append(t)
        return t

    def print(self) -> None:
        if self.rows:
            w = max(len(r[0]) for r in self.rows)
            m = max(len(r[1]) for r in self.rows)
            print()
            for what, measured, note in self.rows:
                print(f"  {what:<{w}}  {measured:>{m}}  {note}".rstrip())
        if self.targets:
            w = max(len(t.name) for t in self.targets)
            print(f"\n  {'target':<{w}}  {'measured':>10}  {'target':>10}  result")
            for t in self.targets:
                print(
                    f"  {t.name:<{w}}  {t.fmt(t.value):>10}  {t.op + ' ' + t.fmt(t.limit):>10}  {'PASS' if t.ok else 'FAIL'}"
                )

    def to_dict(self) -> dict:
        from interp.runs import provenance

        return {
            "benchmark": self.benchmark,
            "args": self.args,
            "provenance": provenance(),  # the commit, package, CPU and threads that measured it
            **self.data,
            "targets": [
                {"name": t.name, "value": t.value, "op": t.op, "limit": t.limit, "unit": t.unit, "pass": t.ok}
                for t in self.targets
            ],
        }

    def write(self, out: str | None) -> None:
        if out:
            from interp.runs import write_json

            write_json(Path(out), json.loads(json.dumps(self.to_dict(), default=str)))
            print(f"\nwrote {out}")
