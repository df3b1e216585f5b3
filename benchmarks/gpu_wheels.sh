#!/usr/bin/env bash
# Wheels of the packages benchmarks/gpu_session.sh needs that the lent GPU
# machine's Python (3.12, the device tool's KINDS.md) lacks: zarr (the dense
# map's generated area), its numcodecs, donfig and google-crc32c, and zennit
# (the relevance pass). Run here, from the repository root, before the device
# call; they go to .whl/ (git-ignored, about 12 MB), which the call carries:
#
#   bash benchmarks/gpu_wheels.sh
#   run(command="bash benchmarks/gpu_session.sh", carry=[".whl"])
#
# gpu_session.sh installs them into /tmp/site when .whl/ is there.
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
mkdir -p .whl
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d .whl zarr==3.1.6 numcodecs==0.16.6 donfig==0.8.1.post1 google-crc32c==1.9.0 zennit==0.5.1
ls -l .whl
