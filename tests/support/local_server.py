"""LocalHttpServer: the tests' small HTTP servers (fake identity endpoints, key services, proxies) on 127.0.0.1.

A ThreadingHTTPServer on a free port, serving in a daemon thread from the start; ``close`` stops it in bounded
time. Its listening socket has a timeout: a connection given up by its client between the server's select and
its accept must not block the serving thread in accept for good (a unit run hung once in ``shutdown``, the
serving thread waiting in ``accept``)."""

import threading
from http.server import ThreadingHTTPServer

ACCEPT_TIMEOUT = 1.0


class LocalHttpServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, handler):
        super().__init__(("127.0.0.1", 0), handler)
        self.socket.settimeout(ACCEPT_TIMEOUT)  # accepted connections are blocking still (socket.accept)
        self.port = self.server_address[1]
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
        self._thread.start()

    def close(self):
        self.shutdown()
        self.server_close()
        self._thread.join(5)
