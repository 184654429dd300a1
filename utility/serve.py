"""Serve a WSGI app (the console, the test-side provider) with waitress on a
loopback port in a background thread: `make sim` and the tests.

    with Served(app) as s:          # port 0: a free one
        print(s.url)                # http://127.0.0.1:PORT
"""

import threading

from waitress import create_server


class Served:
    def __init__(self, app, host="127.0.0.1", port=0, threads=8):
        self.app = app
        self.server = create_server(app, host=host, port=port, threads=threads)
        self.url = f"http://{host}:{self.server.effective_port}"
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, name=f"waitress:{self.url}", daemon=True)
        self.thread.start()

    def _loop(self):
        # waitress's own run() loops until its sockets are gone; this loop
        # looks at a stop flag between polls and closes the sockets itself,
        # so no poll ever runs on a socket another thread closed
        while not self._stop.is_set():
            self.server.asyncore.loop(timeout=0.05, map=self.server._map, count=1)
        self.server.asyncore.close_all(self.server._map)

    def close(self):
        self._stop.set()
        self.thread.join(5)
        self.server.task_dispatcher.shutdown()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
