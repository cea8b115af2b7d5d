"""Pack a gpu_check run's folder into at most 8 files directly under an output folder.

    python benchmarks/gpu_pack.py WORK_DIR OUT_DIR

A lent GPU machine returns at most 8 files from $OUT, two folders deep at most, so gpu_check.sh
keeps its many logs / JSON / junit files in WORK_DIR and, after every stage, packs:

    OUT_DIR/summary.json      the stage table (status, seconds, budget) + environment
    OUT_DIR/report.txt        the same in words, plus the last lines of every stage that failed
    OUT_DIR/gpu_check.tar.gz  every file of WORK_DIR (logs, JSON results, junit XML)
    OUT_DIR/<name>.json       up to 5 small result JSONs copied as they are (HEADLINE), when present

Every write is atomic (temporary file, then rename): a run killed while packing keeps the
previous complete pack. Nothing else is written under OUT_DIR.
"""

from __future__ import annotations

import io
import json
import sys
import tarfile
from pathlib import Path

MAX_FILES = 8
HEADLINE = ("timing.json", "floor.json", "overhead.json", "env.json", "triton_offline.json")
MAX_HEADLINE_BYTES = 2_000_000


def _load_files_module():
    """kmas_kernels/core/files.py, the project's atomic writes, loaded by path: packing must work
    even when the package itself fails to import (a broken build is what a GPU check may find)."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "kmas_kernels" / "core" / "files.py"
    spec = importlib.util.spec_from_file_location("_kmas_core_files", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _atomic_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    _load_files_module().atomic_write_bytes(data, path)


def report_text(summary: dict, work: Path, tail_lines: int = 25) -> str:
    """Human-readable stage table, and the log tails of failed stages."""
    lines = [f"gpu_check {summary.get('mode', '?')} — {summary.get('updated', '')}"]
    env = summary.get("env") or {}
    if env:
        lines.append("env: " + ", ".join(f"{k}={v}" for k, v in env.items()))
    stages = summary.get("stages", [])
    used = sum(s.get("seconds", 0) for s in stages)
    lines.append(f"{'stage':<14} {'status':<14} {'seconds':>7} {'budget':>6}")
    for s in stages:
        lines.append(f"{s['stage']:<14} {s['status']:<14} {s.get('seconds', 0):>7} {s.get('budget', ''):>6}  {s.get('note', '')}")
    lines.append(f"total {used} s")
    for s in stages:
        if s["status"] not in ("ok", "skipped"):
            log = work / f"{s['stage']}.log"
            if log.exists():
                tail = log.read_text(errors="replace").splitlines()[-tail_lines:]
                lines += ["", f"--- {s['stage']}: last {len(tail)} lines of {log.name}", *tail]
    return "\n".join(lines) + "\n"


def pack(work: Path, out: Path) -> list[Path]:
    """Pack ``work`` into <= MAX_FILES files directly under ``out``; returns the files written."""
    work, out = Path(work), Path(out)
    if not work.is_dir():
        raise ValueError(f"work must be an existing folder, got {work}")
    out.mkdir(parents=True, exist_ok=True)
    summary_path = work / "summary.json"
    try:
        summary = json.loads(summary_path.read_text())
    except (OSError, ValueError):
        summary = {"stages": []}
    written = []
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for path in sorted(p for p in work.rglob("*") if p.is_file() and not p.name.startswith(".")):
            tar.add(path, arcname=str(Path("gpu_check") / path.relative_to(work)))
    for name, data in (("gpu_check.tar.gz", buffer.getvalue()),
                       ("summary.json", (json.dumps(summary, indent=1) + "\n").encode()),
                       ("report.txt", report_text(summary, work).encode())):
        _atomic_bytes(out / name, data)
        written.append(out / name)
    for name in HEADLINE[: MAX_FILES - len(written)]:
        src = work / name
        if src.is_file() and src.stat().st_size <= MAX_HEADLINE_BYTES:
            _atomic_bytes(out / name, src.read_bytes())
            written.append(out / name)
    assert len(written) <= MAX_FILES
    return written


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2:
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    for path in pack(Path(argv[0]), Path(argv[1])):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
