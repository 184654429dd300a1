# Event 44 (ota) for people, in both simulators' output (simrun.py,
# simbattery.py): the version, the step, and what the detail byte means
# for that step (docs/OTA.md §4).
import codes

_OTA_STEPS = ("", "accepted", "refused", "resumed", "chunk-bad", "image-bad", "switched",
              "trial", "valid", "selftest-failed", "rolled-back", "running", "tamper", "wrong-slot")
_OTA_CHECKS = ("", "metering", "state", "valve", "card reader", "link")    # ota/selftest.py
_OTA_STATES = ("idle", "download", "verify", "switched", "trial", "recheck")  # ota/updater.py


def ota_event(a):
    """Event 44's argument (docs/OTA.md §4) for people: version, step, and
    what the detail byte means for that step."""
    step, d = a & 0xFF, a >> 8 & 0xFF
    why = ""
    if step in (codes.OTA_REFUSED, codes.OTA_IMAGE_BAD) or (step == codes.OTA_WRONG_SLOT and d):
        why = codes.result_name(d)
    elif step == codes.OTA_WRONG_SLOT:
        why = "set_boot back to the validated slot, reset"
    elif step == codes.OTA_RESUMED:
        why = "%d %% downloaded" % d
    elif step == codes.OTA_CHUNK_BAD:
        why = "chunk %d fetched again" % d
    elif step in (codes.OTA_SELFTEST_FAILED, codes.OTA_TAMPER) and d < len(_OTA_CHECKS):
        why = "check %s" % _OTA_CHECKS[d]
    elif step == codes.OTA_ROLLED_BACK:
        why = "%d trial(s) not confirmed" % d if d else "the power went: not counted against the image"
    elif step == codes.OTA_RUNNING and d < len(_OTA_STATES):
        why = "update state " + _OTA_STATES[d]
    name = _OTA_STEPS[step] if step < len(_OTA_STEPS) else "step-%d" % step
    return "version %d %s (%d)%s" % (a >> 16, name, d, ": " + why if why else "")
