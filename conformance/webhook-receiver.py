#!/usr/bin/env python3
"""A webhook receiver for the conformance lab: appends each POST (its
X-Acmehub-Signature header and body) as one JSON line to OUT, answers 200.

usage: webhook-receiver.py PORT OUT
"""
import json
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer

port, out = int(sys.argv[1]), sys.argv[2]


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        with open(out, "a") as f:
            f.write(json.dumps({"signature": self.headers.get("X-Acmehub-Signature", ""),
                                "body": body.decode()}) + "\n")
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


HTTPServer(("127.0.0.1", port), Handler).serve_forever()
