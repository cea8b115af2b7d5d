"""benchmarks/gpu_check.sh fits a GPU lease: its plan sums to <= 480 s, and a run's outputs pack
into <= 8 files directly under the output folder (what a lent machine sends back)."""

import json
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))


def _dry_run(*extra):
    return subprocess.run(["bash", str(BENCH / "gpu_check.sh"), "--dry-run", *extra], capture_output=True, text=True, timeout=60)


def test_dry_run_budgets_fit_eight_minutes():
    result = _dry_run()
    assert result.returncode == 0, result.stderr
    budgets = {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)s\s", result.stdout, re.M) if m.group(1) != "total"}
    assert list(budgets) == ["env", "triton", "cuda", "graph_ops", "timing", "floor", "overhead"]
    assert all(b > 0 for b in budgets.values())
    total = int(re.search(r"total (\d+)s", result.stdout).group(1))
    assert total == sum(budgets.values()) <= 480


def test_dry_run_of_one_stage_and_a_bad_stage():
    one = _dry_run("--stage", "timing")
    assert one.returncode == 0 and re.search(r"^timing\s+\d+s", one.stdout, re.M) and "triton " not in one.stdout
    bad = _dry_run("--stage", "nope")
    assert bad.returncode == 2 and "--stage must be one of" in bad.stderr


def test_a_fake_run_packs_into_at_most_eight_files(tmp_path):
    gpu_pack = pytest.importorskip("gpu_pack")
    work, out = tmp_path / "work", tmp_path / "out"
    work.mkdir()
    stages = [{"stage": f"s{i}", "status": "ok" if i % 3 else "failed(1)", "seconds": i, "budget": 10, "note": ""} for i in range(12)]
    (work / "summary.json").write_text(json.dumps({"mode": "gpu", "stages": stages}))
    for i in range(12):
        (work / f"s{i}.log").write_text(f"log of stage {i}\nlast line {i}\n")
        (work / f"junit_s{i}.xml").write_text("<testsuite/>")
    for name in ("timing.json", "floor.json", "overhead.json", "env.json", "triton_offline.json", "extra.json"):
        (work / name).write_text(json.dumps({"name": name}))
    (work / "deep" / "er").mkdir(parents=True)
    (work / "deep" / "er" / "x.txt").write_text("nested")
    (out).mkdir()
    written = gpu_pack.pack(work, out)
    files = sorted(p for p in out.rglob("*"))
    assert len(files) <= 8 and all(p.parent == out and p.is_file() for p in files), files
    assert sorted(written) == files
    assert {"summary.json", "report.txt", "gpu_check.tar.gz", "timing.json"} <= {p.name for p in files}
    with tarfile.open(out / "gpu_check.tar.gz") as tar:
        names = set(tar.getnames())
    assert "gpu_check/deep/er/x.txt" in names and "gpu_check/extra.json" in names and len(names) == 12 * 2 + 6 + 2
    report = (out / "report.txt").read_text()
    assert "s0" in report and "last line 0" in report  # a failed stage's log tail
    assert "last line 1" not in report  # passed stages: no tail
    # packing again (after the next stage) replaces, never adds
    gpu_pack.pack(work, out)
    assert sorted(out.rglob("*")) == files


def test_pack_rejects_a_missing_folder(tmp_path):
    gpu_pack = pytest.importorskip("gpu_pack")
    with pytest.raises(ValueError, match="work must be"):
        gpu_pack.pack(tmp_path / "missing", tmp_path / "out")
