"""A unix-port meter behind a pseudo-terminal that delivers Ctrl-C the way the
ESP32's UART does (the serial-port attack tests, and `make sim`'s Ctrl-C at
boot). Standard library only; Linux x86_64 for the traced instants (ptrace).

Why not socat or a pty's line discipline: with socat in raw mode a 0x03 byte is
only data, so no Ctrl-C ever interrupts the unix port, and a test of the boot
guard passes whatever the firmware does. A pty with ISIG on turns every 0x03
into SIGINT whatever the firmware asked for; on the unix port a masked Ctrl-C
(kbd_intr(-1)) is SIG_DFL, so that would kill a meter a chip keeps running.

The model, from ports/esp32/uart.c (uart_irq_handler; usb_serial_jtag.c does
the same): for every received byte the ISR compares it with the VM's
interrupt_char. Equal: it raises KeyboardInterrupt (sets the pending
exception) and drops the byte. Otherwise: the byte goes to the stdin ring
buffer, as data. kbd_intr(c) sets interrupt_char.

On the unix port kbd_intr(3) installs a SIGINT handler and kbd_intr(-1)
removes it (ports/unix/unix_mphal.c, mp_hal_set_interrupt_char), so the
process's SIGINT disposition *is* its interrupt_char. For each 0x03 the
harness stops the process (the ISR preempts the interpreter: the firmware
cannot change its mask while the decision is made), reads SigCgt from
/proc/<pid>/status, and then either sends SIGINT (interrupt_char is Ctrl-C:
the pending KeyboardInterrupt) or writes the byte to the pty (data), and lets
the process go on. Every other byte is written to the pty unchanged, and the
pty is raw both ways, as a UART has no line discipline.
"""

import ctypes
import os
import pty
import signal
import subprocess
import threading
import time
import tty
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MICROPYTHON = os.environ.get("MICROPYTHON", str(ROOT / ".venv" / "bin" / "micropython"))


def mp_env(app_dirs=None):
    """MICROPYPATH for the repository's firmware, or for a deployed tree."""
    dirs = app_dirs or [ROOT / "firmware", ROOT, ROOT / "build" / "lib"]
    return dict(os.environ, MICROPYPATH=":".join([".frozen"] + [str(d) for d in dirs]))

SIGINT_BIT = 1 << (signal.SIGINT - 1)


_libc = ctypes.CDLL(None, use_errno=True)
_libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
_libc.ptrace.restype = ctypes.c_long
PTRACE_TRACEME, PTRACE_PEEKDATA, PTRACE_GETREGS = 0, 2, 12
PTRACE_DETACH, PTRACE_SYSCALL, PTRACE_SETOPTIONS = 17, 24, 0x4200
PTRACE_O_TRACESYSGOOD = 1
SYS_RT_SIGACTION = 13          # x86_64
# struct user_regs_struct (x86_64): the slots used here
R_RSI, R_RDI, R_ORIG_RAX = 13, 14, 15


def _sigint_ignored_traced():
    _sigint_ignored()
    if _libc.ptrace(PTRACE_TRACEME, 0, None, None) != 0:
        # untraced, the parent would wait for a stop that never comes
        raise OSError(ctypes.get_errno(), "ptrace(PTRACE_TRACEME) refused on this machine")


def _run_traced_until(pid, moment):
    """Run a traced child until a SIGINT disposition change has returned,
    then detach it. moment "on": the port turns Ctrl-C on for the script
    (kbd_intr(3) just before its first statement); detached delivering
    SIGINT, a Ctrl-C in that instant. moment "masked": the script's first
    kbd_intr(-1) after that; detached stopped, for a Ctrl-C right after the
    mask, before anything else runs. "on-again": the second time Ctrl-C is
    turned on (a development boot's own kbd_intr(3)), delivering SIGINT.
    Returns False if the child exited."""
    regs = (ctypes.c_ulong * 27)()
    _, st = os.waitpid(pid, 0)                   # stopped at exec
    _libc.ptrace(PTRACE_SETOPTIONS, pid, None, ctypes.c_void_p(PTRACE_O_TRACESYSGOOD))
    entering, on, hit, sig = True, 0, False, 0
    while True:
        _libc.ptrace(PTRACE_SYSCALL, pid, None, ctypes.c_void_p(sig))
        _, st = os.waitpid(pid, 0)
        if os.WIFEXITED(st) or os.WIFSIGNALED(st):
            return False
        sig = 0
        if os.WSTOPSIG(st) != (signal.SIGTRAP | 0x80):
            sig = os.WSTOPSIG(st)                # a signal of its own: pass it on
            continue
        if entering:
            _libc.ptrace(PTRACE_GETREGS, pid, None, ctypes.byref(regs))
            if regs[R_ORIG_RAX] == SYS_RT_SIGACTION and regs[R_RDI] == signal.SIGINT and regs[R_RSI]:
                handler = _libc.ptrace(PTRACE_PEEKDATA, pid, ctypes.c_void_p(regs[R_RSI]), None)
                if handler not in (0, 1):        # neither SIG_DFL nor SIG_IGN
                    on += 1
                    hit = moment == ("on" if on == 1 else "on-again" if on == 2 else None)
                elif on:
                    hit = moment == "masked"
        elif hit:
            stop = signal.SIGSTOP if moment == "masked" else signal.SIGINT
            _libc.ptrace(PTRACE_DETACH, pid, None, ctypes.c_void_p(stop))
            return True
        entering = not entering


def _sigint_ignored():
    # The PyPI unix port runs MicroPython inside a CPython process, and CPython
    # installs its own SIGINT handler at start-up unless SIGINT is inherited
    # ignored. Inherited ignored, it stays uncaught until MicroPython's
    # kbd_intr() decides, as in a native unix build.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _state(pid):
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0]


def sigint_caught(pid):
    """True while the process has a SIGINT handler (kbd_intr(3) on unix)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("SigCgt:"):
                return bool(int(line.split()[1], 16) & SIGINT_BIT)
    return False


class UartMeter:
    """micropython -i <script> with its console on a raw pty (the UART)."""

    def __init__(self, root, script=None, app_dirs=None, args=(), ctrl_c_at=None,
                 micropython=MICROPYTHON):
        # ctrl_c_at "on": a Ctrl-C the instant the port turns Ctrl-C on for
        # the script; "masked": the instant the script's first statement has
        # masked it, before any import (see _run_traced_until)
        self.root = str(root)
        script = str(script or ROOT / "firmware" / "main.py")
        self.master, slave = pty.openpty()
        tty.setraw(slave)
        tty.setraw(self.master)
        self.proc = subprocess.Popen(
            [micropython, *args, "-i", script],
            # preexec: only signal() and ptrace() run in the child before exec
            preexec_fn=_sigint_ignored_traced if ctrl_c_at else _sigint_ignored,  # noqa: PLW1509
            cwd=self.root, env=mp_env(app_dirs),
            stdin=slave, stdout=slave, stderr=slave, start_new_session=True)
        os.close(slave)
        self.deliveries = []        # "interrupt" or "data", one per Ctrl-C sent
        if ctrl_c_at in ("on", "on-again"):
            ok = _run_traced_until(self.proc.pid, ctrl_c_at)
            self.deliveries.append("interrupt" if ok else "gone")
        elif ctrl_c_at == "masked":
            if not _run_traced_until(self.proc.pid, "masked"):
                self.deliveries.append("gone")
            else:                                # stopped: the model decides, then it goes on
                self.ctrl_c()
        self._out = bytearray()
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    # ---- the console ----
    def _read(self):
        while True:
            try:
                b = os.read(self.master, 4096)
            except OSError:
                return
            if not b:
                return
            with self._lock:
                self._out += b

    def output(self):
        with self._lock:
            return self._out.decode("utf-8", "replace").replace("\r\n", "\n")

    def wait_for(self, text, timeout=20):
        """Until `text` is on the console; False on time-out or exit."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.output():
                return True
            if not self.alive():
                # what it printed last may still be in the pty: the reader
                # ends once it has read all of it (EIO after the slave closed)
                self._reader.join(2)
                return text in self.output()
            time.sleep(0.005)
        return False

    def send(self, data):
        """Bytes over the UART: 0x03 through the interrupt model, the bytes
        between in one write each."""
        for i, run in enumerate(bytes(data).split(b"\x03")):
            if i:
                self.ctrl_c()
            if run:
                os.write(self.master, run)

    def ctrl_c(self):
        pid = self.proc.pid
        try:
            os.kill(pid, signal.SIGSTOP)
            deadline = time.monotonic() + 5
            while _state(pid) not in ("T", "t") and time.monotonic() < deadline:
                time.sleep(0.0002)
            if sigint_caught(pid):
                os.kill(pid, signal.SIGINT)     # pending: taken when it runs on
                self.deliveries.append("interrupt")
            else:
                os.write(self.master, b"\x03")
                self.deliveries.append("data")
        except (ProcessLookupError, FileNotFoundError):
            self.deliveries.append("gone")
            return
        finally:
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass

    def repl_answers(self, timeout=3.0):
        """Type a line that prints a marker only if an interpreter runs it."""
        self.send(b"\r\nprint('RE' + 'PL-OPEN')\r\n")
        return self.wait_for("REPL-OPEN", timeout)

    def alive(self):
        return self.proc.poll() is None

    def close(self):
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait(5)
        try:
            os.close(self.master)
        except OSError:
            pass
        self._reader.join(2)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


if __name__ == "__main__":
    from libscript import not_a_command
    not_a_command(__doc__, "from uartpty import UartMeter  (tests/host/test_attack_serial_*.py, tools/sim.py)")
