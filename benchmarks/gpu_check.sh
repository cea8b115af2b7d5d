#!/usr/bin/env bash
# One command for a GPU lease (one H200/H100, 15 minutes of device time in all, at most 10 per
# command, at most 8 files back from $OUT): stages in the order of what they prove, each under its
# own timeout, the whole plan <= 480 s. See README.md, "GPU check".
#
#   bash benchmarks/gpu_check.sh                 # everything, results packed into $OUT (else ./gpu_check_out)
#   bash benchmarks/gpu_check.sh --stage timing  # re-run one stage (its log/JSON replace the old ones)
#   bash benchmarks/gpu_check.sh --dry-run       # print the plan and each stage's budget
#   bash benchmarks/gpu_check.sh --cpu           # self-test without a GPU: the CUDA build (nvcc,
#                                                # compile only), offline Triton compiles, the packing
#
# Stages (budget in seconds; KMAS_GPU_CHECK_<STAGE>_TIMEOUT overrides):
#   env       versions, GPU name and SM count                                          (env.json)
#   triton    Triton vs the reference on the GPU: test_triton, test_triton_launch, test_triton_specialization
#   cuda      CUDA extension vs the reference, once its build (started in the background at the
#             very beginning, CPU + CUDA modules in place) finishes: test_native, test_backends
#   graph_ops message passing on the GPU: tests/test_graph_ops.py, the on-device graph builder
#   timing    both top-k kernels + the end-to-end call, B=64 k=512, N=1e5/1e6/1e7, one process,
#             graphs built on the GPU, CUDA events, splits swept at 1e7    (benchmarks/gpu_timing.py)
#   floor     copy bandwidth and RNG+log arithmetic rate on a grid that fills the GPU  (floor.py)
#   overhead  mining's share of an ULTRA training step at B=64 k=512, median per step (gpu_overhead.py)
# A failed or timed-out stage is recorded and the next one runs. Logs and JSON go to a work folder
# ($KMAS_GPU_CHECK_WORK, else a new /tmp folder); after every stage benchmarks/gpu_pack.py packs it
# into <= 8 files directly under the output folder (summary.json, report.txt, gpu_check.tar.gz,
# the headline JSONs). Exit status: 0 when every stage that ran passed.
set -uo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-python3}"
MODE=gpu
ONLY=""
DRY=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --dry-run) DRY=1 ;;
    --cpu) MODE=cpu ;;
    --stage) ONLY="${2:?--stage needs a stage name}"; shift ;;
    --stage=*) ONLY="${1#--stage=}" ;;
    -h|--help) sed -n 2,25p "${BASH_SOURCE[0]}"; exit 0 ;;
    *) OUTDIR="$1" ;;
  esac
  shift
done

# name:budget:description, in order (sum <= 480 s)
PLAN=(
  "env:15:versions, GPU, SM count"
  "triton:95:Triton vs reference on the GPU (3 test files)"
  "cuda:80:CUDA extension vs reference (waits for the background build)"
  "graph_ops:50:message passing on the GPU (tests/test_graph_ops.py)"
  "timing:150:kernel + end-to-end timing, N=1e5..1e7, splits sweep"
  "floor:30:bandwidth + arithmetic rate, GPU-filling grid"
  "overhead:60:mining share of a training step, B=64 k=512"
)
names=(); for s in "${PLAN[@]}"; do names+=("${s%%:*}"); done
if [[ -n "$ONLY" && ! " ${names[*]} " =~ " $ONLY " ]]; then
  echo "gpu_check: --stage must be one of: ${names[*]} (got '$ONLY')" >&2; exit 2
fi

budget_of() { local s; for s in "${PLAN[@]}"; do [[ "${s%%:*}" == "$1" ]] && { local b="${s#*:}"; echo "${b%%:*}"; }; done; }

if [[ $DRY -eq 1 ]]; then
  total=0
  printf '%-10s %6s  %s\n' stage budget what
  for s in "${PLAN[@]}"; do
    n="${s%%:*}"; rest="${s#*:}"; b="${rest%%:*}"; d="${rest#*:}"
    if [[ -z "$ONLY" || "$ONLY" == "$n" ]]; then printf '%-10s %5ss  %s\n' "$n" "$b" "$d"; total=$((total + b)); fi
  done
  echo "total ${total}s (limit 480s)"
  exit 0
fi

OUTDIR="${OUTDIR:-${OUT:-$PWD/gpu_check_out}}"
mkdir -p "$OUTDIR"; OUTDIR="$(cd "$OUTDIR" && pwd)"
WORK="${KMAS_GPU_CHECK_WORK:-$(mktemp -d /tmp/gpu_check.XXXXXX)}"
mkdir -p "$WORK"; WORK="$(cd "$WORK" && pwd)"
export PYTHONUNBUFFERED=1 TRITON_DEFAULT_FP_FUSION=0 PYTHONPATH="$REPO:$REPO/python${PYTHONPATH:+:$PYTHONPATH}"
unset TRITON_INTERPRET
START=$(date +%s)
FAILED=0
echo "gpu_check: mode=$MODE repo=$REPO work=$WORK out=$OUTDIR"

# record STAGE STATUS SECONDS BUDGET NOTE: update WORK/summary.json atomically (a re-run replaces the stage's row)
record() {
  "$PY" - "$WORK/summary.json" "$MODE" "$@" <<'EOF'
import json, os, sys, time
path, mode, stage, status, seconds, budget, note = sys.argv[1:8]
try:
    data = json.load(open(path))
except Exception:
    data = {"stages": []}
data["mode"] = mode
data["stages"] = [s for s in data["stages"] if s["stage"] != stage]
data["stages"].append({"stage": stage, "status": status, "seconds": int(seconds), "budget": int(budget or 0), "note": note})
try:
    data["env"] = {k: v for k, v in json.load(open(os.path.join(os.path.dirname(path), "env.json"))).items()
                   if k in ("gpu", "sms", "torch", "triton", "python", "cuda_runtime")}
except Exception:
    pass
data["updated"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
tmp = path + ".tmp"
with open(tmp, "w") as f:
    json.dump(data, f, indent=1); f.flush(); os.fsync(f.fileno())
os.replace(tmp, path)
EOF
}

pack() { "$PY" "$REPO/benchmarks/gpu_pack.py" "$WORK" "$OUTDIR" > /dev/null || echo "gpu_check: packing failed" >&2; }

# stage NAME COMMAND...: run under the stage's timeout, log to WORK/NAME.log, record, pack
stage() {
  local name="$1"; shift
  local var="KMAS_GPU_CHECK_${name^^}_TIMEOUT"
  local limit="${!var:-$(budget_of "$name")}"
  local t0=$(date +%s) rc status
  echo "=== [$name] (budget ${limit}s, $(( t0 - START ))s elapsed)"
  ( cd "$REPO" && timeout --kill-after=5 "$limit" "$@" ) > "$WORK/$name.log" 2>&1
  rc=$?
  local secs=$(( $(date +%s) - t0 ))
  if [[ $rc -eq 0 ]]; then status=ok; elif [[ $rc -eq 124 || $rc -eq 137 ]]; then status=timeout; else status="failed($rc)"; fi
  tail -n 6 "$WORK/$name.log"
  echo "=== [$name] $status in ${secs}s"
  record "$name" "$status" "$secs" "$limit" "log: $name.log"
  [[ $rc -ne 0 ]] && FAILED=1
  pack
  return 0
}

skip() { record "$1" skipped 0 "$(budget_of "$1")" "$2"; pack; echo "=== [$1] skipped: $2"; }
want() { [[ -z "$ONLY" || "$ONLY" == "$1" ]]; }
pytest_on_gpu() { local name="$1"; shift; "$PY" -m pytest -q -rs -p no:cacheprovider --junitxml="$WORK/junit_$name.xml" "$@"; }

# ---- the extension build starts first, in the background (CPU + CUDA modules, in place)
BUILD_PID=""
if [[ "$MODE" == gpu ]] && { want cuda || want overhead; }; then
  (
    cd "$REPO"
    if ! "$PY" -c "import pybind11" 2>/dev/null; then
      "$PY" -m pip install -q --no-index --find-links "$REPO/.gpu_wheelhouse" pybind11 || echo "no pybind11 wheel in .gpu_wheelhouse/"
    fi
    ARCH="$("$PY" -c "import torch; a, b = torch.cuda.get_device_capability(0); print(f'{a}{b}')" 2>/dev/null || echo 90)"
    KMAS_BUILD_CUDA=1 KMAS_BUILD_CPU=1 KMAS_CUDA_ARCHS="${KMAS_CUDA_ARCHS:-$ARCH}" "$PY" setup.py -q build_ext --inplace
    echo "build rc=$?"
  ) > "$WORK/build.log" 2>&1 &
  BUILD_PID=$!
fi

want env && stage env "$PY" - "$WORK/env.json" <<'EOF'
import json, platform, sys, torch
info = {"python": platform.python_version(), "torch": torch.__version__, "cuda_runtime": torch.version.cuda,
        "cuda_available": torch.cuda.is_available()}
try:
    import triton; info["triton"] = triton.__version__
except Exception as e:
    info["triton"] = repr(e)
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    info.update(gpu=p.name, sms=p.multi_processor_count, memory_gb=round(p.total_memory / 2**30, 1),
                capability=list(torch.cuda.get_device_capability(0)))
print(json.dumps(info, indent=1))
json.dump(info, open(sys.argv[1], "w"), indent=1)
EOF

if [[ "$MODE" == gpu ]]; then
  if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "gpu_check: no CUDA device visible to torch (use --cpu for the self-test)"; FAILED=1
  fi
  want triton && stage triton pytest_on_gpu triton tests/test_triton.py tests/test_triton_launch.py tests/test_triton_specialization.py
  if want cuda; then
    t_cuda=$(date +%s)
    budget_cuda="${KMAS_GPU_CHECK_CUDA_TIMEOUT:-$(budget_of cuda)}"
    # the build's wait counts against this stage's budget
    while [[ -n "$BUILD_PID" ]] && kill -0 "$BUILD_PID" 2>/dev/null && (( $(date +%s) - t_cuda < budget_cuda - 20 )); do sleep 2; done
    if [[ -n "$BUILD_PID" ]] && kill -0 "$BUILD_PID" 2>/dev/null; then
      record cuda timeout "$(( $(date +%s) - t_cuda ))" "$budget_cuda" "extension build still running (build.log)"; FAILED=1; pack
    elif ! grep -q "build rc=0" "$WORK/build.log"; then
      record cuda "failed(build)" "$(( $(date +%s) - t_cuda ))" "$budget_cuda" "extension build failed (build.log)"; FAILED=1; pack
    else
      left=$(( budget_cuda - ($(date +%s) - t_cuda) ))
      KMAS_GPU_CHECK_CUDA_TIMEOUT=$(( left > 10 ? left : 10 )) stage cuda pytest_on_gpu cuda tests/test_native.py tests/test_backends.py
    fi
  fi
  want graph_ops && stage graph_ops pytest_on_gpu graph_ops tests/test_graph_ops.py "tests/test_data.py::test_synthetic_on_the_gpu"
  want timing && stage timing "$PY" benchmarks/gpu_timing.py --out "$WORK/timing.json"
  want floor && stage floor "$PY" benchmarks/floor.py --device cuda --rates-only --out "$WORK/floor.json"
  want overhead && stage overhead "$PY" benchmarks/gpu_overhead.py --out "$WORK/overhead.json" --timeout 50
else
  # ---- self-test without a GPU: what of the above can run here
  for s in triton graph_ops timing floor overhead; do want "$s" && skip "$s" "no GPU (--cpu)"; done
  if want cuda; then
    KMAS_GPU_CHECK_CUDA_TIMEOUT="${KMAS_GPU_CHECK_CUDA_TIMEOUT:-900}" stage cuda bash -c \
      "KMAS_BUILD_CUDA=1 KMAS_BUILD_CPU=1 KMAS_CUDA_ARCHS=\${KMAS_CUDA_ARCHS:-90} '$PY' setup.py -q build_ext --build-lib '$WORK/lib' --build-temp '$WORK/tmp' && ls '$WORK'/lib/kmas_kernels/_native_cuda*.so && rm -rf '$WORK/lib' '$WORK/tmp'"
  fi
  if [[ -z "$ONLY" ]]; then
    KMAS_GPU_CHECK_TRITON_OFFLINE_TIMEOUT="${KMAS_GPU_CHECK_TRITON_OFFLINE_TIMEOUT:-600}" stage triton_offline \
      "$PY" benchmarks/triton_offline.py --k-pads 2 4 --rspmm --out "$WORK/triton_offline.json"
  fi
fi

TOTAL=$(( $(date +%s) - START ))
echo "gpu_check: mode=$MODE $([[ $FAILED -eq 0 ]] && echo PASSED || echo FAILED) in ${TOTAL}s; packed into $OUTDIR:"
ls "$OUTDIR"
exit $FAILED
