#!/usr/bin/env bash
# Install moodbot into ./.venv (idempotent). `--test` adds the test dependencies.
#
# torch comes first and pinned: an unpinned torch can pull a multi-GB CUDA build. On a machine whose pip
# doesn't already have a CPU wheel at hand, point TORCH_INDEX_URL at PyTorch's CPU index:
#   TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu bash scripts/install.sh
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python3}
torch_version=${TORCH_VERSION:-2.13.0}
extras=""
[[ "${1:-}" == "--test" ]] && extras="[test]"

[[ -x .venv/bin/python ]] || "$python" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  if [[ -n "${TORCH_INDEX_URL:-}" ]]; then
    .venv/bin/python -m pip install --quiet "torch==${torch_version}" --index-url "$TORCH_INDEX_URL"
  else
    .venv/bin/python -m pip install --quiet "torch==${torch_version}"
  fi
fi
if [[ -n "$extras" ]] && ! .venv/bin/python -c "import llama_cpp" 2>/dev/null; then
  echo "building llama-cpp-python from source for the remote-backend tests (once: a few minutes; needs cmake and a C++ compiler)"
fi
.venv/bin/python -m pip install --quiet -e ".${extras}"
# The AVX2 int8 kernel (engine/kernels/native.py), built now with the system's C++ compiler where there is one, so a
# service that may not write its code folder finds it ready; without one, int8 uses oneDNN (slower on AVX2 servers).
.venv/bin/python -m engine.kernels.native >/dev/null || echo "  (optional: install g++ and run this again)"
# Owner-only from the start: config.toml is where the token goes (and the remote backend's API key).
[[ -f config.toml ]] || install -m 600 config.example.toml config.toml
echo "moodbot installed in .venv (config: config.toml)"
