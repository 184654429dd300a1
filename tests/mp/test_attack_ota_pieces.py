# Attacks on the image pieces (docs/OTA.md §4, SECURITY.md U23): the
# customer cannot publish on m/<id>/o, but can ask the head-end (on
# m/<id>/or, with the meter's credentials) for any block at any time, so
# genuine pieces reach the meter out of order, twice, short, for other
# blocks and mid-block. None may corrupt the slot or multiply flash writes.
import json

from otakit import Rig, Reset, image, manifest_doc, signed, still_meters, credit
import codes
from ota import updater as up

TIMEOUT = 120


def _answer(rig, img, r, k):
    """The head-end's pieces of request r, k bytes each (the customer's own
    requests: any offset, any size), and stale copies of the block before."""
    out = []
    o, n = r["o"], r["n"]
    for p in range(o, o + n, k):
        out.append(b"D" + p.to_bytes(4, "big") + img[p:min(p + k, o + n)])
    out = out[1::2] + out[0::2] + out[:2]               # out of order, then duplicates
    if o >= 4096:
        out.insert(0, b"D" + (o - 4096).to_bytes(4, "big") + img[o - 4096:o - 2048])   # the block before
    out.append(b"D" + (o + 100).to_bytes(4, "big") + img[o + 100:o + 900])            # mid-block
    out.append(b"D" + (o + n).to_bytes(4, "big") + img[o + n:o + n + 2048])           # the next block
    return out


def test_pieces_out_of_order_duplicated_short_and_foreign_never_corrupt_or_amplify():
    rig = Rig()
    credit(rig)
    img = image(seed=b"v2")
    rig.offer(signed(manifest_doc(img, v=2)))
    seen = 0
    try:
        for i in range(4000):
            rig.rt.ms += 100
            rig.hw.clock.advance(100)
            rig.m.poll()
            rig.link.step()
            for t, p, _, _ in rig.b.published[seen:]:
                if t == rig.link.t_ota_req:
                    for piece in _answer(rig, img, json.loads(p), (1000, 300, 2048)[i % 3]):
                        rig.offer(piece)
            seen = len(rig.b.published)
        raise AssertionError("never switched: %r" % rig.ota_events())
    except Reset:
        pass
    blocks = (len(img) + 4095) // 4096
    assert not rig.ota_events(codes.OTA_CHUNK_BAD), rig.ota_events()
    assert rig.flash.block_writes == blocks and rig.flash.erases == blocks, (rig.flash.block_writes, blocks)
    rig.boot()
    assert rig.ota.updater.state == up.TRIAL
    rig.serve(img, steps=40)
    assert rig.running() == "ota_1" and rig.m.fw_floor == 2 and still_meters(rig)
