# A burst of queued commands at reconnect (a persistent session delivers
# them all at once) must not lose any and must not break the connection: the
# link takes a message off the connection only while its inbox has room, the
# rest waits in the socket.
import codes
from comms.link import MAX_INBOX
from commskit import FakeClient, make_link, command


class CountingClient(FakeClient):
    """Records the room the link offers, and refuses to overfill it."""

    def poll(self, room=8):
        self.b.rooms.append(room)
        super().poll(room)


def test_twelve_queued_topups_all_applied_once_on_one_connection():
    link, m, hw, b, rt = make_link()
    b.rooms = []

    def factory(cid, host, port, ka, user=None, pw=None):
        return CountingClient(b, cid, host, port, ka, user, pw)
    link._factory = factory
    for i in range(12):
        b.pending.append((link.t_cmd, command(link, i + 1, "topup", a=1, s=i + 1, v=1000)))
    for _ in range(10):
        link.step()
        rt.ms += 200
    assert not b.pending, "every queued command must be taken in the end"
    assert m.balance == 12_000
    assert link.failures == 0 and b.connects == 1, "a burst must not break the connection"
    assert max(b.rooms) <= MAX_INBOX and min(b.rooms) >= 0
    assert len(b.topics(b"/a")) == 12
    assert len([e for e in m.log.recent(64) if e[2] == codes.EV_CREDIT]) == 12
