#!/usr/bin/env bash
# Rebuild the C++ extension into the dev venv (.venv) as an editable install.
# Serialised with a lock so that several shells can call it at once.
set -euo pipefail
cd "$(dirname "$0")/.."
exec flock /tmp/xnorinfer-build.lock .venv/bin/pip install --no-build-isolation -e . -q "$@"
