# Emulator of the ESP32 ULP FSM coprocessor, for the unix board.
#
# It runs the assembled binary the battery board loads (firmware/ulp/), word
# by word, decoding each 32-bit instruction by the ESP32 TRM's ULP encoding
# (opcode in bits 31:28). Modelled: ALU (register, immediate, stage counter),
# ST, LD, JUMP (direct, register, EQ, OV), JUMPR, JUMPS, REG_RD of RTC_GPIO_IN
# and of RTC_CNTL_LOW_POWER_ST, WAKE, SLEEP, WAIT, HALT. Anything else (I2C,
# ADC, TSENS, REG_WR, another register) raises UlpFault: a program that
# touches what is not modelled fails in the tests instead of passing on a
# guess.
#
# RTC slow memory is a bytearray of 8 KiB, little-endian 32-bit words. The
# ULP timer restarts the program one wakeup period after it halts; the
# emulator is a device model of the simulated clock (boards/unix/clock.py),
# so runs happen at their own virtual times. A run is taken as instantaneous
# (the program is ~30 instructions at 8 MHz, under 40 us, against a period
# of milliseconds). RTC_GPIO_IN comes from rtc_io, a dict RTC_GPIO number ->
# pad model with level(t_us), last_change_us() (when its level last changed,
# None: never) and next_change_us(t_us) (the earliest time from t_us its
# level may change, None: never).
#
# Speed: a day is 8.6 million runs at 10 ms. A run that changes nothing
# (memory, registers, stage counter, flags) and wakes nobody is a fixed
# point: with the same inputs the next run is the same. So the emulator
# skips the runs until the first period boundary at or after an input may
# change (a pad, the CPU going to sleep, a CPU write to slow memory). The
# runs it does execute happen at the same virtual times as without skipping.
import struct

SLOW_MEM_BYTES = const(8192)
RESERVED_BYTES = const(2040)    # CONFIG_ULP_COPROC_RESERVE_MEM of the MicroPython ESP32 build
_MAX_STEPS = const(10_000)      # a run longer than this is a program bug
_PERIPH_RTC_CNTL = const(0)
_PERIPH_RTC_IO = const(1)
_RTC_GPIO_IN = const(0x24 // 4)           # RTC_IO + 0x24, bits 31:14 = RTC_GPIO 0..17
_LOW_POWER_ST = const(0xC0 // 4)          # RTC_CNTL + 0xC0
_RDY_FOR_WAKEUP = const(1 << 19)


class UlpFault(Exception):
    pass


def _bits(w, lo, n):
    return (w >> lo) & ((1 << n) - 1)


class UlpEmu:
    def __init__(self, clock, rtc_io=None):
        self.clock = clock
        self.mem = bytearray(SLOW_MEM_BYTES)
        self.rtc_io = rtc_io or {}
        self.period_us = 0
        self.entry = None          # word address, None: not running
        self._next = None
        self.r = [0, 0, 0, 0]
        self.stage = 0
        self.zero = False
        self.ovf = False
        self._asleep = False
        self._idle = False          # the last run was a fixed point
        self._last_run = -1
        self.on_wake = None        # callable() when WAKE reaches a sleeping CPU
        self.runs = 0              # runs executed (skipped fixed points not included)
        self.steps = 0             # instructions executed, in total
        self.fixed_steps = 0       # instructions of the last fixed-point run
        self.wakes = 0
        clock.attach(self)

    # -- the esp32.ULP surface --
    def set_wakeup_period(self, index, period_us):
        if index != 0:
            raise UlpFault("timer %d not modelled" % index)
        self.period_us = period_us

    def load_binary(self, load_addr, binary):
        """load_addr in words, binary with the 12-byte ULP header (magic
        'ulp\\0', text offset, text, data and bss sizes)."""
        magic, off, text, data, bss = struct.unpack("<IHHHH", binary[:12])
        if magic != 0x00706C75 or off != 12 or len(binary) != 12 + text + data:
            raise ValueError("not a ULP binary")
        a = load_addr * 4
        if a + text + data + bss > RESERVED_BYTES:
            raise ValueError("ULP binary too large")
        self.mem[a:a + text + data] = binary[12:]
        self.mem[a + text + data:a + text + data + bss] = bytes(bss)
        self._idle = False

    def run(self, entry_point):
        """entry_point in bytes, as esp32.ULP.run takes it."""
        self.entry = entry_point // 4
        self._next = self.clock.now_us()
        self._run_due(self._next)

    def stop(self):
        """The chip lost power (power-on, brown-out): no more runs."""
        self.entry = None
        self._next = None

    def power_loss(self):
        """RTC slow memory does not survive a power-on or brown-out reset."""
        self.stop()
        self.mem[:] = bytes(SLOW_MEM_BYTES)

    # -- what the CPU reads and writes (machine.mem32 on the chip) --
    def word(self, i):
        return struct.unpack_from("<I", self.mem, i * 4)[0]

    def set_word(self, i, v):
        struct.pack_into("<I", self.mem, i * 4, v & 0xFFFFFFFF)
        self._idle = False

    @property
    def cpu_asleep(self):
        return self._asleep

    @cpu_asleep.setter
    def cpu_asleep(self, v):
        self._asleep = v
        self._idle = False

    # -- device model of the simulated clock --
    def next_event_us(self, now):
        """The next run: the timer's next period boundary, or while the last
        run was a fixed point, the first boundary at or after an input may
        change (None: no input will change, no run is needed)."""
        nxt = self._next
        if nxt is None or not self._idle:
            return nxt
        q = None
        for pad in self.rtc_io.values():
            c = pad.last_change_us()
            if c is None or c <= self._last_run:
                c = pad.next_change_us(now)   # unchanged since the last run
            if c is not None and (q is None or c < q):
                q = c
        if q is None:
            return None
        if q <= nxt:
            return nxt
        p = self.period_us
        return nxt - ((nxt - q) // p) * p

    def advance(self, t0, t1):
        pass

    def at(self, t):
        self._run_due(t)

    def _run_due(self, t):
        due = self.next_event_us(t)
        if due is None or due > t:
            return                # not yet, or a skipped run (the same as the last)
        before = self._snapshot()
        wakes = self.wakes
        self._idle = False
        n = self._execute(t)
        self.runs += 1
        self.steps += n
        self._idle = self.wakes == wakes and self._snapshot() == before
        if self._idle:
            self.fixed_steps = n
        self._last_run = t
        # the ULP timer starts counting when the program halts
        self._next = t + self.period_us if self.period_us else None

    def _snapshot(self):
        r = self.r
        return (bytes(self.mem[:RESERVED_BYTES]), r[0], r[1], r[2], r[3], self.stage,
                self.zero, self.ovf, self._asleep)

    # -- the FSM --
    def _execute(self, t):
        pc = self.entry
        r = self.r
        for n in range(1, _MAX_STEPS):
            w = self.word(pc)
            op = w >> 28
            nxt = pc + 1
            if op == 7:
                self._alu(w, r)
            elif op == 6:
                if _bits(w, 25, 3) != 4:
                    raise UlpFault("ST variant %x at %d" % (w, pc))
                addr = (r[_bits(w, 2, 2)] + _bits(w, 10, 11)) & 0x7FF
                # the high half holds the PC of the store and the address register
                self.set_word(addr, (pc & 0x7FF) << 21 | _bits(w, 2, 2) << 16 | r[_bits(w, 0, 2)])
            elif op == 13:
                addr = (r[_bits(w, 2, 2)] + _bits(w, 10, 11)) & 0x7FF
                r[_bits(w, 0, 2)] = self.word(addr) & 0xFFFF
            elif op == 8:
                nxt = self._branch(w, pc, r)
            elif op == 2:
                r[0] = self._reg_rd(w, t)
            elif op == 9:
                if _bits(w, 25, 3) == 0:
                    if w & 1:
                        self._wake()
                # SLEEP only selects the next period's register: one is modelled
            elif op == 4:
                pass    # WAIT: time within a run is not modelled
            elif op == 11:
                return n          # instructions executed, HALT included
            else:
                raise UlpFault("opcode %d at %d not modelled" % (op, pc))
            pc = nxt & 0x7FF
        raise UlpFault("program did not halt")

    def _alu(self, w, r):
        sub = _bits(w, 25, 3)
        sel = _bits(w, 21, 4)
        if sub == 2:                      # stage counter
            imm = _bits(w, 4, 8)
            if sel == 0:
                self.stage = (self.stage + imm) & 0xFF
            elif sel == 1:
                self.stage = (self.stage - imm) & 0xFF
            elif sel == 2:
                self.stage = 0
            else:
                raise UlpFault("stage op %d" % sel)
            return
        a = r[_bits(w, 2, 2)]
        if sub == 0:
            b = r[_bits(w, 4, 2)]
        elif sub == 1:
            b = _bits(w, 4, 16)
        else:
            raise UlpFault("ALU variant %d" % sub)
        if sel == 0:
            v = a + b
        elif sel == 1:
            v = a - b
        elif sel == 2:
            v = a & b
        elif sel == 3:
            v = a | b
        elif sel == 4:
            v = b                         # MOVE: the immediate, or the source register
            if sub == 0:
                v = a
        elif sel == 5:
            v = a << (b & 0xF)
        elif sel == 6:
            v = a >> (b & 0xF)
        else:
            raise UlpFault("ALU op %d" % sel)
        # the overflow flag is the carry (ADD) or borrow (SUB) out of 16 bits
        self.ovf = v < 0 or v > 0xFFFF
        v &= 0xFFFF
        self.zero = v == 0
        r[_bits(w, 0, 2)] = v

    def _branch(self, w, pc, r):
        sub = _bits(w, 25, 3)
        if sub == 0:                       # JUMP
            target = r[_bits(w, 0, 2)] if w & (1 << 21) else _bits(w, 2, 11)
            kind = _bits(w, 22, 3)
            take = kind == 0 or (kind == 1 and self.zero) or (kind == 2 and self.ovf)
            if kind > 2:
                raise UlpFault("jump type %d" % kind)
            return target if take else pc + 1
        off = _bits(w, 17, 7)
        off = -off if w & (1 << 24) else off
        if sub == 1:                       # JUMPR: R0 against the immediate
            imm, ge = _bits(w, 0, 16), w & (1 << 16)
            take = r[0] >= imm if ge else r[0] < imm
        elif sub == 2:                     # JUMPS: the stage counter
            imm, cmp = _bits(w, 0, 8), _bits(w, 15, 2)
            s = self.stage
            take = s < imm if cmp == 0 else s >= imm if cmp == 1 else s <= imm
        else:
            raise UlpFault("branch variant %d" % sub)
        return pc + off if take else pc + 1

    def _reg_rd(self, w, t):
        periph, addr = _bits(w, 8, 2), _bits(w, 0, 8)
        lo, hi = _bits(w, 18, 5), _bits(w, 23, 5)
        if periph == _PERIPH_RTC_IO and addr == _RTC_GPIO_IN:
            v = 0
            for n, pad in self.rtc_io.items():
                if pad.level(t):
                    v |= 1 << (14 + n)
        elif periph == _PERIPH_RTC_CNTL and addr == _LOW_POWER_ST:
            v = _RDY_FOR_WAKEUP if self._asleep else 0
        else:
            raise UlpFault("REG_RD of periph %d word %d not modelled" % (periph, addr))
        return (v >> lo) & ((1 << (hi - lo + 1)) - 1) & 0xFFFF

    def _wake(self):
        if self._asleep:
            self.wakes += 1
            self._asleep = False
            if self.on_wake is not None:
                self.on_wake()
