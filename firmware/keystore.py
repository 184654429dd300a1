# The meter's secrets: <state_dir>/secrets.json, written once at provisioning
# (tools/flash.py provision) and never sent anywhere. Cards, MQTT and the
# service REPL each take their part of it. Missing or unreadable: {} (the
# meter then runs without that feature, and says so).
import json


def load(state_dir):
    try:
        with open(state_dir + "/secrets.json") as f:
            d = json.load(f)
    except (OSError, ValueError):
        return {}
    return d if isinstance(d, dict) else {}
