#!/usr/bin/env bash
# make ram32 MPY_SRC=/path/to/micropython: build a 32-bit unix port with the
# meter app frozen in by tools/manifest.py (METER_BOARD=unix), then print the
# RAM figures of bench/bench_ram.py with it. MPY_SRC is a MicroPython source
# tree at the version of the pinned unix port (v1.28.0) with its
# lib/micropython-lib submodule; the build stays in MPY_SRC/ports/unix/build-meter32.
# Needs gcc-multilib (Debian) for -m32. FFI, btree and TLS are left out: the
# meter uses none of them on the unix board (its MQTT link to the local
# broker is plain TCP here; on an ESP32 mbedTLS allocates outside the Python heap).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
src=${1:?usage: tools/ram32.sh MPY_SRC [bench_ram.py options]}
shift
[ -f "$src/ports/unix/Makefile" ] || { echo "ram32: $src is not a MicroPython source tree" >&2; exit 2; }
[ -f "$src/lib/micropython-lib/README.md" ] || {
    echo "ram32: $src/lib/micropython-lib is empty (git submodule update --init lib/micropython-lib)" >&2; exit 2; }
echo | gcc -m32 -x c -c -o /dev/null - 2>/dev/null || {
    echo "ram32: gcc cannot build 32-bit code here; apt-get install gcc-multilib" >&2; exit 2; }
nice -n 10 make -s -j2 -C "$src/mpy-cross" >/dev/null
METER_BOARD=unix nice -n 10 make -s -j2 -C "$src/ports/unix" BUILD=build-meter32 \
    MICROPY_FORCE_32BIT=1 MICROPY_PY_FFI=0 MICROPY_PY_BTREE=0 MICROPY_PY_SSL=0 \
    FROZEN_MANIFEST="$repo/tools/manifest.py" >/dev/null
exec "$repo/.venv/bin/python" "$repo/bench/bench_ram.py" --micropython "$src/ports/unix/build-meter32/micropython" --bisect "$@"
