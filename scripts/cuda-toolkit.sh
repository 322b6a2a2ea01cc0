#!/usr/bin/env bash
# Installs the pinned CUDA 13.0 toolkit from PyPI wheels into a venv, so that
# `cargo build --features cuda` (candle's CUDA backend + our kernel) builds on a machine
# without a system CUDA install and without a GPU. See docs/cuda.md.
#
#   scripts/cuda-toolkit.sh [VENV_DIR]        (default: $CUDA_VENV or /root/.cache/cuda-venv)
#   eval "$(scripts/cuda-toolkit.sh --env)"   (only print the exports, install nothing)
#   scripts/cuda-toolkit.sh --bundle BINARY OUT_DIR [DEFAULT_ARGS...]
#       packs a cuda-feature binary built here (a test binary or the gpu_check example) for a
#       GPU host without Rust or CUDA toolkit: the stripped binary, libcudart.so.13, no-op
#       cuBLAS/cuRAND fallbacks and a run.sh that finds the host's libraries and runs the binary
#       with DEFAULT_ARGS plus its own arguments (see docs/cuda.md, "Running the GPU tests").
#       The fallbacks are used only when FV_ALLOW_FALLBACK=1 (kernel tests); a model run
#       (gpu_check) fails instead, since no-op cuBLAS would make its timings meaningless.
#
# What it does:
#   1. pip-installs nvcc/runtime/nvrtc/cublas/curand pinned to CUDA 13.0 (13.0's PTX ISA 9.0
#      loads on every CUDA-13 driver, R580+; a newer nvcc emits PTX an older 13.x driver rejects);
#   2. adds the unversioned .so links the linker wants (the wheels ship only libX.so.13);
#   3. builds a link-time stub libcuda.so from cuda.h (the driver library is on no index): every
#      cu* entry point returns 100 = CUDA_ERROR_NO_DEVICE, so a cuda build also starts and runs
#      its CPU paths on a machine without a GPU. Never ship the stub: on a GPU host the driver's
#      own libcuda.so.1 must be found instead.
#   4. prints the environment exports for the build.
set -euo pipefail

bundle() {
    local bin="$1" out="$2" c name
    shift 2
    name="$(basename "$bin" | sed 's/-[0-9a-f]\{16\}$//')"
    c="$(cu13_dir)"
    [[ -x "$bin" ]] || { echo "not an executable: $bin" >&2; exit 1; }
    rm -rf "$out" && mkdir -p "$out/lib" "$out/fallback"
    # debug info is ~80 % of a debug test binary; the GPU host only runs it
    objcopy --strip-all "$bin" "$out/$name"
    # gzip: the binary is mostly PTX text (49 MB → ~12 MB), and a device call carries 64 MiB
    # in all. run.sh unpacks it on first use.
    gzip -9 "$out/$name"
    cp -L "$c/lib/libcudart.so.13" "$out/lib/"   # 0.7 MB; any R580+ driver runs it
    # cuBLASLt alone is 540 MB, so cuBLAS/cuRAND can't travel. If the host lacks them, these
    # stand-ins let candle open the device (it creates a cuBLAS handle and a cuRAND generator
    # up front); the I420 kernel tests never call either. Only the symbols the binary imports,
    # with the sonames' version nodes it was linked against.
    local syms
    syms="$(nm -D --undefined-only "$bin" | awk '{print $2}')"
    for lib in libcublas.so.13:cublas libcurand.so.10:curand; do
        local so="${lib%%:*}" prefix="${lib##*:}" names
        names="$(grep -oE "^${prefix}[A-Za-z0-9_]+@${so}\$" <<<"$syms" | sed "s/@.*//" | sort -u)"
        [[ -n "$names" ]] || continue
        {
            echo "static int fake_handle;"
            for n in $names; do
                if [[ $n == *Create* ]]; then
                    echo "int $n(void **out) { if (out) *out = &fake_handle; return 0; }"
                else
                    echo "int $n(void) { return 0; }"
                fi
            done
        } > "$out/fallback/$prefix.c"
        { echo "$so {"; echo "  global:"; for n in $names; do echo "    $n;"; done; echo "  local: *;"; echo "};"; } \
            > "$out/fallback/$prefix.map"
        gcc -shared -fPIC -o "$out/fallback/$so" -Wl,-soname,"$so" \
            -Wl,--version-script="$out/fallback/$prefix.map" "$out/fallback/$prefix.c"
        rm "$out/fallback/$prefix.c" "$out/fallback/$prefix.map"
    done
    cat > "$out/run.sh" <<'RUN'
#!/usr/bin/env bash
# Runs a cuda-feature fv-inference binary on a GPU host (no Rust, nvcc or pip needed). Made by
# scripts/cuda-toolkit.sh --bundle. Extra arguments go to the binary (e.g. a test name).
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
echo "== GPU"
nvidia-smi --query-gpu=name,driver_version,compute_cap,memory.total --format=csv 2>&1 \
    || echo "nvidia-smi failed"
ldconfig -p 2>/dev/null | grep -E 'libcuda\.so\.1 ' || echo "libcuda.so.1 is not in the ldconfig cache"
# Where a CUDA 13 libcublas/libcublasLt/libcurand may live on the host.
candidates=(${CUDA_HOME:+$CUDA_HOME/lib64} /usr/local/cuda/lib64 /usr/local/cuda-13*/lib64
    /usr/local/cuda-13*/targets/x86_64-linux/lib /usr/lib/x86_64-linux-gnu /usr/lib64)
# ...and whatever the caller already put on LD_LIBRARY_PATH.
IFS=: read -ra from_env <<<"${LD_LIBRARY_PATH:-}"
candidates+=("${from_env[@]}")
if command -v python3 >/dev/null; then
    while read -r d; do candidates+=("$d"); done < <(python3 -c '
import glob, site, sys
for p in site.getsitepackages() + [site.getusersitepackages()] + sys.path:
    for d in glob.glob(p + "/nvidia/cu13/lib") + glob.glob(p + "/nvidia/*/lib"):
        print(d)' 2>/dev/null)
fi
dirs=("$here/lib")
missing=0
for so in libcublas.so.13 libcublasLt.so.13 libcurand.so.10; do
    found=""
    for d in "${candidates[@]}"; do
        if [[ -e "$d/$so" ]]; then found="$d"; break; fi
    done
    if [[ -n $found ]]; then
        echo "$so: $found"
        [[ " ${dirs[*]} " == *" $found "* ]] || dirs+=("$found")
    else
        echo "$so: not found"
        missing=1
    fi
done
if [[ $missing == 1 ]]; then
    if [[ "${FV_ALLOW_FALLBACK:-0}" != 1 ]]; then
        echo "ERROR: the real CUDA 13 cuBLAS/cuRAND are needed (FV_ALLOW_FALLBACK=1 runs the"
        echo "kernel tests on no-op stand-ins, never the model)."
        exit 1
    fi
    echo "WARNING: using no-op cuBLAS/cuRAND stand-ins ($here/fallback): fine for the kernel"
    echo "tests, but the host cannot run the LTX-2 model without the real CUDA 13 libraries."
    dirs=("$here/lib" "$here/fallback")
fi
export LD_LIBRARY_PATH="$(IFS=:; echo "${dirs[*]}")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
if [[ ! -x "$here/$BIN_NAME" ]]; then
    gunzip -c "$here/$BIN_NAME.gz" >"$here/$BIN_NAME" && chmod +x "$here/$BIN_NAME" \
        || { echo "cannot unpack $here/$BIN_NAME.gz" >&2; exit 1; }
fi
echo "== libraries $BIN_NAME resolves"
ldd "$here/$BIN_NAME" | grep -E 'cuda|cublas|curand|not found'
echo "== $BIN_NAME (FV_REQUIRE_GPU=1: a missing GPU fails instead of skipping)"
FV_REQUIRE_GPU=1 RUST_BACKTRACE=1 "$here/$BIN_NAME" "${DEFAULT_ARGS[@]}" "$@"
RUN
    # Bake the binary's name and default arguments into run.sh (quoted for bash).
    local defaults="" a
    for a in "$@"; do defaults+=" $(printf '%q' "$a")"; done
    sed -i "s|^here=.*|&\nBIN_NAME=$(printf '%q' "$name")\nDEFAULT_ARGS=($defaults)|" "$out/run.sh"
    chmod +x "$out/run.sh"
    echo "bundle in $out ($(du -sh "$out" | cut -f1)):" >&2
    ls -la "$out" "$out/lib" "$out/fallback" >&2
}

env_only=0
bundle_args=()
if [[ "${1:-}" == "--bundle" ]]; then
    [[ $# -ge 3 ]] || { echo "usage: $0 --bundle BINARY OUT_DIR [DEFAULT_ARGS...]" >&2; exit 2; }
    shift
    bundle_args=("$@")
    set --
fi
if [[ "${1:-}" == "--env" ]]; then
    env_only=1
    shift
fi
VENV="${1:-${CUDA_VENV:-/root/.cache/cuda-venv}}"

# The wheels unpack to site-packages/nvidia/cu13, laid out like a CUDA install.
cu13_dir() {
    "$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])' \
        | sed 's|$|/nvidia/cu13|'
}

print_env() {
    local c
    c="$(cu13_dir)"
    cat <<EOF
export CUDA_HOME='$c'
export CUDA_PATH='$c'
export PATH='$c/bin':"\$PATH"
# lib/stubs holds the fake libcuda: for building and CPU-only test runs here, never on a GPU host
export LD_LIBRARY_PATH='$c/lib:$c/lib/stubs'\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}
export LIBRARY_PATH='$c/lib:$c/lib/stubs'\${LIBRARY_PATH:+:\$LIBRARY_PATH}
# no nvidia-smi here: candle-kernels needs the target arch (90 = H100/H200)
export CUDA_COMPUTE_CAP=\${CUDA_COMPUTE_CAP:-90}
export CUDAFORGE_THREADS=\${CUDAFORGE_THREADS:-2}
# pins cudarc's CUDA version instead of parsing \`nvcc --version\`
export CUDARC_CUDA_VERSION=13000
EOF
}

if [[ ${#bundle_args[@]} -ge 2 ]]; then
    [[ -x "$VENV/bin/python" ]] || { echo "no venv at $VENV; run $0 first" >&2; exit 1; }
    bundle "${bundle_args[@]}"
    exit 0
fi
if [[ $env_only == 1 ]]; then
    [[ -x "$VENV/bin/python" ]] || { echo "no venv at $VENV; run $0 first" >&2; exit 1; }
    print_env
    exit 0
fi

if [[ ! -x "$VENV/bin/python" ]]; then
    python3 -m venv "$VENV"
fi
# ~1.2 GB unpacked (cublasLt alone is 540 MB)
"$VENV/bin/pip" install --quiet --disable-pip-version-check \
    nvidia-cuda-nvcc==13.0.88 nvidia-cuda-crt==13.0.88 nvidia-cuda-runtime==13.0.96 \
    nvidia-cuda-cccl==13.0.85 nvidia-nvvm==13.0.88 nvidia-cuda-nvrtc==13.0.88 \
    nvidia-cublas==13.0.2.14 nvidia-curand==10.4.0.35

C="$(cu13_dir)"
[[ -x "$C/bin/nvcc" ]] || { echo "nvcc not found under $C/bin after install" >&2; exit 1; }

(
    cd "$C/lib"
    for pair in libcublas.so:libcublas.so.13 libcublasLt.so:libcublasLt.so.13 \
        libcurand.so:libcurand.so.10 libnvrtc.so:libnvrtc.so.13 libcudart.so:libcudart.so.13; do
        link="${pair%%:*}" target="${pair##*:}"
        [[ -e "$target" ]] || { echo "missing $C/lib/$target" >&2; exit 1; }
        ln -sf "$target" "$link"
    done
)

mkdir -p "$C/lib/stubs"
(
    cd "$C/lib/stubs"
    # One `int cuXxx(void){return 100;}` per driver entry point named in cuda.h (~450). The
    # signatures are wrong on purpose: only the symbol names matter for linking, and every
    # call just reports "no device".
    gcc -E -P -I"$C/include" "$C/include/cuda.h" \
        | grep -oE '\bcu[A-Z][A-Za-z0-9_]*[[:space:]]*\(' \
        | sed 's/[[:space:]]*($//' | sort -u \
        | awk '{print "int " $1 "(void){return 100;}"}' > stub.c
    gcc -shared -fPIC -o libcuda.so.1 -Wl,-soname,libcuda.so.1 stub.c
    ln -sf libcuda.so.1 libcuda.so
)

echo "# CUDA 13.0 toolkit ready in $VENV ($("$C/bin/nvcc" --version | grep -oE 'V[0-9.]+'))" >&2
echo "# eval these (or: eval \"\$($0 --env $VENV)\"):" >&2
print_env
