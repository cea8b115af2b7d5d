"""Compile, for a GPU that is not here (default sm_90), exactly the Triton variants real launches
produce, and FAIL on any register spill.

    python benchmarks/triton_offline.py [--arch 90] [--k-pads 2 4 ...] [--modes train ...] [--rspmm] [--out FILE.json]

The variants are derived the way tests/test_triton_specialization.py derives them: the launch
arguments ``triton_topk.launch_arguments`` builds for a real problem (planned as on a 132-SM GPU)
are bound with Triton's own binder (kmas_kernels.backends.triton_specialize), so the signature
types, the alignment hints and the constants are those of a training launch; the script also
checks that several seeds and batch sizes bind to ONE variant. Triton lowers to PTX without a GPU;
its bundled ptxas (``-v``) turns the PTX into SASS for the target and reports registers and
spill bytes. Modes: ``train`` (temperature_gumbel = 1: noise + the log-free draw test, the
default of training), ``deterministic`` (0), ``tempered`` (0.5). ``--rspmm``: also the
message-passing kernels (float32, d = 64, BLOCK_B 32). Works with Triton 3.6 .. 3.9.

Exit status: 0 when every variant compiled with no spill and each configuration had one key;
1 otherwise. JSON rows are written after every compile (atomically).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

# the kernels pin enable_fp_fusion at launch; this only silences Triton 3.9's warning about the default
os.environ.setdefault("TRITON_DEFAULT_FP_FUSION", "0")
MODES = {"train": 1.0, "deterministic": 0.0, "tempered": 0.5}
SMS = 132  # H100 / H200


def _ptxas(arch: int) -> str:
    """The ptxas Triton itself uses (bundled with Triton)."""
    try:
        from triton.backends.nvidia.compiler import get_ptxas

        try:
            return get_ptxas(arch).path
        except TypeError:  # older signature without the arch
            return get_ptxas().path
    except ImportError:  # pragma: no cover - older layouts
        from triton import knobs

        return knobs.nvidia.ptxas.path


def ptxas_report(ptx: str, arch: int) -> dict:
    """Registers and spill bytes of ``ptx`` assembled for sm_<arch> (sm_90a for 90)."""
    sm = f"sm_{arch}a" if arch == 90 else f"sm_{arch}"
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "kernel.ptx"
        path.write_text(ptx)
        report = subprocess.run([_ptxas(arch), f"-arch={sm}", "-v", str(path), "-o", str(Path(tmp) / "kernel.cubin")],
                                capture_output=True, text=True, check=True).stderr
    registers = re.search(r"Used (\d+) registers", report)
    spills = re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", report)
    return {"arch": sm, "registers": int(registers.group(1)) if registers else None,
            "spill_stores": int(spills.group(1)) if spills else 0, "spill_loads": int(spills.group(2)) if spills else 0}


def _index(num_entities: int):
    from kmas_kernels import KGIndex

    g = torch.Generator().manual_seed(num_entities)
    e = 4 * num_entities
    triples = torch.stack([torch.randint(num_entities, (e,), generator=g), torch.randint(7, (e,), generator=g),
                           torch.randint(num_entities, (e,), generator=g)], 1)
    return KGIndex.from_triples(triples, num_entities=num_entities, num_relations=7, add_inverse=True)


def topk_launches(k_pad: int, temperature_gumbel: float) -> list[tuple]:
    """(args, meta) of launches as training makes them: per-step seeds, B in {1, 17, 64}, two graph sizes."""
    from kmas_kernels.backends.triton_topk import MAX_K, launch_arguments
    from kmas_kernels.core.philox import mix_seed
    from kmas_kernels.core.problem import prepare_problem

    k = min(k_pad, MAX_K)
    launches = []
    for step, (n, batch) in enumerate([(3000, 64), (3001, 1), (4096, 17), (3000, 64)]):
        index = _index(n)
        g = torch.Generator().manual_seed(step)
        q = torch.randint(n, (batch,), generator=g)
        r = torch.randint(index.num_relations, (batch,), generator=g)
        problem = prepare_problem(index, q, r, num_negatives=k, seed=mix_seed(7, step), temperature_gumbel=temperature_gumbel,
                                  relation_embeddings=torch.randn(batch, index.num_relations, 8, generator=g))
        _, args, meta = launch_arguments(problem, sms=SMS)
        launches.append((args, meta))
    return launches


def compile_variant(kernel, launches: list[tuple], arch: int) -> dict:
    """Bind every launch; compile the (single) variant; registers and spills."""
    import triton

    from kmas_kernels.backends import triton_specialize as spec

    target = spec.cuda_target(arch)
    bound = [spec.bind(kernel, args, meta, target) for args, meta in launches]
    keys = {b.key for b in bound}
    start = time.perf_counter()
    compiled = spec.compile_bound(kernel, bound[0], target)
    seconds = time.perf_counter() - start
    meta = launches[0][1]
    return {"variants": len(keys), "signature": {k: v for k, v in bound[0].signature.items() if v != "constexpr"},
            "constexprs": {k: v for k, v in meta.items()}, **ptxas_report(compiled.asm["ptx"], arch),
            "compile_s": round(seconds, 2), "triton": triton.__version__}


def rspmm_launches() -> dict[str, list[tuple]]:
    """(args, meta) of the three message-passing kernels, float32, d = 64, two batch / graph sizes each."""
    from kmas_kernels.graph_ops import cached_csr

    out: dict[str, list[tuple]] = {"_gather_kernel": [], "_chunk_partial_kernel": [], "_chunk_reduce_kernel": []}
    meta_f = dict(F64=False, BLOCK_B=32, BLOCK_D=64, num_warps=4)
    for batch, nodes in [(32, 1000), (20, 333)]:
        g = torch.Generator().manual_seed(nodes)
        e = 5 * nodes
        csr = cached_csr(torch.randint(nodes, (2, e), generator=g), torch.randint(6, (e,), generator=g), nodes, 6)
        x = torch.randn(batch, nodes, 64)
        rel = torch.randn(batch, 6, 64)
        out["_gather_kernel"].append(((csr.dst_ptr, csr.dst_src, csr.dst_type, x, rel, x, torch.empty_like(x), batch, nodes, nodes, 6, 64),
                                      dict(SHARED=False, HAS_BOUNDARY=True, **meta_f)))
        partial = torch.empty(max(csr.num_chunks, 1), batch, 64)
        out["_chunk_partial_kernel"].append(((csr.chunk_start, csr.rel_dst, csr.rel_src, x, x, partial, batch, nodes, nodes, 64), meta_f))
        out["_chunk_reduce_kernel"].append(((csr.chunk_ptr, partial, torch.empty_like(rel), batch, 6, 64), dict(SHARED=False, **meta_f)))
    return out


def main(argv=None) -> int:
    from kmas_kernels.backends import triton_topk
    from kmas_kernels.backends.triton_topk import LAUNCH_CONFIGS

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", type=int, default=90)
    parser.add_argument("--k-pads", type=int, nargs="+", default=sorted(LAUNCH_CONFIGS))
    parser.add_argument("--modes", nargs="+", choices=sorted(MODES), default=["train"])
    parser.add_argument("--rspmm", action="store_true", help="also compile the message-passing kernels")
    parser.add_argument("--out", type=Path, default=None, help="JSON file for the results (rewritten after every compile)")
    parser.add_argument("--try-config", default=[], nargs="+", metavar="K_PAD:BLOCK_N:WARPS",
                        help="compile K_PAD with another (BLOCK_N, num_warps) than LAUNCH_CONFIGS (to choose a config)")
    args = parser.parse_args(argv)
    for item in args.try_config:
        try:
            k_pad, block_n, warps = (int(x) for x in item.split(":"))
        except ValueError:
            parser.error(f"--try-config takes K_PAD:BLOCK_N:WARPS, got {item!r}")
        LAUNCH_CONFIGS[k_pad] = (block_n, warps)  # this process only
    bad_k = [k for k in args.k_pads if k not in LAUNCH_CONFIGS]
    if bad_k:
        parser.error(f"--k-pads must be among {sorted(LAUNCH_CONFIGS)}, got {bad_k}")
    rows = []

    def done(row: dict) -> None:
        rows.append(row)
        print(json.dumps(row), flush=True)
        if args.out:
            _write(args.out, rows)

    for k_pad in args.k_pads:
        for mode in args.modes:
            row = {"kernel": "topk", "k_pad": k_pad, "mode": mode}
            try:
                row.update(compile_variant(triton_topk._hard_negative_topk_kernel, topk_launches(k_pad, MODES[mode]), args.arch))
            except Exception as exc:  # a compile error is a result: record it, go on
                row["error"] = f"{type(exc).__name__}: {exc}"[:2000]
            done(row)
    if args.rspmm:
        from kmas_kernels.graph_ops import rspmm_triton

        for name, launches in rspmm_launches().items():
            row = {"kernel": name}
            try:
                row.update(compile_variant(getattr(rspmm_triton, name), launches, args.arch))
            except Exception as exc:
                row["error"] = f"{type(exc).__name__}: {exc}"[:2000]
            done(row)
    bad = [r for r in rows if "error" in r or r["spill_stores"] or r["spill_loads"] or r["variants"] != 1]
    if bad:
        print(f"FAILED: {len(bad)} of {len(rows)} variant(s) spill, fail to compile or bind to several keys: "
              + json.dumps(bad), file=sys.stderr)
    return 1 if bad else 0


def _write(path: Path, rows: list) -> None:
    import triton

    from kmas_kernels.core.files import atomic_write_json

    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"machine": platform.node(), "python": platform.python_version(), "triton": triton.__version__, "configs": rows}
    atomic_write_json(payload, path, indent=1)


if __name__ == "__main__":
    sys.exit(main())
