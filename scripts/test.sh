#!/usr/bin/env bash
# Install test dependencies, fetch the real test model (cached), lint, and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install.sh --test
.venv/bin/python scripts/fetch_models.py smollm2 >/dev/null
.venv/bin/ruff check .
.venv/bin/python -m pytest "$@"
