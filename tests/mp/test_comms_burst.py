# A burst of queued commands at reconnect (a persistent session delivers
# them all at once) must not lose any: a message that finds the inbox full is
# left unacknowledged, so the broker delivers it again.
import codes
from commskit import FakeClient, make_link, command


class QoS1Client(FakeClient):
    """Acknowledges a message only once the callback returned, and delivers
    the whole queued session during subscribe, as Mosquitto does."""

    def subscribe(self, topic, qos=0):
        super().subscribe(topic, qos)
        self._deliver(len(self.b.pending))

    def check_msg(self):
        self._alive()
        self._deliver(1)

    def _deliver(self, n):
        for _ in range(n):
            if not self.b.pending:
                return
            t, m = self.b.pending[0]
            self.cb(t, m)            # raises: not acknowledged, stays queued
            self.b.pending.pop(0)


def test_twelve_queued_topups_all_applied_once():
    link, m, hw, b, rt = make_link()

    def factory(cid, host, port, ka, user=None, pw=None):
        return QoS1Client(b, cid, host, port, ka, user, pw)
    link._factory = factory
    for i in range(12):
        b.pending.append((link.t_cmd, command(link, i + 1, "topup", a=1, s=i + 1, v=1000)))
    for _ in range(40):
        link.step()
        rt.ms += 10_000               # past any backoff
    assert not b.pending, "every queued command must be taken in the end"
    assert m.balance == 12_000
    assert len(b.topics(b"/a")) >= 12, "every command gets its ack, if only after the reconnect"
    assert link.rejected > 0, "the burst must have overflowed the inbox at least once"
    assert len([e for e in m.log.recent(64) if e[2] == codes.EV_CREDIT]) == 12
