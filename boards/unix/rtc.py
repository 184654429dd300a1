# The simulated board's battery-backed RTC: the simulated wall time is kept
# in <state_dir>/rtc across restarts, so meter time never runs backwards
# when a simulated meter is stopped and started again (a real RTC with a
# backup cell keeps counting; this one resumes where it stopped).
#
# The file is written about once a second of real time and at a clean stop;
# after a kill the newest event in the event log may be later than the file,
# so resume() takes whichever is later.
_FILE = "/rtc"


def resume(state_dir, default):
    """The time to start the clock at: default for a new meter, else one
    second after the latest of the saved RTC and the newest logged event."""
    t = 0
    try:
        with open(state_dir + _FILE) as f:
            t = int(f.read())
    except (OSError, ValueError):
        pass
    try:
        with open(state_dir + "/events.log", "rb") as f:
            for line in f:
                parts = line.split()
                if len(parts) == 4:
                    try:
                        t = max(t, int(parts[1]))
                    except ValueError:
                        pass   # a torn line: the event log skips it too
    except OSError:
        pass
    return t + 1 if t else default


def save(state_dir, t):
    p = state_dir + _FILE
    with open(p + ".new", "w") as f:
        f.write("%d" % t)
    import os
    os.rename(p + ".new", p)
