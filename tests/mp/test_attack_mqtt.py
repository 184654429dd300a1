# Attacks on the MQTT command channel, against the meter's link on the fake
# broker (deterministic, hand-stepped real time). Each test fails if the
# attack works. docs/SECURITY.md, section MQTT.
import codes
from comms import codec
from comms.link import SIG_ALLOWANCE, SIG_WINDOW_MS, build_link
from commskit import make_link, command, send, records, events
from mptest import raises
from simkit import make_meter

FORGER = b"not-the-meter-key-0123456789abcd"


def _uplinks(b):
    return len(b.published)


def _wait(link, rt, ms):
    """Let real time pass in 10 s steps (the link pings and stays up)."""
    while ms > 0:
        rt.ms += min(ms, 10_000)
        ms -= 10_000
        link.step()


def test_attack_300_forged_commands_give_bounded_events_and_uplinks():
    link, m, hw, b, rt = make_link()
    link.step()
    up0 = _uplinks(b)
    acks = []
    for i in range(300):
        acks += send(link, b, command(link, 1000 + i, "topup", key=FORGER, a=1, s=i, v=10**6))
        rt.ms += 100                        # 30 s of forgeries, inside one window
    # a genuine command in the middle of the flood still works
    a = send(link, b, command(link, 1, "topup", a=1, s=1, v=5000))
    assert a[0]["code"] == codes.ACCEPTED and m.balance == 5000
    _wait(link, rt, SIG_WINDOW_MS)
    assert len(acks) == SIG_ALLOWANCE, "forgeries beyond the allowance must get no ack"
    rejected = [e for e in events(m, codes.EV_COMMAND_REJECTED) if e[3] == codes.SIGNATURE]
    assert len(rejected) == SIG_ALLOWANCE
    summary = events(m, codes.EV_BAD_SIGNATURES)
    assert len(summary) == 1 and summary[0][3] == 300, summary
    sent = _uplinks(b) - up0
    assert sent <= 2 * SIG_ALLOWANCE + 6, "300 forgeries made %d uplinks" % sent
    assert [r for r in records(b) if r.get("code") == codes.EV_BAD_SIGNATURES]


def test_attack_flood_that_goes_on_widens_the_window():
    link, m, hw, b, rt = make_link()
    link.step()
    for w in range(3):
        for i in range(10):
            send(link, b, command(link, 50 + i, "get", key=FORGER, w="state"))
        _wait(link, rt, link._sig_window + 1)
    assert len(events(m, codes.EV_BAD_SIGNATURES)) == 3
    assert link._sig_window == 8 * SIG_WINDOW_MS     # 1, 2, 4 -> 8 windows
    send(link, b, command(link, 70, "get", key=FORGER, w="state"))   # a quiet window ...
    _wait(link, rt, link._sig_window + 1)                             # ... resets it
    assert link._sig_window == SIG_WINDOW_MS


def test_attack_forged_ack_does_not_echo_the_forgers_counter():
    link, m, hw, b, rt = make_link()
    link.step()
    send(link, b, command(link, 41, "get", w="state"))   # the meter's counter is now 41
    a = send(link, b, command(link, 777, "topup", key=FORGER, a=1, s=1, v=10**6))
    assert a[0]["code"] == codes.SIGNATURE
    assert a[0]["n"] == 0 and a[0]["val"] == 0, a


def test_attack_counter_at_end_of_range_cannot_lock_the_channel():
    link, m, hw, b, rt = make_link()
    link.step()
    top = 0xFFFFFFFF
    assert send(link, b, command(link, top, "get", w="state"))[0]["code"] == codes.ACCEPTED
    # epoch 0 is used up: nothing in it is accepted any more
    assert send(link, b, command(link, top, "get", w="state"))[0]["code"] == codes.OLD
    # the signed rule: the next epoch starts again at n = 1 ...
    assert send(link, b, command(link, 1, "get", e=1, w="state"))[0]["code"] == codes.ACCEPTED
    assert send(link, b, command(link, 2, "topup", e=1, a=1, s=1, v=100))[0]["code"] == 0
    # ... old epochs stay closed, so no command of epoch 0 can be replayed ...
    assert send(link, b, command(link, top, "get", w="state"))[0]["code"] == codes.OLD
    assert send(link, b, command(link, 2, "topup", e=1, a=1, s=1, v=100))[0]["code"] == codes.OLD
    # ... and one signed command cannot jump the epochs to their end
    assert send(link, b, command(link, 1, "get", e=3, w="state"))[0]["code"] == codes.RANGE
    assert send(link, b, command(link, 1, "get", e=0x7FFFFFFF, w="state"))[0]["code"] == codes.RANGE
    assert send(link, b, command(link, 1, "get", e=2**31, w="state"))[0]["code"] == codes.RANGE
    assert link.cmd_n == (1 << 32) | 2 and m.balance == 100


def test_attack_production_meter_refuses_plain_mqtt():
    m, hw = make_meter(production=True, mqtt={"host": "127.0.0.1", "port": 1, "tls": False})
    raises(ValueError, build_link, m, hw)
    m2, hw2 = make_meter(production=True, mqtt={"host": "127.0.0.1", "port": 1, "tls": True})
    assert build_link(m2, hw2).transport.tls is not None
    m3, hw3 = make_meter(mqtt={"host": "127.0.0.1", "port": 1, "tls": False})
    assert build_link(m3, hw3).transport.tls is None      # a development meter may


def test_attack_oversized_packet_is_counted_as_an_event():
    link, m, hw, b, rt = make_link()
    link.step()
    link._too_long(0x32, 1 << 20)
    assert events(m, codes.EV_MESSAGE_TOO_LONG)[-1][3] == 1 << 20 and link.oversized == 1


__all__ = ["codec"]
