"""K loopback TLS endpoints in one process: `python -m bench.tlsserver DIR K`.

Each endpoint listens on its own 127.0.0.1 port and presents its own leaf and issuing CA (the
files of `corpus.probe_corpus`). One selector thread accepts on all ports; a pool of threads runs
the handshakes (OpenSSL releases the GIL while it computes, so both cores serve). After a
handshake the server waits briefly for the client to close, as a web server would. Prints the
ports as one JSON line when ready; runs until stdin closes or SIGTERM.
"""

from __future__ import annotations

import json
import selectors
import signal
import socket
import ssl
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HANDSHAKE_TIMEOUT = 10.0
WORKERS = 48


def _serve_one(context: ssl.SSLContext, conn: socket.socket) -> None:
    conn.settimeout(HANDSHAKE_TIMEOUT)
    try:
        with context.wrap_socket(conn, server_side=True) as tls:
            tls.recv(1)  # the client's close_notify (or its EOF) ends the connection
    except (OSError, ssl.SSLError):
        pass
    finally:
        conn.close()


def main() -> int:
    directory, k = Path(sys.argv[1]), int(sys.argv[2])
    selector = selectors.DefaultSelector()
    ports = []
    for i in range(k):
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(directory / f"endpoint-{i:03d}-chain.pem", directory / f"endpoint-{i:03d}-key.pem")
        sock = socket.create_server(("127.0.0.1", 0), backlog=64)
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ, context)
        ports.append(sock.getsockname()[1])
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
    print(json.dumps(ports), flush=True)
    with ThreadPoolExecutor(WORKERS) as pool:
        while not stop.is_set():
            for key, _ in selector.select(timeout=0.2):
                listener: socket.socket = key.fileobj  # type: ignore[assignment]
                try:
                    conn, _ = listener.accept()
                except OSError:
                    continue
                conn.setblocking(True)
                pool.submit(_serve_one, key.data, conn)
    return 0


if __name__ == "__main__":
    sys.exit(main())
