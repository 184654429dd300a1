# The command parser (comms/commands.py) against docs/PROTOCOL.md §4.4: every
# field's JSON type is checked (FORMAT), then its range (RANGE); duplicate
# keys are FORMAT; a refused command changes nothing and is answered.
import codes
from comms import codec
from comms.commands import duplicate_keys
import officekit
from commskit import make_link, command, send, events, MK


def _raw(link, body, key=MK, topic=None):
    return codec.seal(key, topic or link.t_cmd, body)


def _credited(m, amount=5_000_000):
    m.apply_credit("card", 1, 1, amount)


def test_valve_open_only_from_the_integer_one():
    link, m, hw, b, rt = make_link()
    link.step()
    _credited(m)
    assert send(link, b, command(link, 1, "valve", o=0))[0]["code"] == codes.ACCEPTED
    assert not m.want_open
    # the string "0" is not a number: it must not be read as truthy
    for n, o, want in ((2, "0", codes.FORMAT), (3, "1", codes.FORMAT), (4, [], codes.FORMAT),
                       (5, True, codes.FORMAT), (6, 1.0, codes.FORMAT), (7, 2, codes.RANGE),
                       (8, -1, codes.RANGE)):
        a = send(link, b, command(link, n, "valve", o=o))
        assert a[0]["code"] == want, (o, a)
        assert not m.want_open, o
    assert send(link, b, command(link, 9, "valve", o=1, f="1"))[0]["code"] == codes.FORMAT
    assert send(link, b, command(link, 10, "valve", o=1, f=2))[0]["code"] == codes.RANGE
    assert not m.want_open
    assert send(link, b, command(link, 11, "valve", o=1))[0]["code"] == codes.ACCEPTED
    assert m.want_open
    assert len(events(m, codes.EV_COMMAND_REJECTED)) == 9


def test_counter_of_the_wrong_type_is_format_and_out_of_range_is_range():
    link, m, hw, b, rt = make_link()
    link.step()
    for body in (b'{"n":"5","op":"get"}', b'{"n":5.0,"op":"get"}', b'{"n":true,"op":"get"}',
                 b'{"n":null,"op":"get"}', b'{"op":"get"}', b'{"n":5,"op":7}', b'{"n":5}',
                 b'[5,"get"]', b'"get"', b'{"n":5,"op":"get","x":"soon"}'):
        a = send(link, b, _raw(link, body))
        assert a[0]["code"] == codes.FORMAT and a[0]["n"] == 0, (body, a)
    for body in (b'{"n":0,"op":"get"}', b'{"n":-3,"op":"get"}', b'{"n":4294967296,"op":"get"}',
                 b'{"n":5,"op":"get","x":-1}'):
        assert send(link, b, _raw(link, body))[0]["code"] == codes.RANGE, body
    assert link.cmd_n == 0    # none of them moved the counter
    assert send(link, b, _raw(link, b'{"n":5,"op":"get"}'))[0]["code"] == codes.ACCEPTED
    assert link.cmd_n == 5


def test_topup_fields_are_typed():
    link, m, hw, b, rt = make_link()
    link.step()
    bad = [({"a": "1", "s": 1, "v": 1000}, codes.FORMAT), ({"a": 1, "s": 1.0, "v": 1000}, codes.FORMAT),
           ({"a": 1, "s": 1, "v": 1000.0}, codes.FORMAT), ({"a": 1, "s": 1, "v": True}, codes.FORMAT),
           ({"a": 1, "s": 1}, codes.FORMAT), ({"a": 1, "s": 1, "v": 1000, "extra": 1}, codes.FORMAT),
           ({"a": 1 << 32, "s": 1, "v": 1000}, codes.RANGE), ({"a": 1, "s": -1, "v": 1000}, codes.RANGE)]
    for n, (args, want) in enumerate(bad, 1):
        assert send(link, b, command(link, n, "topup", **args))[0]["code"] == want, args
    assert m.balance == 0
    a = send(link, b, command(link, 20, "topup", a=1, s=1, v=1000))[0]
    assert a["code"] == codes.ACCEPTED and m.balance == 1000


def test_other_ops_check_their_fields():
    link, m, hw, b, rt = make_link()
    link.step()
    cases = [("cfg", {"k": 5, "v": 1}, codes.FORMAT), ("cfg", {"k": "low1"}, codes.FORMAT),
             ("time", {"t": "1767225600"}, codes.FORMAT), ("time", {"t": 1767225600.5}, codes.FORMAT),
             ("tariff", {"tar": [1, 0, [[0, 1]], 0]}, codes.FORMAT),
             ("get", {"w": 1}, codes.FORMAT), ("get", {"w": "log", "f": "0"}, codes.FORMAT),
             ("get", {"w": "everything"}, codes.UNKNOWN), ("emergency", {"now": 1}, codes.FORMAT),
             ("launch", {}, codes.UNKNOWN)]
    for n, (op, args, want) in enumerate(cases, 1):
        assert send(link, b, command(link, n, op, **args))[0]["code"] == want, (op, args)
    assert link.connected


def test_tariff_without_standing_charge_or_activation_is_format():
    link, m, hw, b, rt = make_link()
    link.step()
    full = {"v": 3, "at": 0, "b": [[0, 700_000]], "sc": 100}
    n = 0
    for drop in ("sc", "at", "v", "b"):
        t = dict(full)
        del t[drop]
        n += 1
        assert send(link, b, command(link, n, "tariff", tar=t))[0]["code"] == codes.FORMAT, drop
    assert m.billing.tariff.version == 1 and m.staged is None
    assert events(m, codes.EV_TARIFF_REJECTED)[-1][3] == codes.FORMAT


def test_tariff_version_of_the_wrong_type_is_answered_and_the_link_stays_up():
    link, m, hw, b, rt = make_link()
    link.step()
    for n, v in ((1, "7"), (2, 7.5), (3, None), (4, [7])):
        a = send(link, b, command(link, n, "tariff", tar={"v": v, "at": 0, "b": [[0, 1]], "sc": 0}))
        assert a == [{"n": n, "code": codes.FORMAT, "val": 0, "detail": None}], (v, a)
        assert link.connected, v
    # the same on the region topic: refused and logged, the link stays up
    body = b'{"k":"tariff","r":1,"v":"9","at":0,"b":[[0,1]],"sc":0}'
    assert send(link, b, officekit.message(b"tariff", body), link.t_tariff) == []
    assert link.connected and events(m, codes.EV_TARIFF_REJECTED)[-1][3] == codes.FORMAT
    assert m.billing.tariff.version == 1


def test_duplicate_keys_are_format():
    link, m, hw, b, rt = make_link()
    link.step()
    _credited(m)
    send(link, b, command(link, 1, "valve", o=0))
    dupes = [b'{"n":2,"op":"valve","o":0,"o":1}',
             b'{"n":3,"op":"valve","op":"valve","o":1}',
             b'{"n":4,"n":40,"op":"valve","o":1}',
             b'{"n":5,"op":"valve","o":0,"\\u006f":1}',          # the same key, escaped
             b'{"n":6,"op":"tariff","tar":{"v":2,"v":3,"at":0,"b":[[0,1]],"sc":0}}']
    for body in dupes:
        a = send(link, b, _raw(link, body))
        assert a[0]["code"] == codes.FORMAT, (body, a)
    assert not m.want_open and m.staged is None and m.billing.tariff.version == 1
    # the region topic too
    body = b'{"k":"tariff","r":1,"v":2,"at":0,"b":[[0,1]],"sc":0,"sc":5}'
    assert send(link, b, officekit.message(b"tariff", body), link.t_tariff) == []
    assert m.billing.tariff.version == 1 and m.staged is None
    assert events(m, codes.EV_TARIFF_REJECTED)[-1][3] == codes.FORMAT
    # the same key in two different objects, or inside a string, is no duplicate
    body = b'{"n":7,"op":"tariff","tar":{"v":2,"at":0,"b":[[0,1]],"sc":0},"x":0}'
    assert send(link, b, _raw(link, body))[0]["code"] == codes.ACCEPTED


def test_duplicate_scanner():
    assert not duplicate_keys(b'{"a":1,"b":{"a":2},"c":[{"a":3},{"a":4}]}')
    assert not duplicate_keys(b'{"a":"x\\",\\"a\\":1","b":"{\\"a\\""}')
    assert not duplicate_keys(b'[{"a":1},{"a":1}]')
    assert not duplicate_keys(b'{"a":[1,{"b":2,"c":3}],"b":1}')
    assert duplicate_keys(b'{"a":[1,{"b":2,"b":3}]}')
    assert duplicate_keys(b'{"a":1,"b":[],"a":2}')
    assert duplicate_keys(b'{"k":{},"k":{}}')
    assert duplicate_keys(b'{ "a" : 1 , "a" : 2 }')
