#!/usr/bin/env bash
# One command for a GPU lease: build, prove nothing skips, test on CUDA, check Triton's int64
# primitives, measure. Results (logs, JSON, PNG, summary.json) go under a folder as they come, so a
# run cut short keeps what it finished. See README.md, "GPU check".
#
#   bash benchmarks/gpu_check.sh [RESULTS_DIR]      # default: $OUT/gpu_check, else ./gpu_check_results
#   bash benchmarks/gpu_check.sh --cpu-half [DIR]   # force the half that needs no GPU
#
# GPU half (a CUDA device visible to torch), on a bare machine with torch + Triton, no internet:
#   build   pip install --no-build-isolation --no-deps . with KMAS_BUILD_CUDA=1 KMAS_BUILD_CPU=1
#           (a failed CUDA build fails the run; pybind11 comes from .gpu_wheelhouse/ if missing)
#   import  the installed extensions import and see the GPU (from outside the source tree)
#   skips   every CUDA backend is available, then the CUDA test files run and no test may skip
#           for want of CUDA/Triton/the extension
#   tests   tests/ on CUDA (TRITON_INTERPRET unset), junit XML kept
#   sanity  int64 tl.topk / tl.bitonic_merge vs torch on the GPU (benchmarks/triton_sanity.py)
#   floor   benchmarks/floor.py: bandwidth, arithmetic rate, floors at N = 10^6, 10^7, both kernels
#   sweep   kmas-bench --device cuda: table at N = 10^5 and sweep N = 10^3 .. 10^7 (B = 64, k = 512)
#   overhead kmas-bench: mining's share of a training step at ULTRA's B = 64, k = 512
#   (KMAS_GPU_CHECK_REST=1: also the CPU-only rest of tests/, which CI runs anyway)
# CPU half (no GPU): the forced CUDA + CPU build with nvcc (setup.py build_ext into a temp dir,
#   the modules load), Triton offline compiles for sm_90a of every fixed config (no spills),
#   the sanity check and the multi-split tests under the interpreter, the draw-test emulation,
#   and a pybind11 wheel in .gpu_wheelhouse/ for a GPU machine that lacks it.
# Every stage has a timeout (seconds, overridable: KMAS_GPU_CHECK_<STAGE>_TIMEOUT); measuring
# stages that time out are recorded and the run goes on; build/import/skips/tests/sanity failing
# make the exit code non-zero. Target: < 10 minutes on an H100.
set -uo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MODE=auto
if [[ "${1:-}" == "--cpu-half" ]]; then MODE=cpu; shift; fi
if [[ "${1:-}" == "--gpu-half" ]]; then MODE=gpu; shift; fi
RESULTS="${1:-${OUT:+$OUT/gpu_check}}"
RESULTS="${RESULTS:-$PWD/gpu_check_results}"
mkdir -p "$RESULTS"
RESULTS="$(cd "$RESULTS" && pwd)"
PY="${PYTHON:-python3}"
SUMMARY="$RESULTS/summary.json"
FAILED=0
START=$(date +%s)
export PYTHONUNBUFFERED=1 TRITON_DEFAULT_FP_FUSION=0
unset TRITON_INTERPRET

if [[ "$MODE" == auto ]]; then
  if "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then MODE=gpu; else MODE=cpu; fi
fi

# record STAGE STATUS SECONDS [NOTE]: update summary.json atomically
record() {
  "$PY" - "$SUMMARY" "$@" <<'EOF'
import json, os, sys, time
path, stage, status, seconds = sys.argv[1:5]
note = sys.argv[5] if len(sys.argv) > 5 else ""
try:
    data = json.load(open(path))
except Exception:
    data = {"stages": []}
data["stages"].append({"stage": stage, "status": status, "seconds": int(seconds), "note": note})
data["updated"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
tmp = path + ".tmp"
with open(tmp, "w") as f:
    json.dump(data, f, indent=1)
    f.flush()
    os.fsync(f.fileno())
os.replace(tmp, path)
EOF
}

# stage NAME FATAL(1/0) DEFAULT_TIMEOUT COMMAND...: run with a timeout, log to NAME.log
stage() {
  local name="$1" fatal="$2" limit="$3"; shift 3
  local var="KMAS_GPU_CHECK_${name^^}_TIMEOUT"
  limit="${!var:-$limit}"
  local t0=$(date +%s) rc status
  echo "=== [$name] (timeout ${limit}s, $(( t0 - START ))s elapsed)"
  timeout --kill-after=10 "$limit" "$@" > "$RESULTS/$name.log" 2>&1
  rc=$?
  local secs=$(( $(date +%s) - t0 ))
  if [[ $rc -eq 0 ]]; then status=ok; elif [[ $rc -eq 124 || $rc -eq 137 ]]; then status=timeout; else status="failed($rc)"; fi
  tail -n 15 "$RESULTS/$name.log"
  echo "=== [$name] $status in ${secs}s"
  record "$name" "$status" "$secs" "log: $name.log"
  if [[ $rc -ne 0 && "$fatal" == 1 ]]; then FAILED=1; fi
  return $rc
}

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
echo "gpu_check: mode=$MODE repo=$REPO results=$RESULTS"
record start ok 0 "mode=$MODE"
stage env 0 60 bash -c "cd '$WORK' && '$PY' - <<'EOF'
import json, platform, sys, torch
info = {'python': sys.version, 'platform': platform.platform(), 'torch': torch.__version__, 'cuda_runtime': torch.version.cuda,
        'cuda_available': torch.cuda.is_available()}
try:
    import triton; info['triton'] = triton.__version__
except Exception as e:
    info['triton'] = repr(e)
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    info.update(gpu=p.name, sms=p.multi_processor_count, memory_gb=round(p.total_memory / 2**30, 1), capability=list(torch.cuda.get_device_capability(0)))
print(json.dumps(info, indent=1))
json.dump(info, open('$RESULTS/env.json', 'w'), indent=1)
EOF
command -v nvidia-smi >/dev/null && nvidia-smi || true; command -v nvcc >/dev/null && nvcc --version || echo 'no nvcc on PATH'"

if [[ "$MODE" == gpu ]]; then
  export KMAS_CUDA_ARCHS="${KMAS_CUDA_ARCHS:-$("$PY" -c "import torch; a, b = torch.cuda.get_device_capability(0); print(f'{a}{b}')")}"
  if ! "$PY" -c "import pybind11" 2>/dev/null; then
    stage pybind11 1 120 "$PY" -m pip install --no-index --find-links "$REPO/.gpu_wheelhouse" pybind11
  fi
  stage build 1 420 env KMAS_BUILD_CUDA=1 KMAS_BUILD_CPU=1 "$PY" -m pip install -v --no-build-isolation --no-deps "$REPO"
  stage import 1 60 bash -c "cd '$WORK' && '$PY' -c \"
import kmas_kernels, kmas_kernels._native_cuda as cu, kmas_kernels._native_cpu as cpu
print(kmas_kernels.__file__, cu.__file__, cpu.__file__)
assert cu.device_count() > 0, 'the CUDA extension sees no device'
print('cuda devices seen by the extension:', cu.device_count())
\""
  if [[ $FAILED -ne 0 ]]; then echo "gpu_check: build/import failed: nothing else can be trusted"; exit 1; fi
  # every CUDA path available, else the CUDA tests would skip
  stage skips 1 120 bash -c "cd '$WORK' && '$PY' -c \"
import torch
from kmas_kernels.backends import available_backends
from kmas_kernels.backends.triton_topk import triton_available
reasons = {name: why for name, why in available_backends().items()}
reasons['triton on cuda'] = triton_available('cuda')
print(reasons)
missing = {k: v for k, v in reasons.items() if v is not None}
assert not missing, f'backends unavailable, their CUDA tests would skip: {missing}'
\""
  TESTS=(tests/test_native.py tests/test_triton.py tests/test_triton_launch.py tests/test_host_syncs.py tests/test_backends.py)
  stage tests 1 330 bash -c "cd '$WORK' && '$PY' -m pytest -q -rs -p no:cacheprovider --junitxml='$RESULTS/junit_cuda.xml' ${TESTS[*]/#/$REPO/} && \
'$PY' - <<'EOF'
import sys, xml.etree.ElementTree as ET
root = ET.parse('$RESULTS/junit_cuda.xml').getroot()
bad = []
for case in root.iter('testcase'):
    for skip in case.findall('skipped'):
        why = (skip.get('message') or '') + (skip.text or '')
        if any(w in why.lower() for w in ('cuda', 'gpu', 'triton', 'extension', 'backend')):
            bad.append(f\"{case.get('classname')}::{case.get('name')}: {why.strip()[:160]}\")
print(f'{len(bad)} CUDA-related skips')
print('\n'.join(bad))
sys.exit(1 if bad else 0)
EOF"
  stage sanity 1 180 "$PY" "$REPO/benchmarks/triton_sanity.py" --device cuda --out "$RESULTS/triton_sanity_cuda.json"
  stage floor 0 200 bash -c "cd '$WORK' && '$PY' '$REPO/benchmarks/floor.py' --device cuda --sizes 1000000 10000000 --out '$RESULTS/floor_cuda.json'"
  stage sweep 0 300 bash -c "cd '$WORK' && '$PY' -m kmas_bench --device cuda --no-checkpoint --no-progress --no-overhead --entities 100000 \
    --samplers ultra-strict strict-rejection kmas-triton kmas-cuda --sizes 1000 10000 1000000 10000000 \
    --batch 64 --negatives 512 --repeats 5 --hardness-batches 1 --timeout 100 --out '$RESULTS' --name kmas_bench_cuda"
  stage overhead 0 150 bash -c "cd '$WORK' && '$PY' -m kmas_bench --device cuda --no-checkpoint --no-progress --no-sweep --entities 10000 \
    --samplers kmas-triton kmas-cuda --batch 64 --negatives 512 --repeats 3 --hardness-batches 1 --timeout 120 \
    --overhead-batch 64 --overhead-negatives 512 --out '$RESULTS' --name kmas_bench_cuda_overhead"
  if [[ "${KMAS_GPU_CHECK_REST:-0}" == 1 ]]; then  # the CPU-only rest of the suite (CI runs it anyway)
    stage rest_of_suite 0 300 bash -c "cd '$WORK' && '$PY' -m pytest -q -p no:cacheprovider --junitxml='$RESULTS/junit_rest.xml' '$REPO/tests' \
      ${TESTS[*]/#/--ignore=$REPO/}"
  fi
else
  # ---------------------------------------------------------------- CPU half
  stage build_cuda_offline 1 900 bash -c "cd '$REPO' && KMAS_BUILD_CUDA=1 KMAS_BUILD_CPU=1 KMAS_CUDA_ARCHS=\${KMAS_CUDA_ARCHS:-90} \
    '$PY' setup.py -q build_ext --build-lib '$WORK/lib' --build-temp '$WORK/tmp' && '$PY' - <<'EOF'
import glob, importlib.util
for name in ('_native_cuda', '_native_cpu'):
    found = glob.glob('$WORK/lib/kmas_kernels/' + name + '*.so')
    assert found, f'{name} was not built'
    spec = importlib.util.spec_from_file_location('kmas_kernels.' + name, found[0])
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    print(name, 'loads:', found[0], [n for n in dir(module) if not n.startswith('_')])
EOF"
  stage triton_offline 1 900 bash -c "cd '$REPO' && '$PY' benchmarks/triton_offline.py --out '$RESULTS/triton_offline_sm90a.json'"
  stage sanity_interpreter 1 300 env TRITON_INTERPRET=1 "$PY" "$REPO/benchmarks/triton_sanity.py" --device cpu --out "$RESULTS/triton_sanity_interpreter.json"
  stage multi_split_interpreter 1 900 bash -c "cd '$REPO' && TRITON_INTERPRET=1 '$PY' -m pytest -q -p no:cacheprovider tests/test_triton_launch.py"
  stage draw_test_emulation 0 900 "$PY" "$REPO/benchmarks/draw_test_share.py" --out "$RESULTS/draw_test_share.json"
  stage wheelhouse 0 120 bash -c "[ -n \"\$(ls '$REPO/.gpu_wheelhouse'/pybind11-*.whl 2>/dev/null)\" ] || '$PY' -m pip download --no-deps --only-binary=:all: pybind11 -d '$REPO/.gpu_wheelhouse'"
fi

TOTAL=$(( $(date +%s) - START ))
record end "$([[ $FAILED -eq 0 ]] && echo ok || echo failed)" "$TOTAL" "mode=$MODE"
echo "gpu_check: mode=$MODE $([[ $FAILED -eq 0 ]] && echo PASSED || echo FAILED) in ${TOTAL}s; results in $RESULTS"
exit $FAILED
