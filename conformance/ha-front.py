#!/usr/bin/env python3
"""A tiny round-robin front for conformance/ha: HTTPS on 127.0.0.1:PORT,
every request to the next replica in turn, as a load balancer without
stickiness would.

    ha-front.py PORT CERT KEY REPLICA_ROOT HOST:PORT [HOST:PORT ...]

A replica that refuses the connection is skipped for the next one (the
request never reached it, so sending it elsewhere is safe). A replica that
dies after the request was sent answers nothing: the client gets 502 and a
problem document, and retries as it would behind any load balancer. Each
forwarded request is logged to stdout as "METHOD PATH -> replica STATUS".
"""

import http.client
import http.server
import itertools
import json
import socket
import ssl
import sys
import threading

port, cert, key, replica_root = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
replicas = sys.argv[5:]
turn = itertools.count()
turn_lock = threading.Lock()
log_lock = threading.Lock()
upstream_tls = ssl.create_default_context(cafile=replica_root)
# Hop-by-hop headers (RFC 9110 §7.6.1) are not forwarded.
HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer", "upgrade"}


def next_replicas():
    with turn_lock:
        first = next(turn) % len(replicas)
    return replicas[first:] + replicas[:first]


class Front(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def forward(self):
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else None
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP}
        for replica in next_replicas():
            host, rport = replica.rsplit(":", 1)
            try:
                sock = upstream_tls.wrap_socket(
                    socket.create_connection((host, int(rport)), timeout=60),
                    # The replicas' certificate names the public host.
                    server_hostname="localhost",
                )
            except OSError:
                continue
            conn = http.client.HTTPConnection(host, int(rport), timeout=60)
            conn.sock = sock
            try:
                conn.request(self.command, self.path, body=body, headers=headers)
                reply = conn.getresponse()
                data = reply.read()
            except (OSError, http.client.HTTPException) as e:
                conn.close()
                self.log(replica, f"lost ({e.__class__.__name__})")
                return self.problem(502, f"the replica {replica} failed while answering")
            conn.close()
            self.send_response(reply.status)
            for k, v in reply.getheaders():
                if k.lower() not in HOP and k.lower() != "content-length":
                    self.send_header(k, v)
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            self.log(replica, reply.status)
            return None
        self.log("-", 503)
        return self.problem(503, "no replica is reachable")

    def log(self, replica, status):
        with log_lock:
            print(f"{self.command} {self.path} -> {replica} {status}", flush=True)

    def problem(self, status, detail):
        data = json.dumps({"type": "urn:ietf:params:acme:error:serverInternal", "detail": detail}).encode()
        self.send_response(status)
        self.send_header("content-type", "application/problem+json")
        self.send_header("retry-after", "1")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_HEAD = do_PUT = do_PATCH = do_DELETE = forward


server = http.server.ThreadingHTTPServer(("127.0.0.1", int(port)), Front)
server.daemon_threads = True
tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
tls.load_cert_chain(cert, key)
server.socket = tls.wrap_socket(server.socket, server_side=True)
server.serve_forever()
