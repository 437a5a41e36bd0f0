#!/usr/bin/env python3
"""The abuse suite's driver: every case of the abuse review, sent to a
running hub as an attacker would send it, with what the hub answered.

Run by conformance/abuse, which starts the hub and the servers the cases
need and passes their addresses. Prints one line per case (PASS/FAIL name:
what the hub answered), then "N passed, M failed"; exits non-zero when a
case failed. Loopback only; every loop is bounded in count and time.
Needs the `cryptography` package (conformance/.venv has it, for certbot).
"""

import argparse
import base64
import hashlib
import hmac
import http.client
import json
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature


def b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64u_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Failed(Exception):
    """A case's expectation did not hold."""


def expect(condition, what):
    if not condition:
        raise Failed(what)


# ---------------------------------------------------------------- HTTPS


class Hub:
    """The hub under test: its HTTPS base URL, root and admin token."""

    def __init__(self, url, ca_file, token):
        parsed = urllib.parse.urlparse(url)
        self.url, self.host, self.port = url, parsed.hostname, parsed.port
        self.ca_file = ca_file
        self.ctx = ssl.create_default_context(cafile=ca_file)
        self.token = token

    def request(self, method, path, body=None, headers=None, timeout=15):
        conn = http.client.HTTPSConnection(self.host, self.port, context=self.ctx, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            r = conn.getresponse()
            data = r.read()
            headers = {}
            for k, v in r.getheaders():
                k = k.lower()
                headers[k] = f"{headers[k]}, {v}" if k in headers else v
            return r.status, headers, data
        finally:
            conn.close()

    def api(self, method, path, obj=None, token=None):
        headers = {"authorization": f"Bearer {token or self.token}"}
        body = None
        if obj is not None:
            body = json.dumps(obj).encode()
            headers["content-type"] = "application/json"
        status, _, data = self.request(method, path, body, headers)
        try:
            return status, json.loads(data or b"null")
        except ValueError:
            return status, data.decode(errors="replace")

    def tls_socket(self, timeout=10):
        raw = socket.create_connection((self.host, self.port), timeout=timeout)
        return self.ctx.wrap_socket(raw, server_hostname=self.host)


def read_http_response(sock, limit=1 << 20):
    """Reads one HTTP/1.1 response (status, headers, body) from a socket."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise Failed(f"the connection closed before a whole response head ({len(data)} bytes)")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode(errors="replace").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    if "content-length" in headers:
        want = int(headers["content-length"])
        while len(body) < want and len(body) < limit:
            chunk = sock.recv(65536)
            if not chunk:
                raise Failed(f"the connection closed {want - len(body)} bytes before the body's end")
            body += chunk
    elif headers.get("transfer-encoding", "").lower() == "chunked":
        while not body.endswith(b"0\r\n\r\n") and len(body) < limit:
            chunk = sock.recv(65536)
            if not chunk:
                raise Failed("the connection closed inside a chunked body")
            body += chunk
        body = dechunk(body)
    return status, headers, body


def dechunk(data):
    out = b""
    while data:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out += data[:size]
        data = data[size + 2 :]
    return out


# ---------------------------------------------------------------- ACME


class Acme:
    """A raw ACME client (ES256), able to break one rule at a time."""

    def __init__(self, hub, instance="default"):
        self.hub = hub
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.kid = None
        status, _, body = hub.request("GET", f"/acme/{instance}/directory")
        expect(status == 200, f"directory answered {status}")
        self.directory = json.loads(body)

    def jwk(self):
        n = self.key.public_key().public_numbers()
        return {"kty": "EC", "crv": "P-256", "x": b64u(n.x.to_bytes(32, "big")), "y": b64u(n.y.to_bytes(32, "big"))}

    def thumbprint(self):
        j = self.jwk()
        canonical = json.dumps({"crv": j["crv"], "kty": j["kty"], "x": j["x"], "y": j["y"]}, separators=(",", ":"))
        return b64u(hashlib.sha256(canonical.encode()).digest())

    def nonce(self):
        status, headers, _ = self.hub.request("HEAD", self.path(self.directory["newNonce"]))
        expect(status == 200, f"newNonce answered {status}")
        return headers["replay-nonce"]

    def path(self, url):
        parsed = urllib.parse.urlparse(url)
        return parsed.path + (f"?{parsed.query}" if parsed.query else "")

    def sign(self, protected, payload):
        p = b64u(json.dumps(protected).encode())
        body = b64u(payload.encode()) if payload is not None else ""
        der = self.key.sign(f"{p}.{body}".encode(), ec.ECDSA(hashes.SHA256()))
        r, s = decode_dss_signature(der)
        return {"protected": p, "payload": body, "signature": b64u(r.to_bytes(32, "big") + s.to_bytes(32, "big"))}

    def body(self, url, payload, signed_url=None):
        protected = {"alg": "ES256", "nonce": self.nonce(), "url": signed_url or url}
        if self.kid:
            protected["kid"] = self.kid
        else:
            protected["jwk"] = self.jwk()
        return json.dumps(self.sign(protected, payload)).encode()

    def post(self, url, payload, signed_url=None):
        """POSTs a JWS; payload None is POST-as-GET. Returns (status, headers, json)."""
        status, headers, data = self.hub.request(
            "POST", self.path(url), self.body(url, payload if payload is not None else "", signed_url),
            {"content-type": "application/jose+json"},
        )
        try:
            parsed = json.loads(data or b"null")
        except ValueError:
            parsed = data.decode(errors="replace")
        return status, headers, parsed

    def register(self, eab=None):
        payload = {"termsOfServiceAgreed": True, "contact": ["mailto:abuse@example.test"]}
        url = self.directory["newAccount"]
        if eab:
            kid, key = eab
            protected = b64u(json.dumps({"alg": "HS256", "kid": kid, "url": url}).encode())
            inner = b64u(json.dumps(self.jwk()).encode())
            mac = hmac.new(b64u_decode(key), f"{protected}.{inner}".encode(), hashlib.sha256).digest()
            payload["externalAccountBinding"] = {"protected": protected, "payload": inner, "signature": b64u(mac)}
        status, headers, body = self.post(url, json.dumps(payload))
        expect(status in (200, 201), f"newAccount answered {status}: {body}")
        self.kid = headers["location"]
        return body

    def new_order(self, names, **extra):
        payload = {"identifiers": [{"type": "dns", "value": n} for n in names], **extra}
        return self.post(self.directory["newOrder"], json.dumps(payload))


def problem(body):
    return body.get("type", "").rsplit(":", 1)[-1] if isinstance(body, dict) else ""


# ---------------------------------------------------------------- DNS


def dns_query(name, qtype=16, edns=None, qid=0x4242):
    labels = b"".join(bytes([len(p)]) + p.encode() for p in name.rstrip(".").split("."))
    header = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 1 if edns is not None else 0)
    question = labels + b"\0" + struct.pack(">HH", qtype, 1)
    opt = b"\0" + struct.pack(">HHIH", 41, edns, 0, 0) if edns is not None else b""
    return header + question + opt


def dns_flags(answer):
    _, flags, _, ancount, _, _ = struct.unpack(">HHHHHH", answer[:12])
    return {"tc": bool(flags & 0x0200), "ra": bool(flags & 0x0080), "rcode": flags & 0xF, "answers": ancount}


def udp_ask(addr, query, source="127.0.0.1", timeout=2.0):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((source, 0))
    s.settimeout(timeout)
    try:
        s.sendto(query, addr)
        return s.recv(65535)
    except socket.timeout:
        return None
    finally:
        s.close()


def tcp_ask(addr, query, timeout=5.0):
    s = socket.create_connection(addr, timeout=timeout)
    try:
        s.sendall(struct.pack(">H", len(query)) + query)
        size = struct.unpack(">H", recv_exact(s, 2))[0]
        return recv_exact(s, size)
    finally:
        s.close()


def recv_exact(s, n):
    data = b""
    while len(data) < n:
        chunk = s.recv(n - len(data))
        if not chunk:
            raise Failed(f"TCP closed after {len(data)} of {n} bytes")
        data += chunk
    return data


def closed_within(sock, seconds):
    """Seconds until the peer closed `sock` (reading and dropping data), or None."""
    start = time.monotonic()
    sock.settimeout(0.5)
    while time.monotonic() - start < seconds:
        try:
            if not sock.recv(65536):
                return time.monotonic() - start
        except socket.timeout:
            continue
        except (ConnectionResetError, ssl.SSLError, OSError):
            return time.monotonic() - start
    return None


# ---------------------------------------------------------------- cases


CASES = []


def case(name):
    def register(fn):
        CASES.append((name, fn))
        return fn

    return register


@case("not-after-in-the-past")
def _(ctx):
    acme = Acme(ctx.hub)
    acme.register()
    status, _, body = acme.new_order(["past.abuse.test"], notAfter="2001-01-01T00:00:00Z")
    expect(status == 400 and problem(body) == "malformed", f"{status} {body}")
    expect("in the past" in body["detail"], body["detail"])
    return f"{status} {problem(body)}: {body['detail']}"


@case("jws-url-covers-the-query")
def _(ctx):
    acme = Acme(ctx.hub)
    acme.register()
    for i in range(101):
        status, _, body = acme.new_order([f"q{i}.abuse.test"])
        expect(status == 201, f"newOrder {i}: {status} {body}")
    orders = acme.kid + "/orders"
    status, headers, body = acme.post(orders, None)
    expect(status == 200 and len(body["orders"]) == 100, f"order list: {status}")
    nxt = [l.split(">")[0].lstrip(" <") for l in headers.get("link", "").split(",") if 'rel="next"' in l]
    expect(nxt, f"no next link: {headers.get('link')}")
    status, _, body = acme.post(nxt[0], None)
    expect(status == 200 and len(body["orders"]) == 1, f"next link answered {status}: {body}")
    status, _, body = acme.post(nxt[0], None, signed_url=orders)
    expect(status == 403 and problem(body) == "unauthorized", f"mismatched url answered {status}")
    return f"next link 200; signed without ?page=1 -> {status} {problem(body)}"


@case("refusals-are-audited")
def _(ctx):
    name = f"audit{int(time.time() * 1000) % 100000}"
    status, _ = ctx.hub.api("POST", "/api/v1/instances", {"name": name, "external_account_required": True})
    expect(status == 201, f"creating instance {name}: {status}")
    status, key = ctx.hub.api("POST", f"/api/v1/instances/{name}/access-keys",
                              {"name": "fleet", "allowed_identifiers": ["*.corp.test"], "validation": "pre-authorized"})
    expect(status == 201, f"creating access key: {status} {key}")
    acme = Acme(ctx.hub, name)
    acme.register(eab=(key["kid"], key["hmac_key"]))
    for i in range(30):
        status, _, body = acme.new_order([f"n{i}.bank.example"])
        expect(status == 400 and problem(body) == "rejectedIdentifier", f"{status} {body}")
    status, events = ctx.hub.api("GET", f"/api/v1/events?instance={name}&action=order.refuse&limit=100")
    expect(status == 200, f"events: {status}")
    items = events["items"]
    expect(items and items[0]["detail"]["reason"] == "rejectedIdentifier", f"{items[:1]}")
    expect(items[0]["detail"]["client"] == "127.0.0.1", f"{items[0]}")
    expect(len(items) <= 20, f"{len(items)} events for 30 refusals: the flood was not capped")
    return f"30 refusals -> {len(items)} audit events, e.g. {json.dumps(items[0]['detail'])[:160]}"


def oversized_h1(ctx, path, content_type, chunked, extra):
    """Sends 2 MiB to `path` over HTTP/1.1, then reads; returns the response."""
    size = 2 << 20
    sock = ctx.hub.tls_socket(timeout=20)
    head = f"POST {path} HTTP/1.1\r\nHost: {ctx.hub.host}:{ctx.hub.port}\r\ncontent-type: {content_type}\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in extra.items())
    head += "transfer-encoding: chunked\r\n\r\n" if chunked else f"content-length: {size}\r\n\r\n"
    # One thread only: an SSL socket must not be read and written from two
    # threads at once. The client writes its whole request, then reads, as
    # most clients (Python's among them) do: the hub must read the rest of
    # the body for the answer to arrive.
    try:
        sock.sendall(head.encode())
        piece = b"x" * 65536
        for _ in range(size // len(piece)):
            sock.sendall(b"10000\r\n" + piece + b"\r\n" if chunked else piece)
        if chunked:
            sock.sendall(b"0\r\n\r\n")
    except OSError:
        pass  # the answer, if any, is still there to read
    try:
        status, headers, body = read_http_response(sock)
    finally:
        sock.close()
    return status, headers, body


# Each route with the credentials its client would send (an admin API
# client has its token): the body's size is what is refused, not the caller.
OVERSIZED_ROUTES = [
    ("acme newAccount", "/acme/default/new-account", "application/jose+json", "problem", "none"),
    ("admin API", "/api/v1/instances", "application/json", "json", "bearer"),
    ("console sign-in", "/ui/login", "application/x-www-form-urlencoded", "any", "none"),
    ("acme-dns update", "/acme-dns/default/update", "application/json", "json", "acme-dns"),
    ("httpreq present", "/httpreq/default/present", "application/json", "json", "bearer"),
]


def credentials(ctx, kind):
    if kind == "bearer":
        return {"authorization": f"Bearer {ctx.hub.token}"}
    if kind == "acme-dns":
        return {"x-api-user": "someone", "x-api-key": "something"}
    return {}


@case("oversized-bodies-get-a-whole-413")
def _(ctx):
    seen = []
    for label, path, content_type, kind, auth in OVERSIZED_ROUTES:
        extra = credentials(ctx, auth)
        for chunked in (False, True):
            status, headers, body = oversized_h1(ctx, path, content_type, chunked, extra)
            how = "chunked" if chunked else "content-length"
            expect(status == 413, f"{label} ({how}): {status}")
            if kind == "problem":
                expect(headers.get("content-type", "").startswith("application/problem+json"), f"{label}: {headers}")
            if kind in ("problem", "json"):
                json.loads(body)
            seen.append(f"{label}/{how}")
        with tempfile.NamedTemporaryFile() as big:
            big.write(b"x" * (2 << 20))
            big.flush()
            out = subprocess.run(
                ["curl", "-sS", "--http2", "--cacert", ctx.hub.ca_file, "-o", "/dev/null", "-w", "%{http_code} %{http_version}",
                 "-H", f"content-type: {content_type}", *[a for k, v in extra.items() for a in ("-H", f"{k}: {v}")],
                 "--data-binary", f"@{big.name}", ctx.hub.url + path],
                capture_output=True, text=True, timeout=60,
            )
        expect(out.returncode == 0 and out.stdout == "413 2", f"{label} over HTTP/2: curl {out.returncode} {out.stdout} {out.stderr}")
        seen.append(f"{label}/h2")
    return "413 with a whole body: " + ", ".join(seen)


@case("scoped-token-cannot-revive-an-access-key")
def _(ctx):
    name = f"keys{int(time.time() * 1000) % 100000}"
    status, _ = ctx.hub.api("POST", "/api/v1/instances", {"name": name, "external_account_required": True})
    expect(status == 201, f"instance: {status}")
    status, key = ctx.hub.api("POST", f"/api/v1/instances/{name}/access-keys",
                              {"name": "k", "allowed_identifiers": ["*.corp.test"], "validation": "pre-authorized",
                               "expires_at": "2030-01-01T00:00:00Z"})
    expect(status == 201, f"key: {status}")
    status, tok = ctx.hub.api("POST", "/api/v1/tokens", {"name": f"w-{name}", "scope": f"instance:{name}", "role": "write"})
    expect(status == 201, f"token: {status} {tok}")
    scoped = tok["token"]
    status, _ = ctx.hub.api("PATCH", f"/api/v1/instances/{name}/access-keys/k", {"status": "disabled"})
    expect(status == 200, f"admin disabling: {status}")
    answers = []
    for change in ({"status": "active", "expires_at": "2099-12-31T00:00:00Z"}, {"status": "active"},
                   {"expires_at": "2099-12-31T00:00:00Z"}, {"expires_at": None},
                   {"allow_wildcard": True}, {"allowed_identifiers": ["*.corp.test", "*.bank.example"]}):
        status, body = ctx.hub.api("PATCH", f"/api/v1/instances/{name}/access-keys/k", change, token=scoped)
        expect(status == 403, f"scoped {change}: {status} {body}")
        answers.append(status)
    status, keys = ctx.hub.api("GET", f"/api/v1/instances/{name}/access-keys")
    k = [k for k in (keys if isinstance(keys, list) else keys["items"]) if k["name"] == "k"][0]
    expect(k["status"] == "disabled", f"the key changed: {k}")
    status, _ = ctx.hub.api("PATCH", f"/api/v1/instances/{name}/access-keys/k", {"status": "disabled"}, token=scoped)
    expect(status == 200, f"narrowing with the scoped token: {status}")
    return f"6 widening changes by an instance token -> {answers}; the key stays disabled"


@case("technical-zone-is-no-amplifier")
def _(ctx):
    addr = ctx.zone_addr
    status, reg = ctx.hub.api("POST", "/acme-dns/default/register")
    expect(status in (200, 201), f"acme-dns register: {status} {reg}")
    headers = {"X-Api-User": reg["username"], "X-Api-Key": reg["password"], "content-type": "application/json"}
    accepted, refusal = 0, None
    for i in range(300):
        value = b64u(hashlib.sha256(str(i).encode()).digest())
        status, _, body = ctx.hub.request("POST", "/acme-dns/default/update",
                                          json.dumps({"subdomain": reg["subdomain"], "txt": value}).encode(), headers)
        if status == 200:
            accepted += 1
            continue
        refusal = (status, body.decode(errors="replace"))
        break
    expect(refusal and 400 <= refusal[0] < 500, f"300 updates on one label: {accepted} accepted, refusal {refusal}")
    fqdn = reg["fulldomain"]
    query = dns_query(fqdn, edns=65535)
    time.sleep(1.5)  # other replicas' writes are picked up within a second
    udp = udp_ask(addr, query)
    expect(udp is not None, "no UDP answer")
    expect(len(udp) <= 1232, f"UDP answer of {len(udp)} bytes to a {len(query)}-byte query")
    tcp = tcp_ask(addr, dns_query(fqdn, edns=65535))
    expect(dns_flags(tcp)["answers"] == accepted, f"TCP answers {dns_flags(tcp)} for {accepted} values")
    plain = udp_ask(addr, dns_query(fqdn))
    expect(plain is not None and len(plain) <= 512, f"no-EDNS UDP answer {len(plain or b'')} bytes")
    outside = dns_flags(udp_ask(addr, dns_query("example.com", qid=7)))
    expect(outside["rcode"] == 5 and not outside["ra"], f"out-of-zone query: {outside}")
    return (f"{accepted} values on a label, then {refusal[0]} '{refusal[1][:80]}'; UDP {len(udp)} bytes "
            f"(TC={dns_flags(udp)['tc']}) to a {len(query)}-byte query (x{len(udp) / len(query):.1f}); "
            f"TCP {len(tcp)} bytes; outside the zone REFUSED, RA clear")


@case("technical-zone-rate-limits-and-tcp-bounds")
def _(ctx):
    addr = ctx.zone_addr
    query = dns_query(ctx.zone_name, qtype=6)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.settimeout(0.2)
    sent, answered = 400, 0
    for _ in range(sent):
        s.sendto(query, addr)
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        try:
            s.recv(4096)
            answered += 1
        except socket.timeout:
            break
    s.close()
    full = sum(1 for _ in range(1))
    expect(answered < sent, f"{answered} of {sent} flooded queries answered: no rate limit")
    other = udp_ask(addr, query, source="127.0.1.1")
    expect(other is not None, "another subnet got no answer during the flood")
    idle = socket.create_connection(addr, timeout=5)
    closed = closed_within(idle, ctx.dns_idle + 5)
    idle.close()
    expect(closed is not None, f"an idle DNS TCP connection stayed open over {ctx.dns_idle + 5}s")
    claim = socket.create_connection(addr, timeout=5)
    claim.sendall(struct.pack(">H", 65535) + b"\0" * 12)
    claimed = closed_within(claim, ctx.dns_idle + 5)
    claim.close()
    expect(claimed is not None, "a connection claiming 65,535 bytes was kept open")
    del full
    return (f"UDP flood: {answered} of {sent} answered, another /24 answered; idle TCP closed after "
            f"{closed:.1f}s; a 65,535-byte length prefix closed after {claimed:.1f}s")


@case("slow-clients-are-cut-off")
def _(ctx):
    socks = []
    for _ in range(30):
        s = ctx.hub.tls_socket()
        s.sendall(f"GET /healthz HTTP/1.1\r\nHost: {ctx.hub.host}\r\n".encode())
        socks.append(s)
    start = time.monotonic()
    open_socks = list(socks)
    line = 0
    while open_socks and time.monotonic() - start < ctx.header_timeout + 10:
        time.sleep(1)
        line += 1
        still = []
        for s in open_socks:
            try:
                s.sendall(f"x-slow-{line}: {line}\r\n".encode())
                still.append(s)
            except OSError:
                s.close()
        open_socks = still
        for s in list(open_socks):
            s.settimeout(0.01)
            try:
                if s.recv(4096) == b"":
                    open_socks.remove(s)
                    s.close()
            except (socket.timeout, ssl.SSLWantReadError):
                pass
            except OSError:
                open_socks.remove(s)
                s.close()
    took = time.monotonic() - start
    for s in open_socks:
        s.close()
    expect(not open_socks, f"{len(open_socks)} of 30 slow-header connections still open after {took:.0f}s")
    status, _, _ = ctx.hub.request("GET", "/healthz")
    expect(status == 200, f"a normal client after the slow ones: {status}")
    return f"30 connections sending a header line a second: all closed within {took:.1f}s; others served"


@case("connection-cap")
def _(ctx):
    held, refused = [], 0
    for _ in range(ctx.max_connections + 20):
        try:
            s = ctx.hub.tls_socket(timeout=5)
            s.sendall(b"")
            held.append(s)
        except (OSError, ssl.SSLError):
            refused += 1
    time.sleep(0.5)
    alive = 0
    for s in held:
        s.settimeout(0.05)
        try:
            if s.recv(1) == b"":
                refused += 1
                continue
        except (socket.timeout, ssl.SSLWantReadError):
            pass
        except OSError:
            refused += 1
            continue
        alive += 1
    expect(refused >= 20 - 2, f"{ctx.max_connections + 20} connections: only {refused} refused")
    expect(alive <= ctx.max_connections, f"{alive} connections held over a cap of {ctx.max_connections}")
    for s in held[:10]:
        s.close()
    time.sleep(0.5)
    status, _, _ = ctx.hub.request("GET", "/healthz")
    for s in held[10:]:
        s.close()
    expect(status == 200, f"under the cap again, a client got {status}")
    return f"cap {ctx.max_connections}: {alive} held, {refused} refused; after some closed a client was served"


@case("validation-refuses-metadata-and-odd-ports")
def _(ctx):
    acme = Acme(ctx.hub)
    acme.register()
    results = []
    for target, name in (("http://169.254.169.254/latest/meta-data/", "meta.abuse.test"),
                         ("http://[fe80::1]/", "ll6.abuse.test"),
                         ("http://127.0.0.1:8443/", "port.abuse.test")):
        ctx.redirects[name] = target
        status, _, order = acme.new_order([name])
        expect(status == 201, f"newOrder {name}: {status} {order}")
        _, _, authz = acme.post(order["authorizations"][0], None)
        chall = [c for c in authz["challenges"] if c["type"] == "http-01"][0]
        ctx.tokens[chall["token"]] = f"{chall['token']}.{acme.thumbprint()}"
        acme.post(chall["url"], "{}")
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            _, _, chall_now = acme.post(chall["url"], None)
            if chall_now["status"] in ("valid", "invalid"):
                break
            time.sleep(0.3)
        expect(chall_now["status"] == "invalid", f"{name}: challenge {chall_now['status']}")
        detail = chall_now["error"]["detail"]
        expect("refused by policy" in detail, f"{name}: {detail}")
        expect("200" not in detail and "meta-data" not in detail.split("refused")[0][-1:], detail)
        results.append(detail)
    return " | ".join(results)


@case("console-sign-in-says-nothing-about-users")
def _(ctx):
    status, user = ctx.hub.api("POST", "/api/v1/users", {"name": "realuser", "password": "a long enough password 123", "scope": "admin", "role": "write"})
    expect(status == 201, f"user: {status} {user}")

    def attempt(name, password, source_header=None):
        conn = http.client.HTTPSConnection(ctx.hub.host, ctx.hub.port, context=ctx.hub.ctx, timeout=15)
        conn.request("GET", "/ui/login")
        r = conn.getresponse()
        page = r.read().decode()
        cookie = r.getheader("set-cookie").split(";")[0]
        csrf = page.split('name="csrf" value="')[1].split('"')[0]
        form = urllib.parse.urlencode({"csrf": csrf, "user": name, "password": password})
        started = time.monotonic()
        conn.request("POST", "/ui/login", form, {"content-type": "application/x-www-form-urlencoded", "cookie": cookie})
        r = conn.getresponse()
        body = r.read().decode()
        took = time.monotonic() - started
        conn.close()
        text = body.split('class="error"')[1].split(">", 1)[1].split("<")[0] if 'class="error"' in body else body[-200:]
        return r.status, text.strip(), took

    known = [attempt("realuser", f"wrong {i}") for i in range(12)]
    unknown = [attempt("nosuchuser", f"wrong {i}") for i in range(12)]
    expect({(s, t) for s, t, _ in known} == {(s, t) for s, t, _ in unknown},
           f"known user answers {set((s, t) for s, t, _ in known)} vs unknown {set((s, t) for s, t, _ in unknown)}")
    k = sorted(t for _, _, t in known)[6]
    u = sorted(t for _, _, t in unknown)[6]
    expect(u > k / 4, f"median sign-in time: known {k * 1000:.0f} ms, unknown {u * 1000:.0f} ms")
    return f"known and unknown names both get {known[-1][:2]}; median {k * 1000:.0f} vs {u * 1000:.0f} ms"


# ---------------------------------------------------------------- main


class Ctx:
    pass


def redirect_server(port, ctx):
    """The http-01 responder: answers a token, or redirects names listed in ctx.redirects."""
    import http.server

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            host = (self.headers.get("host") or "").split(":")[0]
            if host in ctx.redirects:
                self.send_response(302)
                self.send_header("location", ctx.redirects[host])
                self.end_headers()
                return
            token = self.path.rsplit("/", 1)[-1]
            body = ctx.tokens.get(token, "").encode()
            self.send_response(200 if body else 404)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--ca-file", required=True)
    ap.add_argument("--token-file", required=True)
    ap.add_argument("--http01-port", type=int, required=True)
    ap.add_argument("--zone", required=True, help="technical zone NAME@ADDR:PORT")
    ap.add_argument("--dns-idle-secs", type=float, default=3)
    ap.add_argument("--header-timeout-secs", type=float, default=3)
    ap.add_argument("--max-connections", type=int, default=64)
    ap.add_argument("cases", nargs="*")
    args = ap.parse_args()
    ctx = Ctx()
    ctx.hub = Hub(args.url, args.ca_file, open(args.token_file).read().strip())
    name, _, addr = args.zone.partition("@")
    host, _, port = addr.rpartition(":")
    ctx.zone_name, ctx.zone_addr = name, (host, int(port))
    ctx.dns_idle, ctx.header_timeout, ctx.max_connections = args.dns_idle_secs, args.header_timeout_secs, args.max_connections
    ctx.redirects, ctx.tokens = {}, {}
    redirect_server(args.http01_port, ctx)
    passed = failed = 0
    for name, fn in CASES:
        if args.cases and name not in args.cases:
            continue
        started = time.monotonic()
        try:
            answer = fn(ctx)
            print(f"PASS {name} ({time.monotonic() - started:.1f}s): {answer}", flush=True)
            passed += 1
        except Exception as e:  # a case that raises for any reason has failed
            print(f"FAIL {name} ({time.monotonic() - started:.1f}s): {type(e).__name__}: {e}", flush=True)
            failed += 1
    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
