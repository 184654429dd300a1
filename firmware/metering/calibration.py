# A K-factor calibration run (docs/SERVICE.md: the technician's cal_start,
# cal_stop, cal_apply and calibrate): the pulses counted while a known volume
# runs into a test measure give the meter's K, pulses per litre as a reduced
# fraction, and the error of the K in use. Integer maths only. The REPL
# command prints; applying the new K is Meter.set_k_factor.


class Run:
    def __init__(self, volume, litres, now):
        # volume: the meter's Volume register (metering/volume.py), read
        # under the ticker's hold; now: the meter's clock, seconds
        self.litres = litres
        self.p0 = volume.pulses
        self.k = (volume.k_num, volume.k_den)
        self.ml0 = volume.ml()
        self.t0 = now
        self.n = None      # pulses counted, after a stop()
        self.new = None    # the measured K (num, den), after a stop() that counted pulses

    def stop(self, volume):
        """End the count on the register: None if the K changed during the
        run (the count is void), else (pulses, mL) counted since the start.
        With pulses counted, new is the measured K."""
        same_k = (volume.k_num, volume.k_den) == self.k
        n = volume.pulses - self.p0
        ml = volume.ml() - self.ml0
        if not same_k or n < 0:
            return None
        self.n = n
        if n:
            g = _gcd(n, self.litres)
            self.new = (n // g, self.litres // g)
        return n, ml

    def error(self, ml):
        """The meter's error with the K in use for ml counted, in hundredths
        of a percent (negative: it reads low)."""
        ref = self.litres * 1000
        return (ml - ref) * 10_000 // ref


def _gcd(a, b):
    while b:
        a, b = b, a % b
    return a
