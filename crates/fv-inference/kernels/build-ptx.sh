#!/usr/bin/env bash
# Regenerates video_to_i420.ptx from video_to_i420.cu with the pinned nvcc (CUDA 13.0.88, as
# installed by scripts/cuda-toolkit.sh). The PTX is committed and embedded with include_str!,
# so neither the build nor the GPU host needs nvcc or NVRTC. The test
# `committed_ptx_matches_pinned_nvcc` (tests/yuv.rs) checks it is up to date.
#
#   eval "$(scripts/cuda-toolkit.sh --env)" && crates/fv-inference/kernels/build-ptx.sh
set -euo pipefail
cd "$(dirname "$0")"
want="13.0.88"
have="$(nvcc --version | grep -oE 'V[0-9]+\.[0-9]+\.[0-9]+' | tr -d V)"
if [[ "$have" != "$want" ]]; then
    echo "nvcc is $have, the committed PTX is made with $want (PTX ISA 9.0, loads on R580+)" >&2
    exit 1
fi
# These flags are repeated in tests/yuv.rs (NVCC_FLAGS); change both together.
# compute_80: PTX only, JIT-compiled by the driver for the GPU at hand (sm_80 and newer).
# -fmad=false: no FMA contraction, so the f32 maths matches the CPU reference bit for bit.
nvcc --ptx -arch=compute_80 -O3 -fmad=false -o video_to_i420.ptx video_to_i420.cu
echo "wrote $(pwd)/video_to_i420.ptx" >&2
