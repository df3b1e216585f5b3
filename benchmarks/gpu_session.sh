#!/usr/bin/env bash
# The learning stage's GPU measurements in one prepared run, for a session
# that holds a GPU (the `device` tool), every input generated here: at most
# 295 s with every step at its time limit (under 5 minutes, inside one
# 10-minute device call with room to rerun). Run from the repository root:
#
#   bash benchmarks/gpu_wheels.sh             # here, first: wheels the GPU machine lacks, into .whl/
#   bash benchmarks/gpu_session.sh            # on the GPU machine (carry .whl); logs go to $OUT
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
#      (the reference's image size), batch 16, the 8 grid symmetries;
#   9. the dense map (learning.map_mode: dense) of a generated 25 Mpx area at
#      1 um, windows/s against exact inference, and the 1.1-gigapixel time
#      extrapolated from it (the issue's target: under 60 s on a GPU);
#  10. the mixture deconvolution with its BIC table on 26,000 generated
#      (E, H) pairs (numpy on the machine's CPU cores: no GPU path).
# Each step has its own time limit, so one that hangs costs only its share.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-benchmarks_out/gpu}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
if [ -d .whl ]; then   # benchmarks/gpu_wheels.sh: zarr and zennit, which the lent machine lacks
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH} || echo "could not install .whl (dense map and relevance steps may fail)"
fi
DEVICE=${DEVICE:-cuda}
if [ "${SMOKE:-0}" = 1 ]; then
  N250=40; N64=200; EPOCHS=1; PROF=2; COMPILE=""; GRAPHS=""; MAP="--rows 300 --cols 300"; LIMIT=300; MAP_LIMIT=300
  CLS="--maps 60 --px 64 --epochs 1"; CLS_LIMIT=300; REL="--px 64 --batch 4 --repeat 1"; REL_LIMIT=300
  COND="--samples 10 --px 64 --epochs 1"; COND_LIMIT=300
  DENSE="--mpx 1 --exact-windows 64"; DENSE_LIMIT=300; DECONV="--n 2000 --skip-before"; DECONV_LIMIT=300
  S2_LIMIT=300
else
  N250=2000; N64=10000; EPOCHS=2; PROF=20; COMPILE="--compile"; GRAPHS="--compile reduce-overhead"
  # worst case (every step at its limit): ~10 s of data + 35 + 50 + 35 (training) + 20 (map) + 25 (classifier)
  # + 15 (relevance) + 15 (S2) + 30 (conductivity) + 40 (dense map) + 20 (deconvolution) = 295 s
  LIMIT=35; LIMIT_COMPILE=50
  MAP="--rows 1500 --cols 1500 --step 16"; MAP_LIMIT=20
  CLS="--maps 600 --px 384 --batch 64 --epochs 2"; CLS_LIMIT=25
  REL="--px 384 --batch 64 --repeat 3"; REL_LIMIT=15
  COND="--samples 58 --px 256 1024 --epochs 1"; COND_LIMIT=30
  DENSE="--mpx 25 --exact-windows 2000"; DENSE_LIMIT=40
  DECONV="--n 26000 --skip-before"; DECONV_LIMIT=20
  S2_LIMIT=15
fi
LIMIT_COMPILE=${LIMIT_COMPILE:-$LIMIT}

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
step train_250px_b256_compile "$LIMIT_COMPILE" benchmarks/bench_training.py --device "$DEVICE" --dataset "$data250" \
  --crop-px 250 --input-px 250 --epochs "$EPOCHS" --batch-size 256 $COMPILE --profile "$PROF"
step train_64px_b32_graphs "$LIMIT" benchmarks/bench_training.py --device "$DEVICE" --n "$N64" \
  --crop-px 64 --input-px 64 --epochs "$EPOCHS" --batch-size 32 $GRAPHS --profile "$PROF"
step mapping_250px "$MAP_LIMIT" benchmarks/bench_mapping.py --device "$DEVICE" --crop-px 250 --input-px 250 $MAP
step porosity_classifier_384px "$CLS_LIMIT" benchmarks/bench_classifier.py --device "$DEVICE" $CLS
step relevance_384px "$REL_LIMIT" benchmarks/bench_relevance.py --device "$DEVICE" $REL
step s2_384px "$S2_LIMIT" benchmarks/bench_correlation.py --workers 2
step conductivity_cnn "$COND_LIMIT" benchmarks/bench_conductivity_cnn.py --device "$DEVICE" $COND
step dense_map_25mpx "$DENSE_LIMIT" benchmarks/bench_dense_map.py --device "$DEVICE" $DENSE \
  --area "${TMPDIR:-/tmp}/microprop_dense_area_$$.zarr"
step deconvolution_26000 "$DECONV_LIMIT" benchmarks/bench_deconvolution.py $DECONV
rm -rf "${TMPDIR:-/tmp}/microprop_dense_area_$$.zarr"
rm -f "$data250"
logs=$(ls "$OUT"/*.txt | grep -v "/summary.txt$")
grep -h "^device\|images/s\|MFU\|busy\|crops/s\|maps/s\|windows/s\|gigapixel\|after\|CUDA\|levels\|exit" $logs > "$OUT/summary.tmp"
mv "$OUT/summary.tmp" "$OUT/summary.txt"
cat "$OUT/summary.txt"
