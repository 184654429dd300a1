# Runs before main.py on an ESP32 (the port's own boot.py is replaced by
# this one at deploy). The port turns Ctrl-C on for boot.py, and a boot.py
# that ends in an exception makes the port skip main.py and open the REPL.
# So this file masks Ctrl-C before anything else and spends, inside the
# try, a Ctrl-C that came before the mask (on the chip it is pending, and
# the VM raises it at the next jump: the loop). The port turns Ctrl-C on
# again for main.py, whose first statements mask it again (see main.py).


def _mask_ctrl_c():
    import micropython
    micropython.kbd_intr(-1)
    for _ in (0, 1):   # a jump: the VM raises a pending KeyboardInterrupt here
        pass


try:
    _mask_ctrl_c()
except BaseException:  # noqa: BLE001 - a Ctrl-C from before the mask, spent
    try:
        _mask_ctrl_c()
    except BaseException:  # noqa: BLE001
        pass
