# Money as people read it (units.money: the LCD, the REPL, make sim): two
# decimals rounded down, so a balance is never shown above what it is and a
# debt of a fraction of a cent is -0.01, never "-0.00"; exact=True shows
# every unit (make sim's summary, which must add up).
import codes
import service
import units


def test_money_rounds_down_to_the_cent():
    cases = [(0, "0.00"), (999, "0.00"), (1000, "0.01"), (498_674, "4.98"), (300_000, "3.00"),
             (123_456_789, "1234.56"), (-1, "-0.01"), (-481, "-0.01"), (-1000, "-0.01"),
             (-1001, "-0.02"), (-100_000, "-1.00"), (-100_001, "-1.01")]
    for u, shown in cases:
        assert units.money(u) == shown, (u, units.money(u), shown)


def test_money_never_shows_more_than_there_is_and_never_minus_zero():
    for u in range(-250_000, 250_000, 37):
        s = units.money(u)
        assert s != "-0.00", u
        sign = -1 if s[0] == "-" else 1
        major, minor = s.lstrip("-").split(".")
        cents = sign * (int(major) * 100 + int(minor))
        assert cents * 1000 <= u < (cents + 1) * 1000, (u, s)


def test_exact_money_keeps_every_unit():
    cases = [(0, "0.00"), (300_000, "3.00"), (498_674, "4.98674"), (587_326, "5.87326"),
             (150_000, "1.50"), (-481, "-0.00481"), (-100, "-0.001"), (4_500_000, "45.00")]
    for u, shown in cases:
        assert units.money(u, exact=True) == shown, (u, units.money(u, exact=True), shown)


def test_the_repl_and_the_simulator_say_the_same_of_an_event():
    assert service.money is units.money                  # one formatter
    assert service.event_detail(codes.EV_CREDIT, 500_000) == "5.00"
    assert service.event_detail(codes.EV_CREDIT_EXHAUSTED, -481) == "-0.01"
    assert service.event_detail(codes.EV_CARD_REJECTED, codes.WRONG_REGION) == "wrong-region"
    assert service.event_detail(codes.EV_VALVE_CLOSED, codes.WHY_CREDIT) == "credit"
    assert service.event_detail(codes.EV_VALVE_CLOSED, codes.WHY_POWER) == "power"
    assert service.event_detail(codes.EV_VALVE_OPEN, codes.WHY_NONE) == ""
    assert service.event_detail(codes.EV_TARIFF, 2) == ""
