"""The native backends: C++/OpenMP on CPU tensors, CUDA on CUDA tensors (csrc/; README "Backends").

Both are pybind11 modules that take raw addresses (``tensor.data_ptr()``) and sizes, and share
the scoring, Philox stream, exclusion search and top-k buffer of csrc/core/kmas_core.h. This
module is the only door into them: it checks every dtype, shape, device and contiguity before a
pointer crosses, so nothing malformed reaches native code (docs/semantics.md §8). Values (k, seed,
temperature_gumbel) are trusted: the problem was validated when it was built.

Result: (B, k) int64 entity ids in descending key order (ties: smaller id), -1 past the row's
support, as ``reference_top_k``. P is summed in float32 in the same order as the reference; the
platform's ``logf`` may differ from torch's ``log`` by an ulp, so noisy keys within ~1 ulp of the
k-th key may order differently; deterministic keys (P itself) are exact.
"""

from __future__ import annotations

import torch

from ..core.problem import MiningProblem
from .registry import cpu_available, cuda_available, load_extension

def _check(tensor: torch.Tensor, name: str, dtype: torch.dtype, shape: tuple, device: torch.device) -> torch.Tensor:
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(tensor).__name__}")
    if tensor.dtype != dtype:
        raise TypeError(f"{name} must have dtype {dtype}, got {tensor.dtype}")
    if tuple(tensor.shape) != shape:
        raise ValueError(f"{name} must have shape {shape}, got {tuple(tensor.shape)}")
    if tensor.device != device:
        raise ValueError(f"{name} must be on {device}, got {tensor.device}")
    return tensor.contiguous()


def _arguments(problem: MiningProblem) -> tuple[dict, torch.Tensor, list]:
    """Checked keyword arguments for the native top_k, the output tensor, and tensors to keep alive."""
    index = problem.index
    device = index.device
    n, r, batch, k = index.num_entities, index.num_relations, problem.batch_size, problem.num_negatives
    # k, seed and temperature_gumbel were validated with the problem (core/options.py, core/problem.py);
    # only what protects memory is checked here: int32 entity ids, and the arrays native code reads
    if not 1 <= n < 2**31:
        raise ValueError(f"the native backends need 1 <= num_entities < 2**31, got {n}")
    temperature_gumbel = float(problem.temperature_gumbel)
    pairs = index.ent_rels.numel()
    tensors = {
        "ent_ptr": _check(index.ent_ptr, "index.ent_ptr", torch.int64, (n + 1,), device),
        "ent_rels": _check(index.ent_rels, "index.ent_rels", torch.int32, (pairs,), device),
        "known_answers": _check(index.known_answers, "index.known_answers", torch.int32, (index.known_answers.numel(),), device),
        "scaled": _check(problem.scaled_weights(), "scaled relation weights", torch.float32, (batch, r), device),
        "positive": _check(problem.positive, "positive", torch.int64, (batch,), device),
        "known_start": _check(problem.known_start, "known_start", torch.int64, (batch,), device),
        "known_end": _check(problem.known_end, "known_end", torch.int64, (batch,), device),
    }
    if device.type == "cpu":
        # cheap O(B) range checks of what native code dereferences without bounds (the index
        # arrays themselves are built by KGIndex and trusted to be consistent)
        known = tensors["known_answers"].numel()
        if int(tensors["ent_ptr"][-1]) != pairs or int(tensors["ent_ptr"][0]) != 0:
            raise ValueError("index.ent_ptr is inconsistent with index.ent_rels")
        if batch and (
            int(tensors["known_start"].min()) < 0
            or int(tensors["known_end"].max()) > known
            or bool((tensors["known_start"] > tensors["known_end"]).any())
        ):
            raise ValueError(f"known_start/known_end must be slices of index.known_answers (length {known})")
    out = torch.empty(batch, k, dtype=torch.int64, device=device)
    args = {name: t.data_ptr() for name, t in tensors.items()}
    args.update(
        out=out.data_ptr(),
        batch=batch,
        num_entities=n,
        num_relations=r,
        k=k,
        seed=int(problem.seed),
        temperature_gumbel=temperature_gumbel,
    )
    return args, out, list(tensors.values())


def native_cpu_top_k(problem: MiningProblem, num_threads: int = 0) -> torch.Tensor:
    """The C++/OpenMP backend on a problem whose index lives on the CPU."""
    module = load_extension("_native_cpu")
    if isinstance(module, str):
        raise RuntimeError(module)
    if problem.index.device.type != "cpu":
        raise ValueError(f"the cpu backend needs CPU tensors, got {problem.index.device}")
    args, out, keep = _arguments(problem)
    if problem.batch_size:
        module.top_k(**args, num_threads=int(num_threads))
    del keep
    return out


def native_cuda_top_k(problem: MiningProblem) -> torch.Tensor:
    """The CUDA backend on a problem whose index lives on a CUDA device (current stream)."""
    reason = cuda_available()
    if reason is not None:
        raise RuntimeError(f"the cuda backend is not available: {reason}")
    module = load_extension("_native_cuda")
    device = problem.index.device
    if device.type != "cuda":
        raise ValueError(f"the cuda backend needs CUDA tensors, got {device}")
    ordinal = device.index if device.index is not None else torch.cuda.current_device()
    with torch.cuda.device(ordinal):
        args, out, keep = _arguments(problem)
        if problem.batch_size:
            nbytes = module.scratch_bytes(ordinal, problem.batch_size, problem.index.num_entities, problem.num_negatives)
            scratch = torch.empty(max(int(nbytes), 1), dtype=torch.uint8, device=device)
            stream = torch.cuda.current_stream(device).cuda_stream
            module.top_k(**args, scratch=scratch.data_ptr(), scratch_size=int(nbytes), device=ordinal, stream=stream)
            keep.append(scratch)  # the caching allocator reuses it only after this stream's work
    del keep
    return out


def native_top_k(problem: MiningProblem) -> torch.Tensor:
    """The native backend for the problem's device: C++/OpenMP on CPU, CUDA on CUDA."""
    device_type = problem.index.device.type
    if device_type == "cpu":
        return native_cpu_top_k(problem)
    if device_type == "cuda":
        return native_cuda_top_k(problem)
    raise ValueError(f"the native backends run on cpu or cuda tensors, got {problem.index.device}")
