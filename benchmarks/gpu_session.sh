#!/usr/bin/env bash
# The learning stage's GPU measurements in one prepared run, for a session
# that holds a GPU (the `device` tool: about 6 minutes on an H100/H200, well
# inside one 10-minute call). Run from the repository root:
#
#   bash benchmarks/gpu_session.sh            # on the GPU machine; logs go to $OUT
#   DEVICE=cpu SMOKE=1 bash benchmarks/gpu_session.sh   # a 1-minute dry run on a CPU
#
# What it measures, each printed with the device it ran on (bench_training.py
# and bench_mapping.py say how the figures are computed):
#   1. the paper's setting: 250 px crops (10 um at 40 nm/px), batch 32, eager
#      bf16: images/s, MFU against the dense-bf16 datasheet peak, data wait,
#      and a profile of 30 steps (phases, top kernels, GPU busy fraction);
#   2. the same crops at batch 256 with torch.compile (default mode);
#   3. the CPU-reduced input (64 px), batch 32, CUDA graphs
#      (torch.compile mode reduce-overhead), to show the launch-bound regime;
#   4. mapping throughput (crops/s, Mpx/s), 250 px crops, batch 512;
#   5. the porosity classifier's training throughput (maps/s), 384 px maps
#      (the reference's size), batch 64, bf16, uint8-resident;
#   6. the deep Taylor relevance pass (zennit) for one batch of 384 px maps;
#   7. S2(r, delta n) of one 384 px map at 256 and 64 levels, CPU (scipy) and
#      GPU (torch's FFTs), with the GPU's difference to float64;
#   8. the sample study's ConductivityCNN: training images/s at 256 and 1024 px
#      (the reference's image size), batch 16, the 8 grid symmetries.
# Each step has its own time limit, so one that hangs costs only its share.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-benchmarks_out/gpu}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
DEVICE=${DEVICE:-cuda}
if [ "${SMOKE:-0}" = 1 ]; then
  N250=40; N64=200; EPOCHS=1; PROF=2; COMPILE=""; GRAPHS=""; MAP="--rows 300 --cols 300"; LIMIT=300; MAP_LIMIT=300
  CLS="--maps 60 --px 64 --epochs 1"; CLS_LIMIT=300; REL="--px 64 --batch 4 --repeat 1"; REL_LIMIT=300
  COND="--samples 10 --px 64 --epochs 1"; COND_LIMIT=300
else
  N250=4000; N64=20000; EPOCHS=3; PROF=30; COMPILE="--compile"; GRAPHS="--compile reduce-overhead"
  # worst case (every step at its limit): ~40 s of data + 3 x 140 + 60 + 45 + 25 + 60 + 60 s = 710 s, over one
  # 10-minute device call: run it with timeout_s 600 and read what came back, or drop a step
  MAP="--rows 2000 --cols 2000 --step 16"; LIMIT=140; MAP_LIMIT=60
  CLS="--maps 900 --px 384 --batch 64 --epochs 3"; CLS_LIMIT=45
  REL="--px 384 --batch 64"; REL_LIMIT=25
  COND="--samples 58 --px 256 1024 --epochs 2"; COND_LIMIT=60
fi

{
  date -u +"%Y-%m-%dT%H:%M:%SZ"
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv 2>/dev/null || echo "no nvidia-smi"
  "$PY" -c "import torch, sys; print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.cuda.is_available())"
} 2>&1 | tee "$OUT/device.txt"

data250="${TMPDIR:-/tmp}/microprop_synthetic_250px_$$.h5"   # ~1 GB: not in $OUT
"$PY" -c "import sys; sys.path.insert(0, 'scripts'); from microprop.virtual import write_synthetic_dataset as w; w('$data250', n=$N250, size=250, seed=0)" \
  || { echo "could not write the synthetic dataset" >&2; exit 1; }

step() {  # step NAME LIMIT ARGS...: one benchmark, its own time limit (s), its log in $OUT
  local name=$1 limit=$2; shift 2
  echo "=== $name: $*" | tee "$OUT/$name.txt"
  timeout "$limit" "$PY" "$@" 2>&1 | grep -v "step/s\]" | tee -a "$OUT/$name.txt"
  echo "=== $name exit ${PIPESTATUS[0]}" | tee -a "$OUT/$name.txt"
}

step train_250px_b32_eager "$LIMIT" benchmarks/bench_training.py --device "$DEVICE" --dataset "$data250" \
  --crop-px 250 --input-px 250 --epochs "$EPOCHS" --batch-size 32 --profile "$PROF"
step train_250px_b256_compile "$LIMIT" benchmarks/bench_training.py --device "$DEVICE" --dataset "$data250" \
  --crop-px 250 --input-px 250 --epochs "$EPOCHS" --batch-size 256 $COMPILE --profile "$PROF"
step train_64px_b32_graphs "$LIMIT" benchmarks/bench_training.py --device "$DEVICE" --n "$N64" \
  --crop-px 64 --input-px 64 --epochs "$EPOCHS" --batch-size 32 $GRAPHS --profile "$PROF"
step mapping_250px "$MAP_LIMIT" benchmarks/bench_mapping.py --device "$DEVICE" --crop-px 250 --input-px 250 $MAP
step porosity_classifier_384px "$CLS_LIMIT" benchmarks/bench_classifier.py --device "$DEVICE" $CLS
step relevance_384px "$REL_LIMIT" benchmarks/bench_relevance.py --device "$DEVICE" $REL
step s2_384px 60 benchmarks/bench_correlation.py --workers 2
step conductivity_cnn "$COND_LIMIT" benchmarks/bench_conductivity_cnn.py --device "$DEVICE" $COND
rm -f "$data250"
logs=$(ls "$OUT"/*.txt | grep -v "/summary.txt$")
grep -h "^device\|images/s\|MFU\|busy\|crops/s\|maps/s\|CUDA\|levels\|exit" $logs > "$OUT/summary.tmp"
mv "$OUT/summary.tmp" "$OUT/summary.txt"
cat "$OUT/summary.txt"
