# Office-signed documents on MQTT (signed.py through comms/commands.py):
# the tariff version rule (bounded step, epochs as the signed reset) and
# fleet commands (scope, expiry, sequence, key retirement).
import json

import codes
import officekit
from commskit import make_link, send, region_tariff, command, events
from simkit import run

T = {"at": 0, "b": [[0, 400_000]], "sc": 0}


def _fleet(link, region=1, d=officekit.TEST_D, **doc):
    doc.setdefault("x", link.clock.time() + 3600)
    body = json.dumps(dict(doc, k="fleet", r=region) if "m" not in doc
                      else dict(doc, k="fleet")).encode()
    return officekit.message(b"fleet", body, d)


def _tariff(link, b, v, e=None):
    t = dict(T, v=v) if e is None else dict(T, v=v, e=e)
    send(link, b, region_tariff(**t), link.t_tariff)


def test_version_steps_are_bounded():
    link, m, hw, b, rt = make_link()
    link.step()
    _tariff(link, b, 1 + 1000)
    run(m, hw, 1)
    assert m.billing.tariff.version == 1001
    _tariff(link, b, 1001 + 1001)                   # one too far
    run(m, hw, 1)
    assert m.billing.tariff.version == 1001
    assert events(m, codes.EV_TARIFF_REJECTED)[-1][3] == codes.RANGE
    _tariff(link, b, 2 ** 31 - 1)
    assert m.staged is None and events(m, codes.EV_TARIFF_REJECTED)[-1][3] == codes.RANGE
    _tariff(link, b, 1002)
    run(m, hw, 1)
    assert m.billing.tariff.version == 1002


def test_a_higher_epoch_is_the_signed_reset():
    link, m, hw, b, rt = make_link()
    link.step()
    # a per-meter tariff (the meter's own key) far along the version range
    v = 1
    for n in range(1, 4):
        v += 1000
        a = send(link, b, command(link, n, "tariff", tar=dict(T, v=v)))
        assert a[0]["code"] == codes.ACCEPTED
        run(m, hw, 1)
    assert m.billing.tariff.version == 3001
    # the per-meter key cannot open a new epoch: only the office can
    a = send(link, b, command(link, 4, "tariff", tar=dict(T, v=1, e=1)))
    assert a[0]["code"] == codes.REFUSED
    _tariff(link, b, 1, e=1)                        # office-signed: reset
    run(m, hw, 1)
    assert m.billing.tariff.version == 1 and m.billing.tariff.epoch == 1
    # the old epoch is over, whatever its version; the new one goes on
    _tariff(link, b, 3002, e=0)
    assert m.staged is None and events(m, codes.EV_TARIFF_REJECTED)[-1][3] == codes.OLD
    a = send(link, b, command(link, 5, "tariff", tar=dict(T, v=2)))
    assert a[0]["code"] == codes.ACCEPTED           # per meter, inside the epoch in force
    run(m, hw, 1)
    assert (m.billing.tariff.version, m.billing.tariff.epoch) == (2, 1)


def test_epoch_survives_a_reboot():
    link, m, hw, b, rt = make_link()
    link.step()
    _tariff(link, b, 7, e=3)
    run(m, hw, 1)
    link2, m2, hw2, b2, rt2 = make_link(hw.state_dir)
    assert (m2.billing.tariff.version, m2.billing.tariff.epoch) == (7, 3)


def test_fleet_valvetest_scope_expiry_and_replay():
    link, m, hw, b, rt = make_link()
    link.step()
    m.apply_credit("card", 1, 1, 5_000_000)
    run(m, hw, 5)
    moves = m.valve.actuations
    now = hw.clock.time()
    assert send(link, b, _fleet(link, op="valvetest", n=10), link.t_fleet)[0]["code"] == codes.ACCEPTED
    run(m, hw, 30)
    assert m.valve.actuations > moves
    # the same command again (a replay), an older one, another region, expired, unsigned
    for msg, why in ((_fleet(link, op="valvetest", n=10), codes.OLD),
                     (_fleet(link, op="valvetest", n=9), codes.OLD),
                     (_fleet(link, 2, op="valvetest", n=11), codes.WRONG_REGION),
                     (_fleet(link, op="valvetest", n=12, x=now - 1), codes.OLD),
                     (_fleet(link, op="valvetest", n=13, d=4242), codes.SIGNATURE),
                     (_fleet(link, op="reboot", n=14), codes.UNKNOWN)):
        assert send(link, b, msg, link.t_fleet) == []
        assert events(m, codes.EV_COMMAND_REJECTED)[-1][3] == why, why
    # a list of meters that names this one
    a = send(link, b, _fleet(link, m=["M000009", "M000001"], op="valvetest", n=15), link.t_fleet)
    assert a[0]["code"] == codes.ACCEPTED and a[0]["val"] == 15


def test_fleet_retire_key_revision():
    link, m, hw, b, rt = make_link()
    d2 = 0x1234567
    m.attach_office(officekit.keys(officekit.TEST_D, d2))    # revisions 1 and 2
    link.step()
    _tariff(link, b, 2)
    run(m, hw, 1)
    assert m.billing.tariff.version == 2
    # revision 1 may not retire revision 2 (its successor)
    send(link, b, _fleet(link, op="retire", rev=3, n=1), link.t_fleet)
    send(link, b, _fleet(link, op="retire", rev=2, n=2), link.t_fleet)
    assert events(m, codes.EV_COMMAND_REJECTED)[-1][3] == codes.RANGE
    assert m.office.min_rev == 1
    a = send(link, b, _fleet(link, op="retire", rev=2, n=3, d=d2), link.t_fleet)
    assert a[0]["code"] == codes.ACCEPTED and m.office.min_rev == 2
    _tariff(link, b, 3)                              # signed by revision 1: retired
    assert m.staged is None and events(m, codes.EV_TARIFF_REJECTED)[-1][3] == codes.SIGNATURE
    # retired for good: the provisioned keys come back at boot, the retirement with them
    link2, m2, hw2, b2, rt2 = make_link(hw.state_dir)
    m2.attach_office(officekit.keys(officekit.TEST_D, d2))
    assert m2.office.min_rev == 2 and m2.office.active() == [2]


def test_fleet_cell_restarts_the_charge_count_of_the_named_meter_only():
    import power
    link, m, hw, b, rt = make_link()
    link.step()
    # a mains board counts no cell: refused, and its sequence not spent
    send(link, b, _fleet(link, m=["M000001"], op="cell", n=1), link.t_fleet)
    assert events(m, codes.EV_COMMAND_REJECTED)[-1][3] == codes.REFUSED
    m.cell = power.CellEstimate()                    # as a battery board builds it
    m.cell.used = power.USABLE_UAS - power.RESERVE_UAS   # at the valve's reserve
    for msg, why in ((_fleet(link, op="cell", n=2), codes.RANGE),         # a whole region
                     (_fleet(link, m=["M000009"], op="cell", n=3), codes.WRONG_METER),
                     (_fleet(link, m=["M000001"], op="cell", n=4, d=4242), codes.SIGNATURE)):
        assert send(link, b, msg, link.t_fleet) == []
        assert events(m, codes.EV_COMMAND_REJECTED)[-1][3] == why, why
        assert m.cell.level() == power.LEVEL_RESERVE
    a = send(link, b, _fleet(link, m=["M000001"], op="cell", n=5), link.t_fleet)
    assert a[0]["code"] == codes.ACCEPTED and a[0]["val"] == 5
    assert m.cell.used == 0 and m.cell.level() == 0
    assert events(m, codes.EV_LOW_BATTERY)[-1][3] == 100
    # durable, and a replay cannot restart the count a second time
    link2, m2, hw2, b2, rt2 = make_link(hw.state_dir)
    m2.cell = power.CellEstimate()
    m2.restore()
    assert m2.cell.used == 0 and m2.cell.since == hw.clock.time()
    m2.cell.used = 1234
    link2.step()
    assert send(link2, b2, _fleet(link2, m=["M000001"], op="cell", n=5), link2.t_fleet) == []
    assert events(m2, codes.EV_COMMAND_REJECTED)[-1][3] == codes.OLD and m2.cell.used == 1234
