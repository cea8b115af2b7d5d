"""kmas-train killed at any moment continues as if nothing happened (README "Checkpoints and resuming").

Every run here is the CLI in a subprocess on the synthetic default (tiny: 8-d, 2 layers, ~90
training triples, so a few epochs pass). The reference run is uninterrupted; the others are

- killed with SIGKILL at a step chosen from the test's seed: the run logs each step's negatives
  to a FIFO (``--log-negatives``) and the test stops reading after that step, so the trainer
  blocks in its next step exactly there (no timing race), and is killed there;
- killed in the middle of writing ``last.pth`` (the test-only hook of kmas_kernels.core.files:
  the temporary file is left half written and the process exits before the rename);
- stopped with SIGTERM (saves ``last.pth`` at the step it is in, exits 128 + 15);
- DDP, 2 gloo processes on the CPU, rank 1 killed with SIGKILL (then rank 0, as torchrun would).

After ``--resume DIR`` each must draw integer-identical batches (positives and negatives) from
its resume point on, end with the reference's weights (within float tolerance) and the same
validation history, and never have read a partial file.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch

try:
    import kmas_ultra  # noqa: F401
except ImportError:  # a checkout without `pip install .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))

from kmas_kernels.core.files import TEST_DIE_ENV, TEST_DIE_EXIT_CODE, CheckpointError, load_torch_file, temp_name_prefix
from kmas_ultra.train import load_training_state

pytestmark = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="the step gate uses a POSIX FIFO")

STEPS = 20
SAVE_EVERY = 3
SEED = 7  # the test's seed: picks the kill steps
TRAIN_ARGS = ["--steps", str(STEPS), "--batch-size", "8", "--num-negative", "6", "--negatives", "kmas",
              "--dim", "8", "--num-layers", "2", "--synthetic-entities", "30", "--synthetic-edges", "100",
              "--kmas-warmup-steps", "2", "--valid-every", "7", "--valid-limit", "4", "--eval-batch-size", "4",
              "--save-every", str(SAVE_EVERY), "--seed", "3"]
RUN_ARGS = ["--no-progress", "--threads", "1"]  # may be given again on --resume


def _cli() -> list[str]:
    exe = Path(sys.executable).parent / "kmas-train"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "kmas_ultra.cli", "train"]


def _env(**extra: str) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", **extra}
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK", TEST_DIE_ENV):
        if name not in extra:
            env.pop(name, None)
    return env


def _finish(proc: subprocess.Popen, expect: int = 0) -> dict:
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == expect, f"exit {proc.returncode} (expected {expect}):\n{err[-3000:]}"
    lines = out.strip().splitlines()
    return json.loads(lines[-1]) if lines else {}


def _read_log(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


class StepGate:
    """Reads a trainer's ``--log-negatives`` FIFO in a thread. After the line of step ``stop_at``
    (0-based: the trainer has then finished steps 0 .. stop_at - 1 and any save after them) it stops
    reading, so the trainer finishes step ``stop_at`` and blocks when it logs the next. (The trainer
    opens the FIFO per line; if this thread were descheduled for a whole training step, one more
    line could slip through: the assertions allow the trainer one step more.)"""

    def __init__(self, path: Path, stop_at: int | None = None) -> None:
        self.path = path
        self.stop_after = None if stop_at is None else stop_at + 1  # lines
        self.lines: list[dict] = []
        self.reached = threading.Event()
        self.closing = False
        os.mkfifo(path)
        self.read_on()

    def read_on(self, stop_after: int | None = None) -> None:
        self.stop_after, self.reached = stop_after if stop_after is not None else self.stop_after, threading.Event()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        while not self.closing:
            with open(self.path) as f:  # blocks until the trainer opens it for its next line
                for line in f:
                    self.lines.append(json.loads(line))
                    if self.stop_after is not None and len(self.lines) >= self.stop_after:
                        self.reached.set()
                        return

    def wait(self, proc: subprocess.Popen, timeout: float = 300) -> None:
        """Until the gate closed (the trainer is then blocked), failing if the trainer ended first."""
        for _ in range(int(timeout * 10)):
            if self.reached.wait(0.1):
                return
            assert proc.poll() is None, f"trainer ended (exit {proc.returncode}) before logging {self.stop_after} steps: {proc.stderr.read()[-3000:]}"
        raise AssertionError(f"{self.stop_after} steps not logged in {timeout} s")

    def close(self) -> None:
        """Stop the reader (it may wait in open() for a writer that is gone: give it one)."""
        self.closing = True
        if self.thread.is_alive():
            try:
                os.close(os.open(self.path, os.O_WRONLY | os.O_NONBLOCK))
            except OSError:
                pass
            self.thread.join(10)


def _weights(path: Path) -> dict:
    return load_torch_file(path)["model"]


def _assert_same_run(reference: Path, resumed: Path) -> None:
    a, b = load_training_state(reference), load_training_state(resumed)
    assert a["step"] == b["step"] == STEPS
    for name, tensor in a["model"].items():
        torch.testing.assert_close(b["model"][name], tensor, rtol=1e-5, atol=1e-6, msg=lambda m: f"{name}: {m}")
    assert [h["step"] for h in a["history"]] == [h["step"] for h in b["history"]]
    for x, y in zip(a["history"], b["history"]):
        assert x["mrr"] == pytest.approx(y["mrr"], abs=1e-6)
    assert b["losses"] == pytest.approx(a["losses"], rel=1e-5, abs=1e-6)
    assert a["best"]["step"] == b["best"]["step"]


def _assert_same_draws(reference: list[dict], lines: list[dict], first_step: int) -> None:
    """The batches (positives + negatives, integers) of steps >= first_step equal the reference's."""
    by_step = {line["step"]: line["batch"] for line in reference}
    assert [line["step"] for line in lines] == list(range(first_step, first_step + len(lines)))
    for line in lines:
        assert line["batch"] == by_step[line["step"]], f"step {line['step']} drew other negatives"


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted run: (its folder, its logged batches)."""
    folder = tmp_path_factory.mktemp("reference")
    log = folder / "negatives.jsonl"
    proc = subprocess.Popen(_cli() + TRAIN_ARGS + RUN_ARGS + ["--out-dir", str(folder / "run"), "--log-negatives", str(log)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
    summary = _finish(proc)
    assert summary["steps"] == STEPS and summary["resumed_from_step"] is None
    lines = _read_log(log)
    assert [line["step"] for line in lines] == list(range(STEPS))
    # the run did mine hard negatives after the warm-up, so the KMAS cache mattered
    return folder / "run", lines


def test_sigkill_then_kill_while_writing_then_resume(reference, tmp_path):
    ref_dir, ref_lines = reference
    # the kill lands during step `kill_at` (0-based) or at the start of the next; never on a save
    kill_at = random.Random(SEED).choice([n for n in range(SAVE_EVERY + 1, STEPS - 2 * SAVE_EVERY) if (n + 1) % SAVE_EVERY])
    run = tmp_path / "run"

    # 1. SIGKILL
    gate = StepGate(tmp_path / "killed.fifo", stop_at=kill_at)
    proc = subprocess.Popen(_cli() + TRAIN_ARGS + RUN_ARGS + ["--out-dir", str(run), "--log-negatives", str(gate.path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
    try:
        gate.wait(proc)
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=60)
    finally:
        gate.close()
    assert proc.returncode == -signal.SIGKILL
    assert len(gate.lines) == kill_at + 1
    _assert_same_draws(ref_lines, gate.lines, 0)
    saved = load_training_state(run)
    first_resume = saved["step"]  # the last periodic save before the kill
    assert first_resume == kill_at // SAVE_EVERY * SAVE_EVERY or first_resume == (kill_at + 2) // SAVE_EVERY * SAVE_EVERY

    # 2. resume; this one dies in the middle of its second write of last.pth
    log2 = tmp_path / "resumed_once.jsonl"
    proc = subprocess.Popen(_cli() + ["--resume", str(run), "--log-negatives", str(log2)] + RUN_ARGS,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(**{TEST_DIE_ENV: "last.pth:2"}))
    _finish(proc, expect=TEST_DIE_EXIT_CODE)
    lines2 = _read_log(log2)
    _assert_same_draws(ref_lines, lines2, first_resume)
    partial = list(run.glob(temp_name_prefix("last.pth") + "*"))
    assert len(partial) == 1, "the killed write left its half-written temporary file"
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_torch_file(partial[0])
    saved = load_training_state(run)  # still the complete previous one
    second_save = first_resume + SAVE_EVERY
    died_writing = min(second_save + SAVE_EVERY, STEPS)
    assert saved["step"] == second_save and lines2[-1]["step"] == died_writing - 1

    # 3. resume again, to the end
    log3 = tmp_path / "resumed_twice.jsonl"
    proc = subprocess.Popen(_cli() + ["--resume", str(run), "--log-negatives", str(log3)] + RUN_ARGS,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
    summary = _finish(proc)
    assert summary["resumed_from_step"] == second_save and summary["steps"] == STEPS
    lines3 = _read_log(log3)
    _assert_same_draws(ref_lines, lines3, second_save)
    assert lines3[-1]["step"] == STEPS - 1
    assert not list(run.glob(temp_name_prefix("last.pth") + "*")), "stale temporary files are cleaned on resume"
    _assert_same_run(ref_dir / "last.pth", run / "last.pth")
    from kmas_ultra import load_checkpoint  # last.pth keeps ULTRA's layout: kmas-eval reads it as a checkpoint

    assert load_checkpoint(run / "last.pth").relation_model.dim == 8
    # the validation checkpoints match too (same steps, same weights), and load like ULTRA's
    for path in sorted(ref_dir.glob("model_step_*.pth")) + [ref_dir / "best.pth"]:
        ours = _weights(run / path.name)
        for name, tensor in _weights(path).items():
            torch.testing.assert_close(ours[name], tensor, rtol=1e-5, atol=1e-6)


def test_sigterm_saves_and_resumes(reference, tmp_path):
    ref_dir, ref_lines = reference
    stop_at = random.Random(SEED + 1).randint(2, STEPS - 3)
    run = tmp_path / "run"
    gate = StepGate(tmp_path / "term.fifo", stop_at=stop_at)
    proc = subprocess.Popen(_cli() + TRAIN_ARGS + RUN_ARGS + ["--out-dir", str(run), "--log-negatives", str(gate.path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
    try:
        gate.wait(proc)
        proc.send_signal(signal.SIGTERM)
        gate.read_on(stop_after=10**9)  # the step in progress finishes, then it saves and exits
        summary = _finish(proc, expect=128 + signal.SIGTERM)
    finally:
        gate.close()
    assert summary["interrupted"] == "SIGTERM"
    saved = load_training_state(run)
    # it was in step stop_at, or already blocked logging step stop_at + 1: it completes that one
    assert saved["step"] == summary["steps"] and stop_at + 1 <= saved["step"] <= stop_at + 3
    _assert_same_draws(ref_lines, gate.lines, 0)
    assert len(gate.lines) == saved["step"]
    log2 = tmp_path / "resumed.jsonl"
    proc = subprocess.Popen(_cli() + ["--resume", str(run), "--log-negatives", str(log2)] + RUN_ARGS,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
    assert _finish(proc)["resumed_from_step"] == saved["step"]
    _assert_same_draws(ref_lines, _read_log(log2), saved["step"])
    _assert_same_run(ref_dir / "last.pth", run / "last.pth")


def test_resume_refuses_changed_options(reference, tmp_path):
    ref_dir, _ = reference
    proc = subprocess.run(_cli() + ["--resume", str(ref_dir), "--steps", "99"] + RUN_ARGS, capture_output=True, text=True,
                          env=_env(), timeout=120)
    assert proc.returncode == 2 and "--steps 99 (stored: 20)" in proc.stderr
    proc = subprocess.run(_cli() + ["--resume", str(tmp_path)] + RUN_ARGS, capture_output=True, text=True, env=_env(), timeout=120)
    assert proc.returncode == 2 and f"{tmp_path / 'last.pth'}: no such file" in proc.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp(args: list[str], env_extra: dict | None = None) -> list[subprocess.Popen]:
    port = str(_free_port())
    return [subprocess.Popen(_cli() + args + RUN_ARGS, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=_env(WORLD_SIZE="2", RANK=str(rank), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                                      MASTER_PORT=port, GLOO_SOCKET_IFNAME="lo", **(env_extra or {})))
            for rank in range(2)]


@pytest.mark.parametrize("negatives", ["kmas", "strict"])
def test_ddp_two_ranks_sigkill_and_resume(tmp_path, negatives):
    """Each rank's stream (its batches and negatives) continues where it stopped: the KMAS cache of
    each rank, and (strict random negatives) each rank's torch RNG stream."""
    ddp_args = TRAIN_ARGS[:]
    ddp_args[ddp_args.index("--batch-size") + 1] = "4"  # each rank gets half of ~90 triples
    ddp_args[ddp_args.index("--negatives") + 1] = negatives
    ref = tmp_path / "reference"
    procs = _ddp(ddp_args + ["--out-dir", str(ref), "--log-negatives", str(tmp_path / "ref.jsonl")])
    summaries = [_finish(p) for p in procs]
    assert summaries[0]["steps"] == STEPS
    ref_lines = [_read_log(tmp_path / f"ref.jsonl.rank{rank}") for rank in range(2)]
    assert ref_lines[0][0]["batch"] != ref_lines[1][0]["batch"], "the ranks train on different batches"

    kill_at = random.Random(SEED + 2).choice([n for n in range(SAVE_EVERY + 1, STEPS - 2) if (n + 1) % SAVE_EVERY])
    run = tmp_path / "run"
    gates = [StepGate(tmp_path / f"killed.fifo.rank{rank}", stop_at=kill_at if rank == 1 else None) for rank in range(2)]
    procs = _ddp(ddp_args + ["--out-dir", str(run), "--log-negatives", str(tmp_path / "killed.fifo")])
    try:
        gates[1].wait(procs[1])
        procs[1].send_signal(signal.SIGKILL)  # one rank dies; torchrun would then kill the others
        procs[1].communicate(timeout=60)
        procs[0].send_signal(signal.SIGKILL)
        procs[0].communicate(timeout=60)
    finally:
        for gate in gates:
            gate.close()
    saved = load_training_state(run)
    assert saved["world_size"] == 2 and len(saved["ranks"]) == 2
    assert saved["step"] == kill_at // SAVE_EVERY * SAVE_EVERY
    for rank in range(2):
        assert len(gates[rank].lines) >= kill_at + 1
        _assert_same_draws(ref_lines[rank], gates[rank].lines[: kill_at + 1], 0)

    procs = _ddp(["--resume", str(run), "--log-negatives", str(tmp_path / "resumed.jsonl")])
    summaries = [_finish(p) for p in procs]
    assert summaries[0]["resumed_from_step"] == saved["step"]
    for rank in range(2):
        lines = _read_log(tmp_path / f"resumed.jsonl.rank{rank}")
        _assert_same_draws(ref_lines[rank], lines, saved["step"])
        assert lines[-1]["step"] == STEPS - 1
    _assert_same_run(ref / "last.pth", run / "last.pth")


class Crash(Exception):
    pass


@pytest.mark.parametrize("where", ["epoch end", "inside an epoch"])
def test_resume_in_process_restores_the_torch_rng_stream(tmp_path, where):
    """Strict random negatives come from torch's global RNG: a run that dies right after a save at
    an epoch's end, or inside an epoch, resumes on the uninterrupted run's stream (the two cases
    restore the RNG on either side of the draw that starting an epoch makes)."""
    from kmas_ultra import Ultra, synthetic_split, triples_of
    from kmas_ultra.train import train

    torch.set_num_threads(1)
    split = synthetic_split(30, 4, 4, 100, seed=3)
    batches_per_epoch = triples_of(split.train).shape[0] // 8
    save_every = batches_per_epoch if where == "epoch end" else batches_per_epoch - 2
    steps = 2 * batches_per_epoch + 3
    options = dict(steps=steps, batch_size=8, num_negative=6, negatives="strict", progress=False, seed=3,
                   save_every=save_every, log=lambda msg: None)

    def model():
        torch.manual_seed(0)
        return Ultra(dim=4, num_layers=1)

    reference = model()
    train(reference, split, out_dir=tmp_path / "reference", negatives_log=tmp_path / "reference.jsonl", **options)

    dying = model()
    forward, calls = dying.forward, []

    def forward_then_die(data, batch):
        calls.append(1)
        if len(calls) == save_every + 2:  # dies in the second step after the save
            raise Crash
        return forward(data, batch)

    dying.forward = forward_then_die
    with pytest.raises(Crash):
        train(dying, split, out_dir=tmp_path / "run", **options)
    state = load_training_state(tmp_path / "run")
    assert state["step"] == save_every
    assert state["data_order"] == ({"epoch": 1, "batches_done": 0} if where == "epoch end"
                                   else {"epoch": 0, "batches_done": save_every})
    resumed = model()
    summary = train(resumed, split, out_dir=tmp_path / "run", resume=state, negatives_log=tmp_path / "resumed.jsonl", **options)
    assert summary["resumed_from_step"] == save_every
    _assert_same_draws(_read_log(tmp_path / "reference.jsonl"), _read_log(tmp_path / "resumed.jsonl"), save_every)
    for name, tensor in reference.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[name], tensor, rtol=1e-5, atol=1e-6)


def test_a_new_run_does_not_overwrite_a_saved_one(reference):
    ref_dir, _ = reference
    proc = subprocess.run(_cli() + TRAIN_ARGS + RUN_ARGS + ["--out-dir", str(ref_dir)], capture_output=True, text=True,
                          env=_env(), timeout=120)
    assert proc.returncode == 2 and f"--resume {ref_dir}" in proc.stderr
