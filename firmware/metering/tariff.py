# Tariffs and the charge function.
#
# Money is an integer count of money units: 1 unit = 1/1000 of the currency's
# minor unit (1/1000 cent). Prices are money units per m^3; the standing
# charge is money units per day.
#
# charge(ml) is the exact price of `ml` millilitres drawn in a billing period
# under increasing-block pricing, rounded down once:
#     charge(ml) = floor( sum_i price_i * ml_in_block_i / 1e6 )
# Callers deduct differences of this function, so rounding never accumulates.
#
# Wire/state form (compact, JSON):
#   {"v": version, "at": activation epoch s, "b": [[upto_litres, price], ...],
#    "sc": standing units/day, "e": tariff epoch}
# "e" (0 when absent) is the tariff epoch: only an office-signed tariff may
# raise it, and a higher epoch restarts the version order (the signed reset,
# Meter.stage_tariff, docs/PROTOCOL.md "Tariff versions").
# Block limits are cumulative litres in the period; the last block has
# upto 0, meaning unbounded. A flat tariff is one block.
#
# Social fields, each optional (a tariff without them bills as before;
# docs/METERING.md "Social tariffs"):
#   "fb": litres     free basic water: the first fb litres of each billing
#                    period are charged at zero, before the blocks
#   "fd": [litres, hour]  a daily free allowance, renewed at the local hour
#                    (and at each period start); metering/billing.py counts it
#   "mc": units      minimum charge of a billing period
#   "dr": [percent, units]  debt recovery: the share of each top-up and the
#                    amount per week that repay the debt register (Meter)
import codes

MAX_BLOCKS = const(8)
MAX_PRICE = const(100_000_000)      # 1000 currency units per m^3
MAX_STANDING = const(100_000_000)   # 1000 currency units per day
MAX_FREE_L = const(1_000_000)       # free volume, litres (1000 m^3)
MAX_MIN_CHARGE = const(1_000_000_000)   # 10 000 currency units a period
MAX_WEEKLY = const(100_000_000)     # 1000 currency units a week
_ML_PER_M3 = const(1_000_000)


class Tariff:
    def __init__(self, version, blocks, standing=0, activate_at=0, epoch=0):
        self.version = version
        self.epoch = epoch
        self.blocks = blocks          # list of (upper_ml or 0, price)
        self.standing = standing
        self.activate_at = activate_at
        self.free_ml = 0              # "fb": free volume per period, mL
        self.day_free_ml = 0          # "fd": daily free allowance, mL ...
        self.day_reset_h = 0          # ... renewed at this local hour
        self.min_charge = 0           # "mc"
        self.debt_share = 0           # "dr": percent of each top-up ...
        self.debt_week = 0            # ... and units per week, to the debt

    def charge(self, ml):
        """Price of ml mL of chargeable volume in a period: the monthly free
        volume first, at zero, then the blocks."""
        ml -= self.free_ml
        if ml <= 0:
            return 0
        total = 0
        lower = 0
        for upper, price in self.blocks:
            if upper == 0 or ml <= upper:
                total += (ml - lower) * price
                break
            total += (upper - lower) * price
            lower = upper
        return total // _ML_PER_M3

    def standing_charge(self, seconds):
        return (self.standing * seconds) // 86400

    def price_at(self, ml):
        """Marginal price (units/m^3) of the next litre, for display."""
        for upper, price in self.blocks:
            if upper == 0 or ml < upper:
                return price
        return self.blocks[-1][1]

    def to_dict(self):
        d = {
            "v": self.version,
            "at": self.activate_at,
            "b": [[u // 1000, p] for u, p in self.blocks],
            "sc": self.standing,
            "e": self.epoch,
        }
        # social fields only when set: an old tariff's form is unchanged
        if self.free_ml:
            d["fb"] = self.free_ml // 1000
        if self.day_free_ml:
            d["fd"] = [self.day_free_ml // 1000, self.day_reset_h]
        if self.min_charge:
            d["mc"] = self.min_charge
        if self.debt_share or self.debt_week:
            d["dr"] = [self.debt_share, self.debt_week]
        return d


def flat(version, price, standing=0, activate_at=0):
    return Tariff(version, [(0, price)], standing, activate_at)


def parse(d, received=False):
    """Validate a tariff in wire form. Returns (code, Tariff or None). A
    received tariff (MQTT, card: Meter.stage_tariff) must name all four
    fields, else FORMAT; config.json's and the state's may leave out sc and
    at (0)."""
    try:
        version = d["v"]
        raw = d["b"]
        if received:
            standing, at = d["sc"], d["at"]
        else:
            standing, at = d.get("sc", 0), d.get("at", 0)
    except (KeyError, TypeError, AttributeError):
        return codes.FORMAT, None
    if not (_is_int(version) and _is_int(standing) and _is_int(at)):
        return codes.FORMAT, None
    if not isinstance(raw, list) or not 1 <= len(raw) <= MAX_BLOCKS:
        return codes.FORMAT, None
    epoch = d.get("e", 0)
    if not _is_int(epoch):
        return codes.FORMAT, None
    if not 0 < version < (1 << 31) or at < 0 or not 0 <= standing <= MAX_STANDING:
        return codes.RANGE, None
    if not 0 <= epoch < (1 << 31):
        return codes.RANGE, None
    blocks = []
    prev = 0
    for i, blk in enumerate(raw):
        if not isinstance(blk, list) or len(blk) != 2 or not (_is_int(blk[0]) and _is_int(blk[1])):
            return codes.FORMAT, None
        upto, price = blk
        last = i == len(raw) - 1
        if not 0 <= price <= MAX_PRICE:
            return codes.RANGE, None
        if last:
            if upto != 0:
                return codes.RANGE, None  # the last block must be open-ended
        elif upto <= prev or upto > 1_000_000:
            return codes.RANGE, None      # limits strictly increasing, <= 1000 m^3
        blocks.append((upto * 1000, price))
        prev = upto
    t = Tariff(version, blocks, standing, at, epoch)
    code = _social(d, t)
    return (code, t) if code == codes.ACCEPTED else (code, None)


def _social(d, t):
    # the optional social fields: FORMAT for a wrong type, RANGE out of range
    fb, fd, mc, dr = d.get("fb", 0), d.get("fd", [0, 0]), d.get("mc", 0), d.get("dr", [0, 0])
    if not (_is_int(fb) and _is_int(mc) and _pair(fd) and _pair(dr)):
        return codes.FORMAT
    if not (0 <= fb <= MAX_FREE_L and 0 <= mc <= MAX_MIN_CHARGE and 0 <= fd[0] <= MAX_FREE_L
            and 0 <= fd[1] <= 23 and 0 <= dr[0] <= 100 and 0 <= dr[1] <= MAX_WEEKLY):
        return codes.RANGE
    t.free_ml = fb * 1000
    t.day_free_ml, t.day_reset_h = fd[0] * 1000, fd[1]
    t.min_charge = mc
    t.debt_share, t.debt_week = dr
    return codes.ACCEPTED


def _pair(v):
    return isinstance(v, list) and len(v) == 2 and _is_int(v[0]) and _is_int(v[1])


def _is_int(x):
    return isinstance(x, int) and not isinstance(x, bool)
