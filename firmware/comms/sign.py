# Keys of the MQTT contract, derived per meter from the head-end's master key
# with HMAC-SHA256 (mac.py, shared with the cards). Nothing region- or
# fleet-wide is symmetric: the office signs those (authority.py).
#
# Plain Python on purpose (no const()): tools/headend.py imports this very
# file under CPython, so the meter and the head-end sign the same way.
from mac import hmac_sha256, equal  # noqa: F401 - re-exported for comms and the head-end


def derive(master, label):
    """A per-meter key: HMAC(master, label)."""
    return hmac_sha256(master, label.encode() if isinstance(label, str) else label)


def meter_key(master, meter_id):
    """Key that signs the commands of one meter."""
    return derive(master, "meter/" + meter_id)


def uplink_key(mk):
    """Key that signs what the meter publishes (docs/PROTOCOL.md §3.2): from
    the meter's command key mk, under its own label, so an uplink tag is
    never a valid command MAC and the reverse."""
    return derive(mk, "uplink")


def mqtt_password(master, meter_id):
    """The meter's broker password (32 hex digits)."""
    return "".join("%02x" % b for b in derive(master, "mqtt/" + meter_id)[:16])


