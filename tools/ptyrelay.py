#!/usr/bin/env python3
"""A serial port for the simulated meter: a pseudo-terminal whose far end is
a command (usually `micropython -i firmware/main.py`), as a USB-UART is for a
board. Only the Python standard library: no socat needed.

    tools/ptyrelay.py tty-meter -- .venv/bin/micropython -i firmware/main.py &
    .venv/bin/mpremote connect tty-meter resume exec "status()"

Two pty pairs, both raw with echo off: the command runs on one (its
controlling terminal, so it gets SIGHUP if the relay dies), `LINK` is a
symlink to the other's slave, which mpremote or a terminal opens. The relay
copies bytes both ways and ends when the command ends; SIGTERM ends the
command too. With `--log FILE` everything the command writes is also copied
to FILE. Output nobody reads is buffered up to 1 MB, then the oldest is
dropped (a UART with nothing attached loses its bytes too).
"""

import argparse
import fcntl
import os
import select
import signal
import sys
import termios
import tty

KEEP = 1 << 20


def _raw_pair():
    master, slave = os.openpty()
    tty.setraw(slave)
    os.set_blocking(master, False)
    return master, slave


def _spawn(cmd, slave):
    pid = os.fork()
    if pid == 0:  # the child: a session of its own on the pty
        try:
            os.setsid()
            fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
            for fd in (0, 1, 2):
                os.dup2(slave, fd)
            os.closerange(3, 256)
            os.execvp(cmd[0], cmd)
        finally:
            os._exit(127)
    return pid


def relay(link, cmd, log=None):
    far_m, far_s = _raw_pair()      # the command's side
    near_m, near_s = _raw_pair()    # the side the user opens via `link`
    try:
        os.unlink(link)
    except FileNotFoundError:
        pass
    os.symlink(os.ttyname(near_s), link)
    pid = _spawn(cmd, far_s)
    os.close(far_s)
    # near_s stays open here: without it the near master reads EIO whenever
    # no client has the port open, and the relay would spin
    signal.signal(signal.SIGTERM, lambda *_: os.kill(pid, signal.SIGTERM))
    to_far, to_near = bytearray(), bytearray()
    status = 0
    try:
        while True:
            wr = ([far_m] if to_far else []) + ([near_m] if to_near else [])
            try:
                r, w, _ = select.select([far_m, near_m], wr, [], 0.5)
            except InterruptedError:
                continue
            if far_m in r:
                try:
                    data = os.read(far_m, 4096)
                except OSError:  # EIO: the command closed its terminal (it ended)
                    data = b""
                if not data:
                    break
                to_near += data
                if log:
                    log.write(data)
                    log.flush()
                if len(to_near) > KEEP:
                    del to_near[:len(to_near) - KEEP]
            if near_m in r:
                try:
                    to_far += os.read(near_m, 4096)
                except (BlockingIOError, OSError):
                    pass
            for fd, buf in ((far_m, to_far), (near_m, to_near)):
                if fd in w and buf:
                    try:
                        del buf[:os.write(fd, buf)]
                    except BlockingIOError:
                        pass
    finally:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        _, status = os.waitpid(pid, 0)
        try:
            os.unlink(link)
        except FileNotFoundError:
            pass
    return os.waitstatus_to_exitcode(status)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    ap = argparse.ArgumentParser(usage="%(prog)s LINK [--log FILE] -- COMMAND [ARG...]",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("link", help="path of the symlink to create (the 'serial port')")
    ap.add_argument("--log", help="also copy the command's output to this file")
    cut = argv.index("--") if "--" in argv else len(argv)
    a = ap.parse_args(argv[:cut])                 # -h/--help and a missing LINK answered here
    cmd = argv[cut + 1:]
    if not cmd:
        ap.error("no command given after --")
    log = open(a.log, "wb") if a.log else None  # noqa: SIM115 - open for the relay's life
    try:
        return relay(a.link, cmd, log)
    finally:
        if log:
            log.close()


if __name__ == "__main__":
    sys.exit(main())
