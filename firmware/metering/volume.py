# Pulses to millilitres, exactly.
#
# The K-factor (pulses per litre) is held as a ratio num/den of integers, so
# 0.1, 1, 2.5 or 450 pulses/L are all exact. Volume since the last K change is
# floor(pulses * 1000 * den / num) mL, recomputed from the pulse total, so no
# rounding accumulates however the pulses arrive. A K change closes the
# current segment: the volume measured so far is kept as it is.


class Volume:
    def __init__(self, k_num, k_den, base_ml=0, pulses=0):
        check_k(k_num, k_den)
        self.k_num = k_num
        self.k_den = k_den
        self.base_ml = base_ml   # volume of earlier K segments
        self.pulses = pulses     # pulses in the current K segment

    def add(self, n):
        self.pulses += n

    def ml(self):
        return self.base_ml + (self.pulses * 1000 * self.k_den) // (self.k_num)

    def set_k(self, k_num, k_den):
        check_k(k_num, k_den)
        self.base_ml = self.ml()
        self.pulses = 0
        self.k_num = k_num
        self.k_den = k_den

    def to_state(self):
        return [self.k_num, self.k_den, self.base_ml, self.pulses]

    @classmethod
    def from_state(cls, s):
        return cls(s[0], s[1], s[2], s[3])


def check_k(num, den):
    # 0.001 to 100 000 pulses per litre covers reed switches to turbine sensors.
    if not (isinstance(num, int) and isinstance(den, int)) or num <= 0 or den <= 0:
        raise ValueError("K-factor must be a ratio of positive integers")
    if num * 1000 < den or num > 100_000 * den:
        raise ValueError("K-factor out of range (0.001..100000 pulses/L)")
