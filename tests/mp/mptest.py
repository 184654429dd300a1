# Helpers for MicroPython-side tests. The pytest bridge reads @heap and
# @timeout from the source; here they only need to leave the function as is.


def heap(size):
    def deco(fn):
        return fn
    return deco


def timeout(seconds):
    def deco(fn):
        return fn
    return deco


def raises(exc, fn, *args, **kw):
    """Assert that fn(*args) raises exc; returns the exception."""
    try:
        fn(*args, **kw)
    except exc as e:
        return e
    raise AssertionError("%s not raised" % exc.__name__)


_n = [0]


def fresh_dir(tag="t"):
    """A new, empty state directory under /tmp for one test."""
    import os
    from binascii import hexlify
    _n[0] += 1
    path = "/tmp/mpt-%s-%s-%d" % (tag, hexlify(os.urandom(6)).decode(), _n[0])
    try:
        os.mkdir(path)
    except OSError:
        for name in os.listdir(path):
            os.remove(path + "/" + name)
    return path
