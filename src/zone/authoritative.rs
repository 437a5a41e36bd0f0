//! A small authoritative DNS server over UDP and TCP whose records live in
//! memory. Tests use it as "the internet's DNS"; the hub serves its
//! technical zone from it. It answers only from its own records (it never
//! recurses or forwards) and never dials anyone.
//!
//! Whatever a client sends, it cannot make the server an amplifier or wedge
//! it: UDP answers fit 1232 bytes (less if the client says so, 512 without
//! EDNS) and a bigger one is truncated; UDP answers are rate-limited per
//! client subnet when [`ServerOptions`] say so; TCP connections are capped
//! in number, closed when idle, and never claim more than a few kB. With
//! [`ServerOptions::zones`] set, names outside them are REFUSED.
//!
//! Answers follow RFC 1034 §4.3.2: the exact name and type; a CNAME at the name
//! is returned for any other type, followed by the target's records when the
//! target is ours; NXDOMAIN only for names that neither exist nor have
//! descendants (RFC 8020: an empty non-terminal is NOERROR with no data).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, CAA, CNAME, NS, SOA, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::Semaphore;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::timeout;

use super::ratelimit::{ResponseRateLimiter, Verdict, subnet};

/// What one server answers, to whom, and how much. The defaults suit the
/// mock that tests use as the Internet's DNS: every name, no rate limit.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// The zones served; a question for any other name is REFUSED. Empty:
    /// every name is answered and RA is set, as the recursive resolver a
    /// test points the hub at would.
    pub zones: Vec<String>,
    /// UDP responses per second (and burst) per client subnet; 0: no limit.
    pub udp_responses_per_second: u32,
    /// How long a TCP connection may stay silent, or take to send a query.
    pub tcp_idle_timeout: Duration,
    /// Most TCP connections served at once.
    pub max_tcp_connections: usize,
}

impl Default for ServerOptions {
    fn default() -> Self {
        Self {
            zones: Vec::new(),
            udp_responses_per_second: 0,
            tcp_idle_timeout: Duration::from_secs(10),
            max_tcp_connections: 128,
        }
    }
}

/// An in-memory authoritative DNS server listening on one UDP and one TCP
/// socket (same port). Dropping it stops serving.
pub struct AuthoritativeServer {
    zone: Arc<RwLock<HashMap<String, Node>>>,
    addr: SocketAddr,
    tasks: Vec<JoinHandle<()>>,
    /// What the listeners serve, for [`AuthoritativeServer::answer_bytes`].
    served: Arc<Served>,
}

impl AuthoritativeServer {
    /// Binds UDP and TCP on the same port of `addr` (port 0 picks a free one)
    /// and serves on the current tokio runtime.
    pub async fn start(addr: SocketAddr) -> std::io::Result<AuthoritativeServer> {
        Self::start_with(addr, ServerOptions::default()).await
    }

    /// [`AuthoritativeServer::start`] with its limits.
    pub async fn start_with(
        addr: SocketAddr,
        options: ServerOptions,
    ) -> std::io::Result<AuthoritativeServer> {
        let (udp, tcp) = bind_pair(addr).await?;
        let addr = udp.local_addr()?;
        let zone: Arc<RwLock<HashMap<String, Node>>> = Arc::default();
        let served = Arc::new(Served {
            zones: options.zones.iter().map(|z| normalize(z)).collect(),
            limiter: ResponseRateLimiter::new(options.udp_responses_per_second),
            tcp_idle_timeout: options.tcp_idle_timeout,
        });
        let tasks = vec![
            tokio::spawn(serve_udp(udp, zone.clone(), served.clone())),
            tokio::spawn(serve_tcp(
                tcp,
                zone.clone(),
                served.clone(),
                options.max_tcp_connections,
            )),
        ];
        Ok(AuthoritativeServer {
            zone,
            addr,
            tasks,
            served,
        })
    }

    /// The address both UDP and TCP listen on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The wire bytes this server would send back for `request` over UDP
    /// (`tcp` false) or TCP, or `None` when it would stay silent. A seam for
    /// the fuzz targets in tests/it/fuzz, which drive the message handling
    /// without sockets; it answers from the same records as the listeners.
    #[doc(hidden)]
    pub fn answer_bytes(&self, request: &[u8], tcp: bool) -> Option<Vec<u8>> {
        let reply = if tcp { Reply::Tcp } else { Reply::Udp };
        handle(request, &self.zone, &self.served, reply)
    }

    /// Replaces the A and AAAA records at `name` (each address goes to the
    /// record type of its family). An empty slice removes both.
    pub fn set_a(&self, name: &str, ips: &[IpAddr]) {
        self.with_node(name, |node| node.addresses = ips.to_vec());
    }

    /// Adds one TXT record (one character-string per 255 bytes) at `name`.
    pub fn add_txt(&self, name: &str, value: &str) {
        self.with_node(name, |node| node.txt.push(value.to_string()));
    }

    /// Removes every TXT record at `name`.
    pub fn clear_txt(&self, name: &str) {
        self.with_node(name, |node| node.txt.clear());
    }

    /// Sets the CNAME at `name` (replacing any previous one).
    pub fn set_cname(&self, name: &str, target: &str) {
        let target = normalize(target);
        self.with_node(name, |node| node.cname = Some(target));
    }

    /// Adds one CAA record (RFC 8659 §4.1) at `name`, e.g. `0 issue "ca.example"`.
    pub fn add_caa(&self, name: &str, flags: u8, tag: &str, value: &str) {
        let entry = CaaEntry {
            flags,
            tag: tag.to_string(),
            value: value.to_string(),
        };
        self.with_node(name, |node| node.caa.push(entry));
    }

    /// Adds an NS record at `name` (a zone apex or a delegation point).
    pub fn add_ns(&self, name: &str, target: &str) {
        let target = normalize(target);
        self.with_node(name, |node| node.ns.push(target));
    }

    /// Makes `zone` a zone this server is authoritative for: an SOA at its
    /// apex, sent in the authority section of negative answers (RFC 2308).
    pub fn set_soa(&self, zone: &str, primary: &str, contact: &str, minimum_ttl: u32) {
        let soa = SoaEntry {
            primary: normalize(primary),
            contact: normalize(contact),
            minimum: minimum_ttl,
        };
        self.with_node(zone, |node| node.soa = Some(soa));
    }

    /// Replaces every TXT record strictly under `zone` with `records`
    /// (`(name, value)` pairs), in one step: queries see the old set or the
    /// new one, never a mix.
    pub fn replace_txt_under(&self, zone: &str, records: &[(String, String)]) {
        let mut map = self.zone.write().unwrap_or_else(|p| p.into_inner());
        let suffix = format!(".{}", normalize(zone));
        map.retain(|name, node| {
            if name.ends_with(&suffix) {
                node.txt.clear();
            }
            !node.is_empty()
        });
        for (name, value) in records {
            let key = normalize(name);
            if key.ends_with(&suffix) {
                map.entry(key).or_default().txt.push(value.clone());
            }
        }
    }

    /// Removes every record at `name`.
    pub fn clear(&self, name: &str) {
        let mut zone = self.zone.write().unwrap_or_else(|p| p.into_inner());
        zone.remove(&normalize(name));
    }

    fn with_node(&self, name: &str, f: impl FnOnce(&mut Node)) {
        // A poisoned lock only means a panic elsewhere mid-update of plain
        // data; the map is still usable, so keep serving.
        let mut zone = self.zone.write().unwrap_or_else(|p| p.into_inner());
        let key = normalize(name);
        let node = zone.entry(key.clone()).or_default();
        f(node);
        if node.is_empty() {
            zone.remove(&key);
        }
    }
}

impl Drop for AuthoritativeServer {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Records at one owner name.
#[derive(Debug, Default, Clone)]
struct Node {
    addresses: Vec<IpAddr>,
    txt: Vec<String>,
    cname: Option<String>,
    caa: Vec<CaaEntry>,
    ns: Vec<String>,
    soa: Option<SoaEntry>,
}

#[derive(Debug, Clone)]
struct SoaEntry {
    primary: String,
    contact: String,
    minimum: u32,
}

impl SoaEntry {
    fn to_rdata(&self) -> Option<RData> {
        Some(RData::SOA(SOA::new(
            fqdn(&self.primary).ok()?,
            fqdn(&self.contact).ok()?,
            1,
            3600,
            600,
            86400,
            self.minimum,
        )))
    }
}

impl Node {
    fn is_empty(&self) -> bool {
        self.addresses.is_empty()
            && self.txt.is_empty()
            && self.cname.is_none()
            && self.caa.is_empty()
            && self.ns.is_empty()
            && self.soa.is_none()
    }

    fn records(&self, owner: &Name, qtype: RecordType) -> Vec<Record> {
        let mut out = Vec::new();
        let wants = |t: RecordType| qtype == t || qtype == RecordType::ANY;
        for ip in &self.addresses {
            match ip {
                IpAddr::V4(v4) if wants(RecordType::A) => out.push(record(owner, RData::A(A(*v4)))),
                IpAddr::V6(v6) if wants(RecordType::AAAA) => {
                    out.push(record(owner, RData::AAAA(AAAA(*v6))))
                }
                _ => {}
            }
        }
        if wants(RecordType::TXT) {
            for value in &self.txt {
                // RFC 1035 §3.3: a character-string holds at most 255 bytes.
                let chunks: Vec<&[u8]> = value.as_bytes().chunks(255).collect();
                let chunks = if chunks.is_empty() {
                    vec![&b""[..]]
                } else {
                    chunks
                };
                out.push(record(owner, RData::TXT(TXT::from_bytes(chunks))));
            }
        }
        if wants(RecordType::CAA) {
            for caa in &self.caa {
                out.push(record(owner, caa.to_rdata()));
            }
        }
        if wants(RecordType::CNAME) {
            if let Some(target) = self.cname.as_deref().and_then(|t| fqdn(t).ok()) {
                out.push(record(owner, RData::CNAME(CNAME(target))));
            }
        }
        if wants(RecordType::NS) {
            for target in self.ns.iter().filter_map(|t| fqdn(t).ok()) {
                out.push(record(owner, RData::NS(NS(target))));
            }
        }
        if wants(RecordType::SOA) {
            if let Some(data) = self.soa.as_ref().and_then(SoaEntry::to_rdata) {
                out.push(record(owner, data));
            }
        }
        out
    }
}

#[derive(Debug, Clone)]
struct CaaEntry {
    flags: u8,
    tag: String,
    value: String,
}

impl CaaEntry {
    fn to_rdata(&self) -> RData {
        // The CAA constructors only build known tags; the fields are public so
        // tests can publish any tag and raw value (including malformed ones).
        let mut caa = CAA::new_issue(false, None, Vec::new());
        caa.issuer_critical = self.flags & 0x80 != 0;
        caa.reserved_flags = self.flags & 0x7f;
        caa.tag = self.tag.clone();
        caa.value = self.value.as_bytes().to_vec();
        RData::CAA(caa)
    }
}

/// Records are served with TTL 0 so that no cache between a test and this
/// server can hide a change.
const TTL: u32 = 0;

/// How many CNAMEs one answer follows before giving up (loops, long chains).
const MAX_CNAME_CHAIN: usize = 8;

fn record(owner: &Name, data: RData) -> Record {
    Record::from_rdata(owner.clone(), TTL, data)
}

/// Lowercase, no trailing dot: the key of the record map.
fn normalize(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

fn fqdn(name: &str) -> Result<Name, hickory_proto::ProtoError> {
    Name::from_ascii(format!("{}.", name.trim_end_matches('.')))
}

async fn bind_pair(addr: SocketAddr) -> std::io::Result<(UdpSocket, TcpListener)> {
    // With port 0 the kernel picks a free UDP port that may be taken for TCP;
    // try a few fresh ports before giving up.
    let tries = if addr.port() == 0 { 8 } else { 1 };
    let mut last_err = None;
    for _ in 0..tries {
        let udp = UdpSocket::bind(addr).await?;
        let port = udp.local_addr()?.port();
        match TcpListener::bind(SocketAddr::new(addr.ip(), port)).await {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(e) => last_err = Some(e),
        }
    }
    Err(last_err.unwrap_or_else(|| std::io::Error::other("could not bind DNS sockets")))
}

/// The largest UDP answer sent whatever EDNS size a client claims: the
/// DNS Flag Day 2020 value, which fits a 1280-byte IPv6 MTU unfragmented
/// and keeps what a forged 40-byte question can reflect at a victim small.
const MAX_UDP_PAYLOAD: u16 = 1232;

/// The largest DNS-over-TCP message read: a question is a few hundred bytes
/// at most, so a larger length prefix is refused before anything is
/// allocated for it.
const MAX_TCP_QUERY: u16 = 4096;

/// Most TCP connections one client subnet (IPv4 /24, IPv6 /56) holds at
/// once, so that one client cannot take every slot of
/// `max_tcp_connections` from the resolvers that TC sent there.
const MAX_TCP_PER_SUBNET: usize = 16;

/// Open TCP connections by client subnet.
#[derive(Default)]
struct TcpClients(std::sync::Mutex<HashMap<IpAddr, usize>>);

impl TcpClients {
    /// Counts one more connection from `peer`'s subnet, unless it holds
    /// its most; the slot is given back when the returned guard drops.
    fn admit(self: &Arc<Self>, peer: IpAddr) -> Option<TcpClientSlot> {
        let key = subnet(peer);
        let mut open = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let count = open.entry(key).or_default();
        if *count >= MAX_TCP_PER_SUBNET {
            return None;
        }
        *count += 1;
        Some(TcpClientSlot {
            clients: self.clone(),
            key,
        })
    }
}

struct TcpClientSlot {
    clients: Arc<TcpClients>,
    key: IpAddr,
}

impl Drop for TcpClientSlot {
    fn drop(&mut self) {
        let mut open = self.clients.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = open.get_mut(&self.key) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.remove(&self.key);
            }
        }
    }
}

/// What the serving tasks share besides the records.
struct Served {
    /// Lowercase, without the trailing dot; empty: every name.
    zones: Vec<String>,
    limiter: Option<ResponseRateLimiter>,
    tcp_idle_timeout: Duration,
}

impl Served {
    /// Whether `name` (normalized) is at or below one of our zones.
    fn covers(&self, name: &str) -> bool {
        self.zones.is_empty()
            || self.zones.iter().any(|z| {
                name == z
                    || name
                        .strip_suffix(z.as_str())
                        .is_some_and(|p| p.ends_with('.'))
            })
    }
}

async fn serve_udp(
    socket: UdpSocket,
    zone: Arc<RwLock<HashMap<String, Node>>>,
    served: Arc<Served>,
) {
    let mut buf = vec![0u8; 65535];
    loop {
        let (len, peer) = match socket.recv_from(&mut buf).await {
            Ok(x) => x,
            Err(e) => {
                tracing::debug!(error = %e, "memory DNS: UDP receive failed");
                continue;
            }
        };
        let Some(request) = buf.get(..len) else {
            continue;
        };
        let verdict = match &served.limiter {
            Some(limiter) => limiter.check(peer.ip(), std::time::Instant::now()),
            None => Verdict::Answer,
        };
        let reply = match verdict {
            Verdict::Answer => Reply::Udp,
            Verdict::Slip => Reply::Truncated,
            Verdict::Drop => {
                tracing::trace!(%peer, "memory DNS: UDP answer dropped by the rate limit");
                continue;
            }
        };
        if let Some(response) = handle(request, &zone, &served, reply) {
            if let Err(e) = socket.send_to(&response, peer).await {
                tracing::debug!(error = %e, %peer, "memory DNS: UDP send failed");
            }
        }
    }
}

async fn serve_tcp(
    listener: TcpListener,
    zone: Arc<RwLock<HashMap<String, Node>>>,
    served: Arc<Served>,
    max_connections: usize,
) {
    // RFC 7766 §6.2.2: a server may limit its concurrent connections; each
    // connection holds a permit and its subnet's slot, and one beyond
    // either limit is closed at once.
    let slots = Arc::new(Semaphore::new(max_connections.max(1)));
    let clients = Arc::new(TcpClients::default());
    // Connections live in this set so that aborting the accept task (on drop)
    // also ends every open connection.
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let permit = slots.clone().try_acquire_owned().ok();
                    let slot = clients.admit(peer.ip());
                    let (Some(permit), Some(slot)) = (permit, slot) else {
                        tracing::debug!(%peer, max_connections, MAX_TCP_PER_SUBNET,
                            "memory DNS: TCP connection closed, too many open in all or from its subnet");
                        continue;
                    };
                    let (zone, served) = (zone.clone(), served.clone());
                    connections.spawn(async move {
                        serve_tcp_connection(stream, zone, served).await;
                        drop((permit, slot));
                    });
                }
                Err(e) => {
                    // Out of file descriptors, mostly: pause rather than spin.
                    tracing::debug!(error = %e, "memory DNS: TCP accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

async fn serve_tcp_connection(
    mut stream: TcpStream,
    zone: Arc<RwLock<HashMap<String, Node>>>,
    served: Arc<Served>,
) {
    // RFC 1035 §4.2.2 / RFC 7766: each message is prefixed by its 2-byte
    // length. RFC 7766 §6.2.3: idle connections are closed after seconds;
    // the same time bounds reading one whole query (a client trickling a
    // byte at a time is idle too) and writing its answer (one not reading).
    let idle = served.tcp_idle_timeout;
    loop {
        let Ok(Ok(len)) = timeout(idle, stream.read_u16()).await else {
            return;
        };
        if len > MAX_TCP_QUERY {
            tracing::debug!(len, "memory DNS: TCP message too long, connection closed");
            return;
        }
        let mut request = vec![0u8; usize::from(len)];
        if !matches!(
            timeout(idle, stream.read_exact(&mut request)).await,
            Ok(Ok(_))
        ) {
            return;
        }
        let Some(response) = handle(&request, &zone, &served, Reply::Tcp) else {
            continue;
        };
        let Ok(len) = u16::try_from(response.len()) else {
            return;
        };
        let mut framed = Vec::with_capacity(response.len() + 2);
        framed.extend_from_slice(&len.to_be_bytes());
        framed.extend_from_slice(&response);
        if !matches!(timeout(idle, stream.write_all(&framed)).await, Ok(Ok(_))) {
            return;
        }
    }
}

/// How an answer goes back.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Reply {
    /// Over UDP, within the client's payload size.
    Udp,
    /// Over UDP, header and question only with TC: the rate limit's "slip".
    Truncated,
    /// Over TCP, up to 65535 bytes.
    Tcp,
}

/// Turns one request into the wire bytes of its response, or `None` when the
/// packet is not worth answering (not a query, or too short to carry an id).
fn handle(
    request: &[u8],
    zone: &RwLock<HashMap<String, Node>>,
    served: &Served,
    reply: Reply,
) -> Option<Vec<u8>> {
    let request = match Message::from_vec(request) {
        Ok(m) => m,
        Err(_) => {
            // Answer FORMERR when we can at least echo the id (RFC 1035 §4.1.1).
            let id = u16::from_be_bytes([*request.first()?, *request.get(1)?]);
            return Message::error_msg(id, OpCode::Query, ResponseCode::FormErr)
                .to_vec()
                .ok();
        }
    };
    if request.metadata.message_type != MessageType::Query {
        return None;
    }
    let mut response = Message::response(request.metadata.id, request.metadata.op_code);
    response.metadata.recursion_desired = request.metadata.recursion_desired;
    // AA: we are the authority for everything we hold. RA (RFC 1035
    // §4.1.1): a server for its own zones only never recurses and says so;
    // the test mock that serves every name stands in for a recursive
    // resolver, and claims it.
    response.metadata.authoritative = true;
    response.metadata.recursion_available = served.zones.is_empty();
    if request.edns.is_some() {
        // RFC 6891 §6.2.3: our OPT carries the payload size we accept.
        let mut ours = Edns::new();
        ours.set_max_payload(MAX_UDP_PAYLOAD);
        response.set_edns(ours);
    }
    // Echo the question only when there is one: several long ones (a
    // FORMERR) could make the answer outgrow a UDP reply (RFC 1035 §4.2.1),
    // and truncation keeps the question section.
    if request.queries.len() == 1 {
        response.add_queries(request.queries.iter().cloned());
    }

    if request.metadata.op_code != OpCode::Query {
        response.metadata.response_code = ResponseCode::NotImp;
    } else if request.queries.len() != 1 {
        response.metadata.response_code = ResponseCode::FormErr;
    } else if let Some(query) = request.queries.first() {
        let qname = normalize(&query.name().to_ascii());
        if !served.covers(&qname) {
            // RFC 1035 §4.1.1: REFUSED for policy reasons. Not ours, so not
            // authoritative either.
            response.metadata.response_code = ResponseCode::Refused;
            response.metadata.authoritative = false;
        } else {
            let zone = zone.read().unwrap_or_else(|p| p.into_inner());
            let (code, answers) = answer(&zone, query.name(), query.query_type());
            response.metadata.response_code = code;
            if answers.is_empty() {
                // RFC 2308 §3: a negative answer carries the zone's SOA.
                if let Some(soa) = enclosing_soa(&zone, &qname) {
                    response.add_authority(soa);
                }
            }
            response.add_answers(answers);
        }
    }

    // RFC 6891 §6.2.5: the client's EDNS size, never below 512; capped at
    // ours. Without EDNS, RFC 1035 §4.2.1's 512 bytes.
    let limit = match (&request.edns, reply) {
        (_, Reply::Tcp) => usize::from(u16::MAX),
        (_, Reply::Truncated) => 0,
        (Some(edns), Reply::Udp) => usize::from(edns.max_payload().clamp(512, MAX_UDP_PAYLOAD)),
        (None, Reply::Udp) => 512,
    };
    let bytes = response.to_vec().ok()?;
    if bytes.len() > limit {
        // RFC 1035 §4.2.1 / RFC 2181 §9: too big, so TC with the header and
        // question only (no partial RRset) and the client asks over TCP.
        return response.truncate().to_vec().ok();
    }
    Some(bytes)
}

/// The SOA of the closest zone apex at or above `name`, if we hold one.
fn enclosing_soa(zone: &HashMap<String, Node>, name: &str) -> Option<Record> {
    let mut current = name;
    loop {
        if let Some(soa) = zone.get(current).and_then(|n| n.soa.as_ref()) {
            let owner = fqdn(current).ok()?;
            return Some(Record::from_rdata(owner, soa.minimum, soa.to_rdata()?));
        }
        current = current.split_once('.')?.1;
    }
}

/// The response code and answer section for one question.
fn answer(
    zone: &HashMap<String, Node>,
    qname: &Name,
    qtype: RecordType,
) -> (ResponseCode, Vec<Record>) {
    let mut answers = Vec::new();
    let mut owner = qname.clone();
    let mut key = normalize(&qname.to_ascii());
    for hop in 0..=MAX_CNAME_CHAIN {
        let Some(node) = zone.get(&key) else {
            if hop > 0 {
                // The CNAME target is not ours: return the chain so far and let
                // the resolver chase the target, as an authority for only the
                // alias's zone would.
                return (ResponseCode::NoError, answers);
            }
            let suffix = format!(".{key}");
            let has_descendants = zone.keys().any(|k| k.ends_with(&suffix));
            let code = if has_descendants {
                ResponseCode::NoError
            } else {
                ResponseCode::NXDomain
            };
            return (code, answers);
        };
        match node.cname.as_deref() {
            Some(target) if qtype != RecordType::CNAME && qtype != RecordType::ANY => {
                answers.extend(node.records(&owner, RecordType::CNAME));
                let Ok(next) = fqdn(target) else {
                    return (ResponseCode::NoError, answers);
                };
                owner = next;
                key = target.to_string();
            }
            _ => {
                answers.extend(node.records(&owner, qtype));
                return (ResponseCode::NoError, answers);
            }
        }
    }
    // A CNAME loop or an overlong chain: answer what we have; resolvers give up.
    (ResponseCode::NoError, answers)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_resolver::TokioResolver;
    use hickory_resolver::config::{NameServerConfig, ResolverConfig, ResolverOpts};
    use hickory_resolver::net::runtime::TokioRuntimeProvider;

    fn resolver_for(dns: &AuthoritativeServer, tcp_only: bool) -> TokioResolver {
        let mut ns = if tcp_only {
            NameServerConfig::tcp(dns.addr().ip())
        } else {
            NameServerConfig::udp(dns.addr().ip())
        };
        for c in &mut ns.connections {
            c.port = dns.addr().port();
        }
        let mut opts = ResolverOpts::default();
        opts.cache_size = 0;
        opts.timeout = std::time::Duration::from_secs(2);
        TokioResolver::builder_with_config(
            ResolverConfig::from_parts(None, vec![], vec![ns]),
            TokioRuntimeProvider::default(),
        )
        .with_options(opts)
        .build()
        .unwrap()
    }

    async fn started() -> AuthoritativeServer {
        AuthoritativeServer::start("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn answers_a_and_aaaa_by_family_over_udp_and_tcp() {
        let dns = started().await;
        dns.set_a(
            "WWW.Example.com.",
            &["127.0.0.7".parse().unwrap(), "::1".parse().unwrap()],
        );
        for tcp in [false, true] {
            let r = resolver_for(&dns, tcp);
            let ips: Vec<IpAddr> = r
                .lookup_ip("www.example.com.")
                .await
                .unwrap()
                .iter()
                .collect();
            assert!(
                ips.contains(&"127.0.0.7".parse().unwrap()),
                "tcp={tcp}: {ips:?}"
            );
            assert!(ips.contains(&"::1".parse().unwrap()), "tcp={tcp}: {ips:?}");
        }
        dns.set_a("www.example.com", &["127.0.0.8".parse().unwrap()]);
        let r = resolver_for(&dns, false);
        let ips: Vec<IpAddr> = r
            .lookup_ip("www.example.com.")
            .await
            .unwrap()
            .iter()
            .collect();
        assert_eq!(
            ips,
            vec!["127.0.0.8".parse::<IpAddr>().unwrap()],
            "set_a replaces"
        );
    }

    #[tokio::test]
    async fn txt_records_are_added_and_cleared() {
        let dns = started().await;
        let r = resolver_for(&dns, false);
        dns.add_txt("_acme-challenge.example.com", "one");
        dns.add_txt("_acme-challenge.example.com", "two");
        let lookup = r
            .lookup("_acme-challenge.example.com.", RecordType::TXT)
            .await
            .unwrap();
        let mut values: Vec<String> = lookup
            .answers()
            .iter()
            .filter_map(|rec| match &rec.data {
                RData::TXT(t) => Some(t.to_string()),
                _ => None,
            })
            .collect();
        values.sort();
        assert_eq!(values, ["one", "two"]);
        dns.clear_txt("_acme-challenge.example.com.");
        let err = r
            .lookup("_acme-challenge.example.com.", RecordType::TXT)
            .await
            .unwrap_err();
        assert!(
            err.is_nx_domain(),
            "a name with no records left is gone: {err}"
        );
    }

    #[tokio::test]
    async fn nxdomain_only_for_names_without_descendants() {
        let dns = started().await;
        let r = resolver_for(&dns, false);
        dns.set_a("www.example.com", &["127.0.0.1".parse().unwrap()]);
        let ent = r.lookup("example.com.", RecordType::A).await.unwrap_err();
        assert!(
            ent.is_no_records_found() && !ent.is_nx_domain(),
            "empty non-terminal: {ent}"
        );
        let wrong_type = r
            .lookup("www.example.com.", RecordType::TXT)
            .await
            .unwrap_err();
        assert!(wrong_type.is_no_records_found() && !wrong_type.is_nx_domain());
        let missing = r
            .lookup("nope.example.com.", RecordType::A)
            .await
            .unwrap_err();
        assert!(missing.is_nx_domain(), "{missing}");
        dns.clear("www.example.com");
        assert!(
            r.lookup("www.example.com.", RecordType::A)
                .await
                .unwrap_err()
                .is_nx_domain()
        );
    }

    #[tokio::test]
    async fn cname_is_followed_within_the_server_and_by_the_resolver() {
        let dns = started().await;
        let r = resolver_for(&dns, false);
        dns.set_cname("_acme-challenge.shop.customer.com", "k3v9.acme.hub.example");
        dns.add_txt("k3v9.acme.hub.example", "token-digest");
        let lookup = r
            .lookup("_acme-challenge.shop.customer.com.", RecordType::TXT)
            .await
            .unwrap();
        let kinds: Vec<RecordType> = lookup.answers().iter().map(|r| r.record_type()).collect();
        assert_eq!(kinds, [RecordType::CNAME, RecordType::TXT]);
        let cname = r
            .lookup("_acme-challenge.shop.customer.com.", RecordType::CNAME)
            .await
            .unwrap();
        assert_eq!(cname.answers().len(), 1);
        assert_eq!(cname.answers()[0].record_type(), RecordType::CNAME);
    }

    #[tokio::test]
    async fn caa_records_keep_flags_tag_and_value() {
        let dns = started().await;
        let r = resolver_for(&dns, false);
        dns.add_caa("example.com", 0, "issue", "acmehub.local");
        dns.add_caa("example.com", 128, "tbs", "unknown");
        let lookup = r.lookup("example.com.", RecordType::CAA).await.unwrap();
        let mut seen: Vec<(u8, String, Vec<u8>)> = lookup
            .answers()
            .iter()
            .filter_map(|rec| match &rec.data {
                RData::CAA(c) => Some((c.flags(), c.tag.clone(), c.value.clone())),
                _ => None,
            })
            .collect();
        seen.sort();
        assert_eq!(
            seen,
            [
                (0, "issue".to_string(), b"acmehub.local".to_vec()),
                (128, "tbs".to_string(), b"unknown".to_vec()),
            ]
        );
    }

    // ---- limits of a server that answers for its zones only ----

    const ZONE: &str = "zone.test";

    async fn zone_server(options: ServerOptions) -> AuthoritativeServer {
        let dns = AuthoritativeServer::start_with(
            "127.0.0.1:0".parse().unwrap(),
            ServerOptions {
                zones: vec![ZONE.to_string()],
                ..options
            },
        )
        .await
        .unwrap();
        dns.set_soa(ZONE, "ns1.zone.test", "hostmaster.zone.test", 60);
        dns
    }

    fn query(name: &str, qtype: RecordType, edns_payload: Option<u16>) -> Vec<u8> {
        let mut m = Message::query();
        m.add_query(hickory_proto::op::Query::query(
            Name::from_ascii(name).unwrap(),
            qtype,
        ));
        if let Some(size) = edns_payload {
            let mut edns = Edns::new();
            edns.set_max_payload(size);
            m.set_edns(edns);
        }
        m.to_vec().unwrap()
    }

    /// Sends one UDP query from `bind` and waits a second for its answer.
    async fn udp_exchange(
        dns: &AuthoritativeServer,
        bind: &str,
        request: &[u8],
    ) -> Option<Vec<u8>> {
        let socket = UdpSocket::bind(bind).await.unwrap();
        socket.send_to(request, dns.addr()).await.unwrap();
        let mut buf = vec![0u8; 65535];
        let wait = tokio::time::timeout(Duration::from_secs(1), socket.recv(&mut buf));
        let len = wait.await.ok()?.unwrap();
        buf.truncate(len);
        Some(buf)
    }

    /// Sends one query over `stream` and reads its answer.
    async fn tcp_exchange(stream: &mut TcpStream, request: &[u8]) -> Vec<u8> {
        let len = u16::try_from(request.len()).unwrap();
        stream.write_all(&len.to_be_bytes()).await.unwrap();
        stream.write_all(request).await.unwrap();
        let len = stream.read_u16().await.unwrap();
        let mut answer = vec![0u8; usize::from(len)];
        stream.read_exact(&mut answer).await.unwrap();
        answer
    }

    /// How long the server takes to close `stream` (None: still open after `within`).
    async fn closed_within(stream: &mut TcpStream, within: Duration) -> Option<Duration> {
        let started = std::time::Instant::now();
        let mut buf = [0u8; 512];
        loop {
            match tokio::time::timeout_at(
                tokio::time::Instant::from_std(started + within),
                stream.read(&mut buf),
            )
            .await
            {
                Err(_) => return None,
                Ok(Ok(0) | Err(_)) => return Some(started.elapsed()),
                Ok(Ok(_)) => continue,
            }
        }
    }

    #[tokio::test]
    async fn a_big_txt_rrset_is_truncated_over_udp_and_whole_over_tcp() {
        let dns = zone_server(ServerOptions::default()).await;
        let name = "big.zone.test.";
        for i in 0..20 {
            dns.add_txt(name, &format!("{i:02}{}", "x".repeat(250)));
        }
        // A 40-byte question must not buy a 5 kB answer: at most 1232 bytes
        // whatever EDNS size the client claims, less if it says less, 512
        // without EDNS (RFC 1035 §4.2.1); TC tells it to ask over TCP.
        for (edns, limit) in [(Some(65535), 1232), (Some(900), 900), (None, 512)] {
            let request = query(name, RecordType::TXT, edns);
            let answer = udp_exchange(&dns, "127.0.0.1:0", &request).await.unwrap();
            assert!(
                answer.len() <= limit,
                "EDNS {edns:?}: {} bytes for a {}-byte question",
                answer.len(),
                request.len()
            );
            let answer = Message::from_vec(&answer).unwrap();
            assert!(answer.metadata.truncation, "EDNS {edns:?}: TC clear");
            assert!(answer.answers.is_empty(), "EDNS {edns:?}: no partial RRset");
        }
        let mut stream = TcpStream::connect(dns.addr()).await.unwrap();
        let answer = tcp_exchange(&mut stream, &query(name, RecordType::TXT, Some(65535))).await;
        let answer = Message::from_vec(&answer).unwrap();
        assert!(!answer.metadata.truncation);
        assert_eq!(answer.answers.len(), 20, "TCP carries the whole RRset");
        // A small answer still fits in UDP untouched.
        dns.add_txt("small.zone.test", "one");
        let answer = udp_exchange(
            &dns,
            "127.0.0.1:0",
            &query("small.zone.test.", RecordType::TXT, None),
        )
        .await
        .unwrap();
        let answer = Message::from_vec(&answer).unwrap();
        assert!(!answer.metadata.truncation);
        assert_eq!(answer.answers.len(), 1);
    }

    #[tokio::test]
    async fn names_outside_the_zone_are_refused_and_recursion_is_not_offered() {
        let dns = zone_server(ServerOptions::default()).await;
        dns.add_txt("in.zone.test", "value");
        for name in ["example.com.", "zone.test.example.com.", "notzone.test."] {
            let answer = udp_exchange(&dns, "127.0.0.1:0", &query(name, RecordType::A, None))
                .await
                .unwrap();
            let answer = Message::from_vec(&answer).unwrap();
            assert_eq!(
                answer.metadata.response_code,
                ResponseCode::Refused,
                "{name}"
            );
            assert!(!answer.metadata.recursion_available, "{name}: RA set");
            assert!(!answer.metadata.authoritative, "{name}: AA set");
            assert!(answer.answers.is_empty() && answer.authorities.is_empty());
        }
        let answer = udp_exchange(
            &dns,
            "127.0.0.1:0",
            &query("IN.Zone.Test.", RecordType::TXT, None),
        )
        .await
        .unwrap();
        let answer = Message::from_vec(&answer).unwrap();
        assert_eq!(answer.metadata.response_code, ResponseCode::NoError);
        assert!(answer.metadata.authoritative);
        assert!(
            !answer.metadata.recursion_available,
            "an authority only: RA clear"
        );
        assert_eq!(answer.answers.len(), 1);
    }

    #[tokio::test]
    async fn a_udp_flood_from_one_subnet_is_rate_limited_and_another_subnet_still_answered() {
        let dns = zone_server(ServerOptions {
            udp_responses_per_second: 10,
            ..Default::default()
        })
        .await;
        dns.add_txt("flood.zone.test", "value");
        let request = query("flood.zone.test.", RecordType::TXT, None);
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let started = std::time::Instant::now();
        for _ in 0..200 {
            socket.send_to(&request, dns.addr()).await.unwrap();
        }
        let (mut full, mut truncated) = (0u32, 0u32);
        let mut buf = vec![0u8; 4096];
        while let Ok(Ok(len)) =
            tokio::time::timeout(Duration::from_millis(300), socket.recv(&mut buf)).await
        {
            let answer = Message::from_vec(&buf[..len]).unwrap();
            if answer.metadata.truncation {
                truncated += 1;
            } else {
                full += 1;
            }
        }
        // A burst of 10, then 10 a second for the time the flood lasted.
        let allowed = 10 + (started.elapsed().as_secs_f64() * 10.0).ceil() as u32 + 1;
        assert!(
            full <= allowed,
            "{full} full answers to 200 queries (allowed {allowed})"
        );
        assert!(full >= 5, "the burst is answered: {full}");
        assert!(
            truncated >= 1,
            "some limited queries get TC so resolvers retry over TCP"
        );
        assert!(full + truncated < 150, "most of the excess is dropped");
        // 127.0.1.0/24 is another subnet: its bucket is full.
        let answer = udp_exchange(&dns, "127.0.1.1:0", &request).await;
        let answer = Message::from_vec(&answer.expect("another subnet is answered")).unwrap();
        assert!(!answer.metadata.truncation);
        assert_eq!(answer.answers.len(), 1);
        // TCP is not limited: a client sent there by TC gets its answer.
        let mut stream = TcpStream::connect(dns.addr()).await.unwrap();
        let answer = Message::from_vec(&tcp_exchange(&mut stream, &request).await).unwrap();
        assert_eq!(answer.answers.len(), 1);
    }

    #[tokio::test]
    async fn a_silent_tcp_connection_is_closed_after_the_idle_timeout() {
        let dns = zone_server(ServerOptions {
            tcp_idle_timeout: Duration::from_millis(300),
            ..Default::default()
        })
        .await;
        dns.add_txt("t.zone.test", "value");
        let mut silent = TcpStream::connect(dns.addr()).await.unwrap();
        let took = closed_within(&mut silent, Duration::from_secs(3)).await;
        let took = took.expect("a silent connection is still open after 3 s");
        assert!(
            took >= Duration::from_millis(250),
            "closed too early: {took:?}"
        );
        // One that asks is answered, then closed once it falls silent.
        let mut asking = TcpStream::connect(dns.addr()).await.unwrap();
        let answer = tcp_exchange(&mut asking, &query("t.zone.test.", RecordType::TXT, None)).await;
        assert_eq!(Message::from_vec(&answer).unwrap().answers.len(), 1);
        assert!(
            closed_within(&mut asking, Duration::from_secs(3))
                .await
                .is_some()
        );
        // Half a query is not activity that keeps it open.
        let mut trickling = TcpStream::connect(dns.addr()).await.unwrap();
        trickling.write_all(&[0, 40, 1, 2]).await.unwrap();
        assert!(
            closed_within(&mut trickling, Duration::from_secs(3))
                .await
                .is_some()
        );
    }

    #[tokio::test]
    async fn a_huge_tcp_length_prefix_closes_the_connection_at_once() {
        let dns = zone_server(ServerOptions::default()).await;
        let mut stream = TcpStream::connect(dns.addr()).await.unwrap();
        // Claims 65535 bytes and sends none: no query needs more than a few
        // hundred, so the server hangs up instead of allocating and waiting
        // out the (10 s) idle timeout.
        stream.write_all(&[0xff, 0xff]).await.unwrap();
        let took = closed_within(&mut stream, Duration::from_secs(2)).await;
        assert!(took.is_some(), "still open after 2 s");
    }

    #[tokio::test]
    async fn tcp_connections_beyond_the_cap_are_closed() {
        let dns = zone_server(ServerOptions {
            max_tcp_connections: 4,
            ..Default::default()
        })
        .await;
        dns.add_txt("c.zone.test", "value");
        let request = query("c.zone.test.", RecordType::TXT, None);
        let mut held = Vec::new();
        for _ in 0..4 {
            let mut stream = TcpStream::connect(dns.addr()).await.unwrap();
            // An answer proves the server took this connection in.
            tcp_exchange(&mut stream, &request).await;
            held.push(stream);
        }
        let mut extra = TcpStream::connect(dns.addr()).await.unwrap();
        assert!(
            closed_within(&mut extra, Duration::from_secs(2))
                .await
                .is_some(),
            "a fifth connection is served beyond a cap of 4"
        );
        // Those within the cap still work, and a closed one frees its slot.
        let answer = Message::from_vec(&tcp_exchange(&mut held[0], &request).await).unwrap();
        assert_eq!(answer.answers.len(), 1);
        drop(held.pop());
        let mut freed = None;
        for _ in 0..50 {
            tokio::time::sleep(Duration::from_millis(20)).await;
            let mut stream = TcpStream::connect(dns.addr()).await.unwrap();
            let len = u16::try_from(request.len()).unwrap();
            stream.write_all(&len.to_be_bytes()).await.unwrap();
            stream.write_all(&request).await.unwrap();
            if let Ok(Ok(len)) =
                tokio::time::timeout(Duration::from_secs(1), stream.read_u16()).await
            {
                freed = Some(len);
                break;
            }
        }
        assert!(freed.is_some(), "the freed slot is never reused");
    }

    #[tokio::test]
    async fn one_subnet_cannot_take_every_tcp_connection() {
        let dns = zone_server(ServerOptions::default()).await;
        let connect_from = |ip: &str| {
            let socket = tokio::net::TcpSocket::new_v4().unwrap();
            socket
                .bind(SocketAddr::new(ip.parse().unwrap(), 0))
                .unwrap();
            socket.connect(dns.addr())
        };
        dns.add_txt("s.zone.test", "value");
        let request = query("s.zone.test.", RecordType::TXT, None);
        let mut held = Vec::new();
        for _ in 0..MAX_TCP_PER_SUBNET {
            let mut stream = connect_from("127.0.0.1").await.unwrap();
            tcp_exchange(&mut stream, &request).await;
            held.push(stream);
        }
        let mut extra = connect_from("127.0.0.2").await.unwrap();
        assert!(
            closed_within(&mut extra, Duration::from_secs(2))
                .await
                .is_some(),
            "127.0.0.0/24 holds more than {MAX_TCP_PER_SUBNET} connections"
        );
        // Well under max_tcp_connections, another subnet is served.
        let mut other = connect_from("127.0.1.1").await.unwrap();
        let answer = Message::from_vec(&tcp_exchange(&mut other, &request).await).unwrap();
        assert_eq!(answer.answers.len(), 1);
    }

    #[tokio::test]
    async fn dropping_the_server_stops_answering() {
        let dns = started().await;
        dns.set_a("www.example.com", &["127.0.0.1".parse().unwrap()]);
        let r = resolver_for(&dns, true);
        assert!(r.lookup_ip("www.example.com.").await.is_ok());
        let addr = dns.addr();
        drop(dns);
        // The aborted task releases its listener the next time the runtime runs it.
        let mut closed = false;
        for _ in 0..50 {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            if TcpStream::connect(addr).await.is_err() {
                closed = true;
                break;
            }
        }
        assert!(closed, "TCP listener still open after drop");
    }
}
