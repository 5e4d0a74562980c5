#!/usr/bin/env bash
# Creates tools/reference/.venv with the CPU PyTorch and transformers the reference scripts use.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
if [ ! -x "$here/.venv/bin/python" ]; then
  python3 -m venv "$here/.venv"
fi
"$here/.venv/bin/pip" install -q torch==2.13.0+cpu
"$here/.venv/bin/pip" install -q -r "$here/requirements.txt"
