#!/usr/bin/env bash
# Set-up for `make test` and `make sim`: idempotent, installs only what is missing.
#  - Debian packages the suite needs from the system: mosquitto (the MQTT tests run a real
#    broker with TLS and ACLs), postgresql (the store's tests start a throw-away server from
#    its binaries, tests/host/pgserver.py), python3-venv where the Python has no ensurepip. As root they
#    are installed with apt-get (one `apt-get update` first); otherwise the script names the
#    package and fails, so no test is skipped for want of it. chromium and
#    chromium-driver: the console's browser tests (tests/host/test_console_browser.py)
#    drive Debian's headless Chromium through /usr/bin/chromedriver.
#    (`--system-only`: stop after this step.)
#  - .venv from requirements-dev.txt (every package pinned), rebuilt when that file changes
#  - umqtt.simple for the unix port in build/lib (tools/fetch_umqtt.py)
#  - the ULP assembler micropython-esp32-ulp 1.2.0 in build/lib (tools/fetch_ulp_asm.py)
# The serial port of the simulated meter is tools/ptyrelay.py (standard library): no socat.
set -euo pipefail
cd "$(dirname "$0")/.."

# where Debian puts daemons; tools/broker.py looks in the same places (SBIN_DIRS: for tests)
SBIN_DIRS=${SBIN_DIRS-/usr/sbin:/usr/local/sbin}
has_mosquitto() { PATH="$PATH:$SBIN_DIRS" command -v mosquitto >/dev/null; }
# Debian's server binaries, where tests/host/pgserver.py looks for them (PG_LIB for tests)
PG_LIB=${PG_LIB-/usr/lib/postgresql}
has_postgresql() { compgen -G "$PG_LIB/*/bin/initdb" >/dev/null; }
# the paths tests/host/test_console_browser.py drives (CHROMIUM, CHROMEDRIVER: for tests)
CHROMIUM=${CHROMIUM-/usr/bin/chromium}
CHROMEDRIVER=${CHROMEDRIVER-/usr/bin/chromedriver}

need=()
has_mosquitto || need+=(mosquitto)
has_postgresql || need+=(postgresql)
[ -x "$CHROMIUM" ] || need+=(chromium)
[ -x "$CHROMEDRIVER" ] || need+=(chromium-driver)
if [ ! -x .venv/bin/python ] && ! python3 -c "import ensurepip" 2>/dev/null; then
    need+=("python3-venv")
fi
if [ ${#need[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "bootstrap: installing ${need[*]} (apt-get)"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
        has_mosquitto || { echo "bootstrap: apt-get installed mosquitto but no mosquitto binary found" >&2; exit 1; }
        has_postgresql || { echo "bootstrap: apt-get installed postgresql but no $PG_LIB/*/bin/initdb" >&2; exit 1; }
    else
        echo "bootstrap: the tests need the Debian package(s): ${need[*]}" >&2
        echo "bootstrap: not root, so not installing them; run as root:" >&2
        echo "    apt-get update && apt-get install ${need[*]}" >&2
        exit 1
    fi
fi
[ "${1:-}" = "--system-only" ] && exit 0    # tests/host/test_bootstrap.py: this step alone

# pip's output less one warning: a machine whose pip config names file:// indexes
# (extra-index-url) that lack a package prints "WARNING: Location 'file://...' is
# ignored: it is neither a file nor a directory." for each package it looks up
# there, then finds the package in the next index. Only that exact line is
# dropped: every other warning and error stays on stderr, and pip's exit status
# is the pipeline's (pipefail), so a failed install still stops the script.
without_file_index_warnings() {
    { "$@" 2>&1 1>&3 3>&- \
        | { grep -v "^WARNING: Location 'file://[^']*' is ignored: it is neither a file nor a directory\.\$" || true; } >&2
    } 3>&1
}

want=$(sha256sum requirements-dev.txt | cut -d' ' -f1)
if [ ! -x .venv/bin/python ] || [ "$(cat .venv/.requirements.sha256 2>/dev/null)" != "$want" ]; then
    echo "bootstrap: creating .venv (pinned packages from requirements-dev.txt)"
    python3 -m venv .venv
    without_file_index_warnings .venv/bin/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
    echo "$want" > .venv/.requirements.sha256
fi

if [ ! -f build/esp32-stubs/machine.pyi ]; then
    # type stubs of the ESP32 port, kept apart from the venv so that mypy sees
    # exactly the port's modules (tests/host/test_esp32_realism.py)
    without_file_index_warnings .venv/bin/pip install --quiet --disable-pip-version-check --no-deps --target build/esp32-stubs \
        "$(grep '^micropython-esp32-stubs==' requirements-dev.txt)" \
        "$(grep '^micropython-stdlib-stubs==' requirements-dev.txt)"
fi

if [ ! -f build/lib/umqtt/simple.py ]; then
    .venv/bin/python tools/fetch_umqtt.py build/lib
fi

# the ULP assembler (micropython-esp32-ulp, a MicroPython package pip cannot install)
if [ ! -f build/lib/esp32_ulp/opcodes.py ]; then
    .venv/bin/python tools/fetch_ulp_asm.py build/lib
fi
