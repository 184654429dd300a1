# Exact volume from pulses, and the tariff charge function.
import codes
from mptest import raises
from metering.volume import Volume
from metering import tariff


def test_fractional_k_factors_are_exact():
    # 0.1 pulse/L: every pulse is 10 L
    v = Volume(1, 10)
    v.add(3)
    assert v.ml() == 30_000
    # 450 pulses/L: 1000 pulses = 2222.2 mL, floor of the exact value
    v = Volume(450, 1)
    for _ in range(1000):
        v.add(1)
    assert v.ml() == 2222
    v.add(449_000 - 1000 + 1000)   # 450 000 pulses in all = 1000 L exactly
    assert v.ml() == 1_000_000
    # 2.5 pulses/L
    v = Volume(5, 2)
    v.add(7)
    assert v.ml() == 2800


def test_many_small_steps_equal_one_big_step():
    a = Volume(7, 3)
    b = Volume(7, 3)
    for _ in range(9999):
        a.add(1)
    b.add(9999)
    assert a.ml() == b.ml() == 9999 * 1000 * 3 // 7


def test_k_change_keeps_measured_volume():
    v = Volume(1, 1)
    v.add(100)
    v.set_k(2, 1)
    assert v.ml() == 100_000
    v.add(100)
    assert v.ml() == 150_000


def test_bad_k_factor_is_refused():
    raises(ValueError, Volume, 0, 1)
    raises(ValueError, Volume, 1, 0)
    raises(ValueError, Volume, 1, 10_000)       # 0.0001 pulse/L: out of range
    v = Volume(1, 1)
    raises(ValueError, v.set_k, -1, 1)
    assert (v.k_num, v.k_den) == (1, 1)


def test_block_tariff_charge():
    code, t = tariff.parse({"v": 3, "b": [[10, 300_000], [20, 500_000], [0, 900_000]]})
    assert code == codes.ACCEPTED
    assert t.charge(0) == 0
    assert t.charge(10_000) == 3_000                       # 10 L at 300 000/m3
    assert t.charge(15_000) == 3_000 + 2_500
    assert t.charge(30_000) == 3_000 + 5_000 + 9_000
    assert t.charge(1) == 0                                 # 0.3 units: floor
    assert t.charge(4) == 1                                 # 1.2 units


def test_standing_charge_accrues_by_time():
    code, t = tariff.parse({"v": 1, "b": [[0, 0]], "sc": 86_400})
    assert t.standing_charge(1) == 1
    assert t.standing_charge(3600) == 3600


def test_invalid_tariffs_get_reason_codes():
    bad = [
        ({"b": [[0, 1]]}, codes.FORMAT),                          # no version
        ({"v": 1, "b": []}, codes.FORMAT),                        # no block
        ({"v": 1, "b": [[0, 1]] * 9}, codes.FORMAT),              # 9 blocks
        ({"v": 1, "b": [[10, 1], [5, 2], [0, 3]]}, codes.RANGE),  # not increasing
        ({"v": 1, "b": [[10, 1], [20, 2]]}, codes.RANGE),         # last not open-ended
        ({"v": 1, "b": [[0, -5]]}, codes.RANGE),                  # negative price
        ({"v": 1, "b": [[0, 10 ** 12]]}, codes.RANGE),            # absurd price
        ({"v": 1, "b": [[0, 1.5]]}, codes.FORMAT),                # float money
        ({"v": True, "b": [[0, 1]]}, codes.FORMAT),
        ({"v": 1, "b": [[0, 1]], "sc": -1}, codes.RANGE),
        ("not a dict", codes.FORMAT),
    ]
    for d, want in bad:
        code, t = tariff.parse(d)
        assert (code, t) == (want, None), (d, code)
