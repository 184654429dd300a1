# The simulated board's RTC across restarts (boards/unix/rtc.py): meter time
# never runs backwards when a simulated meter stops and starts again.
from boards.unix import rtc
from mptest import fresh_dir


def test_a_new_meter_starts_at_the_default():
    assert rtc.resume(fresh_dir("rtc"), 1767225600) == 1767225600


def test_resumes_after_the_saved_time():
    d = fresh_dir("rtc")
    rtc.save(d, 1767300000)
    assert rtc.resume(d, 1767225600) == 1767300001


def test_an_event_logged_after_the_last_save_wins():
    # killed between two saves: the event log saw a later time than the file
    d = fresh_dir("rtc")
    rtc.save(d, 1767300000)
    with open(d + "/events.log", "w") as f:
        f.write("1 1767299000 1 0\n2 1767300500 2 1000\n3 17673")   # a torn last line
    assert rtc.resume(d, 1767225600) == 1767300501


def test_a_damaged_rtc_file_falls_back_to_the_log():
    d = fresh_dir("rtc")
    with open(d + "/rtc", "w") as f:
        f.write("garbage")
    with open(d + "/events.log", "w") as f:
        f.write("1 1767299000 1 0\n")
    assert rtc.resume(d, 1767225600) == 1767299001
