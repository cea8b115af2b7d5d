"""What a result was measured on, peak memory, and measurements in their own process.

Peak memory is per process, so every time/memory figure comes from a fresh Python process
(:func:`run_isolated`). CPU memory: peak RSS (``VmHWM``, reset through ``/proc/self/clear_refs``)
above the RSS before the measured calls; CUDA memory: ``max_memory_allocated`` above
``memory_allocated`` before.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import torch

PACKAGE_PARENT = str(Path(__file__).resolve().parents[1])  # the folder holding kmas_bench (and kmas_ultra in the repo)


def machine_info(device: str = "cpu") -> dict:
    """Machine, device name and versions, recorded in every result."""
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    info = {
        "platform": platform.platform(),
        "hostname": platform.node(),
        "python": platform.python_version(),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "device": device,
        "device_name": torch.cuda.get_device_name() if device.startswith("cuda") and torch.cuda.is_available() else cpu,
        "load_average_1min": os.getloadavg()[0],  # other work on the machine while measuring
        "busy": load_state()["busy"],
        "mem_total_bytes": _meminfo_kb("MemTotal") * 1024,
        "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    import kmas_kernels

    info["kmas_kernels"] = kmas_kernels.__version__
    info["backends"] = kmas_kernels.available_backends()
    for name in ("triton", "numpy"):
        try:
            info[name] = __import__(name).__version__
        except ImportError:
            pass
    if torch.version.cuda:
        info["cuda"] = torch.version.cuda
    return info


def load_state() -> dict:
    """The 1-minute load average against the core count: ``busy`` when load >= cores.

    On a busy machine other work shares the cores, so times are upper bounds and only ratios
    measured side by side mean much: such results are marked and kmas-bench warns.
    """
    load, cores = os.getloadavg()[0], os.cpu_count() or 1
    return {"load_average_1min": round(load, 2), "cpu_count": cores, "busy": load >= cores}


def available_memory() -> int:
    """Bytes the kernel says are available for new allocations (MemAvailable)."""
    return _meminfo_kb("MemAvailable") * 1024


def _meminfo_kb(field: str) -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


class PeakMemory:
    """Extra peak memory of a stretch of code: ``start()``, run, ``extra()`` in bytes."""

    def __init__(self, device: str = "cpu") -> None:
        self.cuda = str(device).startswith("cuda")
        self.kind = "cuda max_memory_allocated" if self.cuda else "peak RSS (VmHWM)"
        self.before = 0

    def start(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.before = torch.cuda.memory_allocated()
        else:
            with open("/proc/self/clear_refs", "w") as f:  # resets VmHWM to the current RSS
                f.write("5")
            self.before = _status_kb("VmRSS") * 1024

    def extra(self) -> int:
        if self.cuda:
            torch.cuda.synchronize()
            return int(torch.cuda.max_memory_allocated() - self.before)
        return int(_status_kb("VmHWM") * 1024 - self.before)


def synchronizer(device: str) -> Callable[[], None]:
    return torch.cuda.synchronize if str(device).startswith("cuda") else (lambda: None)


def time_calls(fn: Callable[[], object], repeats: int, device: str = "cpu") -> tuple[list[float], object]:
    """Seconds of each of ``repeats`` calls (after the caller's warm-up) and the last output."""
    sync = synchronizer(device)
    times, out = [], None
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        out = fn()
        sync()
        times.append(time.perf_counter() - start)
    return times, out


def median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else 0.5 * (ordered[mid - 1] + ordered[mid])


def run_isolated(target: str, kwargs: dict, timeout: float | None = None) -> dict:
    """Call ``target`` ("module:function", returning a JSON-able dict) with ``kwargs`` in a fresh process.

    The child runs in a scratch directory, so the installed kmas_kernels (with its compiled
    extensions) is imported, never a source tree in the current directory. A failure is returned
    as ``{"error": last line of stderr}`` so a sweep records it and goes on.
    """
    before = load_state()
    result = _run_child(target, kwargs, timeout)
    after = load_state()
    # the load while measuring: the larger of before and after (a 1-minute average lags)
    result["load_average_1min"] = max(before["load_average_1min"], after["load_average_1min"])
    result["busy"] = before["busy"] or after["busy"]
    return result


def _run_child(target: str, kwargs: dict, timeout: float | None) -> dict:
    module, function = target.split(":")
    code = ("import sys, json, importlib; f = getattr(importlib.import_module(sys.argv[1]), sys.argv[2]); "
            "print(json.dumps(f(**json.loads(sys.argv[3]))))")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([PACKAGE_PARENT] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    with tempfile.TemporaryDirectory(prefix="kmas-bench-") as scratch:
        try:
            done = subprocess.run([sys.executable, "-c", code, module, function, json.dumps(kwargs)],
                                  capture_output=True, text=True, timeout=timeout, cwd=scratch, env=env)
        except subprocess.TimeoutExpired:
            return {"error": f"timed out after {timeout} s"}
    if done.returncode != 0:
        lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
        return {"error": lines[-1] if lines else f"exit code {done.returncode}"}
    return json.loads(done.stdout.strip().splitlines()[-1])
