"""Compile the Triton top-k kernel for a GPU that is not here (default sm_90a) and report its
registers and spills: a CI check of GPU-only compile errors, of the k limit and of the fixed
launch configurations (kmas_kernels.backends.triton_topk.LAUNCH_CONFIGS), with no GPU.

    python benchmarks/triton_offline.py [--arch 90] [--k-pads 2 64 512 1024] [--out FILE.json]

Triton lowers to PTX without a GPU; its bundled ptxas (`-v`) turns that PTX into SASS for the
target and prints registers and spill bytes. Works with Triton 3.6 .. 3.9.
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

_SIGNATURE = {
    "scaled_ptr": "*fp32", "ent_ptr_ptr": "*i64", "ent_rels_ptr": "*i32", "known_ptr": "*i32",
    "known_start_ptr": "*i64", "known_end_ptr": "*i64", "positive_ptr": "*i64", "thr_ptr": "*i64",
    "out_ptr": "*i64", "num_entities": "i64", "num_relations": "i64", "chunk": "i64", "seed": "i64",
    "temperature_gumbel": "fp32", "gumbel_bound": "fp32",
}


def _ptxas() -> str:
    """The ptxas Triton itself uses for sm_90 (bundled with Triton)."""
    from triton import knobs

    try:
        from triton.backends.nvidia.compiler import get_ptxas

        return get_ptxas(90).path
    except ImportError:  # pragma: no cover - older layouts
        return knobs.nvidia.ptxas.path


def compile_topk(k_pad: int, block_n: int, num_warps: int, *, use_noise: bool = True, draw_test: bool = True, arch: int = 90) -> dict:
    """Compile the kernel for ``sm_<arch>`` (a for 90) and return registers, spills and seconds."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from kmas_kernels.backends.triton_topk import _hard_negative_topk_kernel as fn

    const = {"USE_NOISE": use_noise, "DRAW_TEST": draw_test, "K_PAD": k_pad, "BLOCK_N": block_n}
    signature = dict(_SIGNATURE, **{name: "constexpr" for name in const})
    constexprs = {(fn.arg_names.index(name),): value for name, value in const.items()}
    start = time.perf_counter()
    kernel = triton.compile(
        ASTSource(fn=fn, signature=signature, constexprs=constexprs),
        target=GPUTarget("cuda", arch, 32),
        options={"num_warps": num_warps, "enable_fp_fusion": False},
    )
    seconds = time.perf_counter() - start
    sm = f"sm_{arch}a" if arch == 90 else f"sm_{arch}"
    with tempfile.TemporaryDirectory() as tmp:
        ptx = Path(tmp) / "kernel.ptx"
        ptx.write_text(kernel.asm["ptx"])
        report = subprocess.run([_ptxas(), f"-arch={sm}", "-v", str(ptx), "-o", str(Path(tmp) / "kernel.cubin")],
                                capture_output=True, text=True, check=True).stderr
    registers = re.search(r"Used (\d+) registers", report)
    spills = re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", report)
    return {
        "k_pad": k_pad, "block_n": block_n, "num_warps": num_warps, "use_noise": use_noise, "draw_test": draw_test,
        "arch": sm, "registers": int(registers.group(1)) if registers else None,
        "spill_stores": int(spills.group(1)) if spills else 0, "spill_loads": int(spills.group(2)) if spills else 0,
        "compile_s": round(seconds, 2), "triton": triton.__version__,
    }


def main(argv=None) -> int:
    from kmas_kernels.backends.triton_topk import LAUNCH_CONFIGS

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", type=int, default=90)
    parser.add_argument("--k-pads", type=int, nargs="+", default=sorted(LAUNCH_CONFIGS))
    parser.add_argument("--out", type=Path, default=None, help="JSON file for the results")
    args = parser.parse_args(argv)
    rows = []
    for k_pad in args.k_pads:
        block_n, warps = LAUNCH_CONFIGS[k_pad]
        row = compile_topk(k_pad, block_n, warps, arch=args.arch)
        rows.append(row)
        print(json.dumps(row), flush=True)
        if args.out:  # partial results as they come
            _write(args.out, rows)
    bad = [r for r in rows if r["spill_stores"] or r["spill_loads"]]
    if bad:
        print(f"register spills in {len(bad)} configuration(s): {bad}", file=sys.stderr)
    return 1 if bad else 0


def _write(path: Path, rows: list) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"machine": platform.node(), "python": platform.python_version(), "configs": rows}
    from kmas_kernels.core.files import atomic_write_json

    atomic_write_json(payload, path, indent=1)


if __name__ == "__main__":
    sys.exit(main())
