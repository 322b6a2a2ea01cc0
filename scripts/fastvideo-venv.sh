#!/usr/bin/env bash
# Installs FastVideo's own streaming mock server into a venv, for `cargo xbench latency --python`
# (a same-run comparison against the Python original). Not used by the tests or CI.
# Usage: scripts/fastvideo-venv.sh [VENV_DIR]   (default ~/.cache/fv-py); prints the python path.
set -euo pipefail
venv="${1:-$HOME/.cache/fv-py}"
python3 -m venv "$venv"
pip="$venv/bin/pip"
# fastvideo pins a CUDA torch and many training extras; the mock server needs only a few of them.
"$pip" install -q --no-deps fastvideo==0.2.1
"$pip" install -q torch torchvision "uvicorn>=0.41" fastapi websockets pydantic numpy httpx pyyaml \
  cloudpickle diffusers einops ftfy imageio psutil remote_pdb scipy transformers
"$venv/bin/python" -c "import fastvideo.entrypoints.streaming.mock_server" >/dev/null
command -v ffmpeg >/dev/null || echo "note: FastVideo's mock encodes with the ffmpeg binary; install ffmpeg" >&2
echo "$venv/bin/python"
