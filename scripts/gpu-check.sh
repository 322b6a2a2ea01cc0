#!/usr/bin/env bash
# The GPU check of issue 4, in two halves, because the GPU host has no Rust toolchain:
#
#   scripts/gpu-check.sh build   (here, no GPU needed) builds the `gpu_check` example with
#                                `--features cuda` and puts it in target-gpu/ (git-ignored; carry
#                                that folder to the GPU host).
#   scripts/gpu-check.sh run     (on the GPU host; the device tool: run(command="scripts/gpu-check.sh
#                                run", carry=["target-gpu"])) checks the driver and the CUDA
#                                libraries the binary needs, then runs it: our I420 kernel against the CPU
#                                reference (byte for byte, three sizes incl. 960x544x121), then one
#                                transformer forward and one VAE decode at the released stage-1
#                                shape (960x544, 121 frames, bf16, 48 blocks, random weights),
#                                printing ms; then the same forward and decode with the reference
#                                (diffusers, PyTorch) when the host's python3 has CUDA torch.
#                                Figures also go to $OUT/{gpu-check,torch-reference}.json.
#
# Extra arguments after `run` go to gpu_check (e.g. `--layers 8 --repeat 2`); see
# crates/fv-inference/examples/gpu_check.rs and docs/cuda.md.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
bin_dir="$root/target-gpu"

build() {
    # The pinned CUDA 13.0 toolkit from PyPI (nvcc, headers, link-time libraries).
    "$root/scripts/cuda-toolkit.sh" >/dev/null
    eval "$("$root/scripts/cuda-toolkit.sh" --env)"
    export CARGO_TARGET_DIR="${CARGO_TARGET_DIR_CUDA:-$HOME/.cache/fv-target-cuda}"
    (cd "$root" && cargo build --release --locked -p fv-inference --features cuda --example gpu_check)
    # Stripped binary + libcudart + a run.sh that finds the host's cuBLAS/cuRAND (~43 MB: fits
    # the 64 MiB a device call carries).
    "$root/scripts/cuda-toolkit.sh" --bundle "$CARGO_TARGET_DIR/release/examples/gpu_check" \
        "$bin_dir" --device cuda
    # The reference implementation for the PyTorch timing: the GPU host's python3 has torch
    # (and huggingface-hub, safetensors, regex) but not diffusers, and cannot download.
    mkdir -p "$bin_dir/wheels"
    # importlib_metadata: a declared dependency the host's package list lacks (pure Python).
    python3 -m pip download --quiet --no-deps --dest "$bin_dir/wheels" \
        "diffusers==$DIFFUSERS_VERSION" importlib_metadata
    du -sh "$bin_dir"
}

# The reference version the parity fixtures were made with.
DIFFUSERS_VERSION=0.42.1

# Times the same forward and decode with diffusers on the same GPU, when the host's python3
# has torch with CUDA; says why not otherwise.
torch_reference() {
    local log="$1"
    shift
    if ! python3 -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
        echo "== PyTorch reference: skipped (no python3 with CUDA-enabled torch here)"
        return 0
    fi
    local site
    site="$(mktemp -d)"
    if ! python3 -c 'import diffusers' 2>/dev/null; then
        python3 -m pip install --quiet --no-deps --no-index --target "$site" \
            "$bin_dir"/wheels/*.whl || {
            echo "== PyTorch reference: skipped (cannot install the carried diffusers wheel)"
            return 0
        }
    fi
    echo "== PyTorch reference (diffusers $DIFFUSERS_VERSION)"
    PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}" \
        python3 "$root/scripts/torch_reference_timing.py" "$@" 2>&1 | tee -a "$log"
}

run() {
    [[ -x "$bin_dir/run.sh" ]] || {
        echo "no $bin_dir/run.sh: run 'scripts/gpu-check.sh build' first and carry target-gpu/" >&2
        exit 1
    }
    local log
    log="$(mktemp)"
    # A failing run must still leave its log in $OUT: that is when it is needed.
    local rc=0
    "$bin_dir/run.sh" "$@" 2>&1 | tee "$log" || rc=$?
    local ours
    ours="$(grep '^{' "$log" | tail -n 1 || true)"
    # Same shape and repeat count for the reference; it takes no --dtype/--tiny/--device.
    local ref_args=()

    while (($#)); do
        case "$1" in
            --size|--layers|--repeat|--text-tokens) ref_args+=("$1" "$2"); shift 2 ;;
            --no-vae) ref_args+=("$1"); shift ;;
            *) shift ;;
        esac
    done
    torch_reference "$log" "${ref_args[@]}" || true
    if [[ -n "${OUT:-}" ]]; then
        printf '%s\n' "$ours" >"$OUT/gpu-check.json"
        grep '^{"impl": "diffusers"' "$log" | tail -n 1 >"$OUT/torch-reference.json" || true
        cp "$log" "$OUT/gpu-check.log"
    fi
    return "$rc"
}

case "${1:-}" in
    build) shift; build "$@" ;;
    run) shift; run "$@" ;;
    *) echo "usage: scripts/gpu-check.sh build | run [gpu_check args]" >&2; exit 2 ;;
esac
