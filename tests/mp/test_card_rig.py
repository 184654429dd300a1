# Shared rig for the card tests (no tests here): a SimClock, a SimSPI bus at
# the board's card SPI clock, the MFRC522 model on CS pin "card_cs", and the
# driver on top.
from boards.unix.clock import SimClock
from boards.unix.spi import SimSPI
from boards.unix.pins import SimPin
from boards.unix.mfrc522_model import MFRC522Model
from boards.unix.mifare_card import ClassicCard
from card.mfrc522 import MFRC522

SPI_HZ = 4_000_000  # boards/unix SPI_BAUD


class Rig:
    def __init__(self, baud=SPI_HZ):
        self.clock = SimClock()
        self.spi = SimSPI(1, baud, self.clock)
        self.cs = SimPin("card_cs", SimPin.OUT, value=1)
        self.model = MFRC522Model(self.clock)
        self.spi.attach(self.cs, self.model)
        self.rc = MFRC522(self.spi, self.cs, clock=self.clock)

    def mark(self):
        return (self.spi.transfers, self.spi.bytes, self.clock.now_us())

    def since(self, m):
        return (self.spi.transfers - m[0], self.spi.bytes - m[1], self.clock.now_us() - m[2])


def card(uid=b"\x11\x22\x33\x44", size=1024):
    return ClassicCard(uid, size)


UID7 = b"\x04\x5a\x6b\x7c\x8d\x9e\x80"
FF = b"\xff" * 6
