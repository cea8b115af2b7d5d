"""What a result was measured on: recorded in every benchmark JSON."""

from __future__ import annotations

import os
import platform

import torch


def machine_info(device: str = "cpu") -> dict:
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    info = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "device": device,
        "load_average_1min": os.getloadavg()[0],  # other work on the machine while measuring
    }
    if device.startswith("cuda") and torch.cuda.is_available():
        info["device_name"] = torch.cuda.get_device_name()
    try:
        import triton

        info["triton"] = triton.__version__
    except ImportError:
        pass
    return info


def reset_peak_rss() -> int:
    """Reset the process's peak RSS (Linux clear_refs) and return the current RSS in bytes."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    return _status_kb("VmRSS") * 1024


def peak_rss() -> int:
    """Peak RSS since the last reset, bytes."""
    return _status_kb("VmHWM") * 1024


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def run_in_subprocess(module: str, call: str, timeout: float | None = None) -> dict:
    """Evaluate ``module.call`` (returning a JSON-able dict) in a fresh Python process.

    Peak memory is per process, so every measurement gets its own. A failure is returned as
    {"error": last line of stderr} rather than raised, so a sweep records it and goes on.
    """
    import json
    import subprocess
    import sys

    here = os.path.dirname(os.path.abspath(__file__))
    code = f"import sys, json; sys.path.insert(0, {here!r}); import {module}; print(json.dumps({module}.{call}))"
    try:
        # cwd = benchmarks/: the installed kmas_kernels (with its compiled extensions) is imported,
        # never the source tree that `python -c` would put first on sys.path from the repo root
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout, cwd=here)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout} s"}
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines()
        return {"error": lines[-1] if lines else f"exit code {done.returncode}"}
    return json.loads(done.stdout.strip().splitlines()[-1])
