#!/usr/bin/env python3
"""A TCP relay for conformance/ha: 127.0.0.1:PORT to HOST:PORT, byte for
byte. Stopping it cuts every connection through it, as a network partition
between a replica and its database would.

    tcp-proxy.py LISTEN_PORT HOST:PORT
"""

import socket
import sys
import threading

listen_port = int(sys.argv[1])
target_host, target_port = sys.argv[2].rsplit(":", 1)


def pipe(src, dst):
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def serve(client):
    try:
        upstream = socket.create_connection((target_host, int(target_port)))
    except OSError:
        client.close()
        return
    threading.Thread(target=pipe, args=(client, upstream), daemon=True).start()
    threading.Thread(target=pipe, args=(upstream, client), daemon=True).start()


listener = socket.socket()
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.bind(("127.0.0.1", listen_port))
listener.listen(64)
while True:
    conn, _ = listener.accept()
    serve(conn)
