#!/usr/bin/env bash
# One prepared check of fh_rl on a CUDA machine: at most ~8 minutes, no downloads.
#
#   bash benchmarks/device_check.sh             # on the GPU machine, from the repository root
#   bash benchmarks/device_check.sh --dry-run   # anywhere: tiny settings, CPU when there is no GPU (a smoke test)
#
# Steps, each under its own time limit, each recorded even when it fails:
#   1. environment: python, torch, CUDA, GPU name (nvidia-smi), missing packages (nothing is installed
#      from the network: fh_rl runs from this tree through PYTHONPATH; a missing dependency is reported)
#   2. tests that run on the GPU: tests/test_devices.py (training with bf16 autocast, channels-last frames,
#      pinned-memory prefetch and checkpoints; batched policy calls; GPU forward = CPU forward) and the
#      CPU fast paths' tests
#   3. the training step at the paper's Atari shape (batch 128, context 30, max_timestep 3000): the
#      paper's model (fp32) and fh_rl's DT, linear and Fourier heads, in fp32, bf16 and bf16 + torch.compile,
#      interleaved in one process (benchmarks/train.py --vs-reference)
#   4. evaluation throughput: batched policy calls for 1..128 concurrent episodes (benchmarks/policy.py)
# Output: $OUT (default ./device_check_out): summary.json (every step's command, exit code, seconds and
# parsed rows) and table.txt (every step's printed table).
set -u
cd "$(dirname "$0")/.."
DRY=0
[ "${1:-}" = "--dry-run" ] && DRY=1
OUT="${OUT:-$PWD/device_check_out}"
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONDONTWRITEBYTECODE=1
PY="${PYTHON:-python}"
TABLE="$OUT/table.txt"
: > "$TABLE"
: > "$OUT/steps.jsonl"

step() {  # step NAME LIMIT_S COMMAND...: run, tee into the table, record rc and seconds
    local name="$1" limit="$2"
    shift 2
    local t0 rc
    t0=$(date +%s)
    echo "=== $name: $*" | tee -a "$TABLE"
    timeout "$limit" "$@" 2>&1 | tee "$OUT/$name.log" | tail -n 40 >> "$TABLE"
    rc=${PIPESTATUS[0]}
    echo "=== $name: exit $rc after $(( $(date +%s) - t0 )) s" | tee -a "$TABLE"
    "$PY" - "$name" "$rc" "$(( $(date +%s) - t0 ))" "$*" >> "$OUT/steps.jsonl" <<'EOF'
import json, sys
print(json.dumps({"step": sys.argv[1], "exit": int(sys.argv[2]), "seconds": int(sys.argv[3]), "command": sys.argv[4]}))
EOF
}

# 1. environment
step environment 60 "$PY" - <<'EOF'
import importlib, platform
import torch
print("python", platform.python_version(), "| torch", torch.__version__, "| cuda available", torch.cuda.is_available())
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    print("gpu", p.name, f"{p.total_memory / 2**30:.0f} GiB", "| cuda", torch.version.cuda, "| bf16", torch.cuda.is_bf16_supported())
missing = [m for m in ("numpy", "gymnasium", "ale_py", "h5py", "yaml", "pytest", "tqdm", "tensorboard", "triton")
           if importlib.util.find_spec(m) is None]
print("missing packages:", ", ".join(missing) if missing else "none")
EOF
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv >> "$TABLE" 2>&1

CUDA=$("$PY" -c "import torch; print(int(torch.cuda.is_available()))" 2>/dev/null || echo 0)
if [ "$CUDA" = 1 ]; then DEVICE=cuda; else DEVICE=cpu; echo "no CUDA device: CPU fallback" | tee -a "$TABLE"; fi

# 2. tests
if [ "$DRY" = 1 ]; then
    step tests 300 "$PY" -m pytest -q -p no:cacheprovider tests/test_devices.py -k policy
else
    step tests 150 "$PY" -m pytest -q -p no:cacheprovider -m "not slow" tests/test_devices.py tests/agents/test_fast_paths.py
fi

# 3. training step
CONTENDERS="reference-model,linear,fourier,linear-bf16,fourier-bf16,linear-bf16-compile,fourier-bf16-compile,reference-variant"
if [ "$DRY" = 1 ]; then
    step train 600 "$PY" benchmarks/train.py --vs-reference --device "$DEVICE" --atari-batch 2 --contenders reference-model,linear,fourier \
        --rounds 1 --steps 1 --warmup 1 --threads 1 --json "$OUT/train.json"
elif [ "$DEVICE" = cuda ]; then
    step train 300 "$PY" benchmarks/train.py --vs-reference --device cuda --atari-batch 128 --contenders "$CONTENDERS" \
        --rounds 5 --steps 10 --warmup 3 --json "$OUT/train.json"
else
    step train 300 "$PY" benchmarks/train.py --vs-reference --device cpu --atari-batch 8 --contenders reference-model,linear,fourier \
        --rounds 3 --steps 2 --warmup 1 --threads 1 --json "$OUT/train.json"
fi

# 4. evaluation throughput
if [ "$DRY" = 1 ]; then
    step policy 300 "$PY" benchmarks/policy.py --device "$DEVICE" --episodes 1 2 --heads linear --rounds 1 --calls 1 --threads 1 --json "$OUT/policy.json"
else
    step policy 120 "$PY" benchmarks/policy.py --device "$DEVICE" --rounds 5 --json "$OUT/policy.json"
fi

"$PY" - "$OUT" <<'EOF'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
summary = {"steps": [json.loads(l) for l in (out / "steps.jsonl").read_text().splitlines() if l.strip()]}
for name in ("train", "policy"):
    f = out / f"{name}.json"
    summary[name] = json.loads(f.read_text()) if f.exists() else None
tmp = out / "summary.json.tmp"
tmp.write_text(json.dumps(summary, indent=2))
tmp.replace(out / "summary.json")
print("wrote", out / "summary.json", "and", out / "table.txt")
print("failed steps:", ", ".join(s["step"] for s in summary["steps"] if s["exit"] != 0) or "none")
EOF
