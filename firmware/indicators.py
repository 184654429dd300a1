# LED and buzzer: the credit level as the customer sees and hears it.
# level 0 fine (LED off), 1 low (LED on), 2 very low (LED on, buzzer on),
# 3 exhausted (LED on, buzzer on).


class Indicators:
    def __init__(self, led=None, buzzer=None):
        self._led = led
        self._buzzer = buzzer
        self.level = -1

    def show(self, level):
        if level == self.level:
            return
        self.level = level
        if self._led is not None:
            self._led.value(1 if level else 0)
        if self._buzzer is not None:
            self._buzzer.value(1 if level >= 2 else 0)
