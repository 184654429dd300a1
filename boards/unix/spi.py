# Simulated SPI bus with the machine.SPI surface (mode 0, MSB first).
#
# Each device is attached behind its own chip-select SimPin. While a CS line is
# low, every byte clocked on the bus is exchanged with that device:
# device.select() on the falling edge, device.exchange(byte) -> byte per byte,
# device.deselect() on the rising edge. With no device selected the bus reads
# 0xFF (MISO pulled up), as an empty socket on a real board would.
#
# The bus counts transfers and bytes, and, when given a clock, charges the
# virtual time a real bus at `baudrate` would take, so benchmarks can model
# tap-to-credit time. `on_transfer` lets a test act between two transfers
# (pull a card, cut the power).


class SimSPI:
    MSB = 0

    def __init__(self, bus_id=1, baudrate=1_000_000, clock=None):
        self.bus_id = bus_id
        self.baudrate = baudrate
        self.clock = clock
        self._active = None
        self.transfers = 0
        self.bytes = 0
        self.on_transfer = None

    def init(self, baudrate=None, **kw):
        if baudrate:
            self.baudrate = baudrate

    def deinit(self):
        pass

    def attach(self, cs, device):
        def edge(pin, old, new, device=device):
            if old and not new:
                self._active = device
                device.select()
            elif new and not old and self._active is device:
                self._active = None
                device.deselect()
        cs.watch(edge)

    def _xfer(self, wbuf, rbuf, n):
        self.transfers += 1
        self.bytes += n
        dev = self._active
        for i in range(n):
            b = wbuf[i] if wbuf is not None else 0
            r = dev.exchange(b) if dev is not None else 0xFF
            if rbuf is not None:
                rbuf[i] = r
        if self.clock is not None:
            self.clock.delay_us((n * 8 * 1_000_000) // self.baudrate)
        if self.on_transfer is not None:
            self.on_transfer(self.transfers)

    def write(self, buf):
        self._xfer(buf, None, len(buf))

    def read(self, n, write=0):
        out = bytearray(n)
        self._xfer(bytes([write]) * n, out, n)
        return bytes(out)

    def readinto(self, buf, write=0):
        self._xfer(bytes([write]) * len(buf), buf, len(buf))

    def write_readinto(self, wbuf, rbuf):
        self._xfer(wbuf, rbuf, len(wbuf))
