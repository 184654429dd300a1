#!/usr/bin/env bash
# Set-up for `make test` and `make sim`: idempotent, installs only what is missing.
#  - .venv from requirements-dev.txt (every package pinned), rebuilt when that file changes
#  - umqtt.simple for the unix port in build/lib (tools/fetch_umqtt.py)
set -euo pipefail
cd "$(dirname "$0")/.."

want=$(sha256sum requirements-dev.txt | cut -d' ' -f1)
if [ ! -x .venv/bin/python ] || [ "$(cat .venv/.requirements.sha256 2>/dev/null)" != "$want" ]; then
    echo "bootstrap: creating .venv (pinned packages from requirements-dev.txt)"
    python3 -m venv .venv
    .venv/bin/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
    echo "$want" > .venv/.requirements.sha256
fi

if [ ! -f build/esp32-stubs/machine.pyi ]; then
    # type stubs of the ESP32 port, kept apart from the venv so that mypy sees
    # exactly the port's modules (tests/host/test_esp32_realism.py)
    .venv/bin/pip install --quiet --disable-pip-version-check --no-deps --target build/esp32-stubs \
        "$(grep '^micropython-esp32-stubs==' requirements-dev.txt)" \
        "$(grep '^micropython-stdlib-stubs==' requirements-dev.txt)"
fi

if [ ! -f build/lib/umqtt/simple.py ]; then
    .venv/bin/python tools/fetch_umqtt.py build/lib
fi
