//! A small authoritative DNS server over UDP and TCP whose records live in
//! memory. Tests use it as "the internet's DNS"; the hub will serve its
//! technical zone from it. It answers only from its own records (it never
//! recurses or forwards) and never dials anyone.
//!
//! Answers follow RFC 1034 §4.3.2: the exact name and type; a CNAME at the name
//! is returned for any other type, followed by the target's records when the
//! target is ours; NXDOMAIN only for names that neither exist nor have
//! descendants (RFC 8020: an empty non-terminal is NOERROR with no data).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, RwLock};

use hickory_proto::op::{Edns, Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, CAA, CNAME, NS, SOA, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::task::{JoinHandle, JoinSet};

/// An in-memory authoritative DNS server listening on one UDP and one TCP
/// socket (same port). Dropping it stops serving.
pub struct MemoryDns {
    zone: Arc<RwLock<HashMap<String, Node>>>,
    addr: SocketAddr,
    tasks: Vec<JoinHandle<()>>,
}

impl MemoryDns {
    /// Binds UDP and TCP on the same port of `addr` (port 0 picks a free one)
    /// and serves on the current tokio runtime.
    pub async fn start(addr: SocketAddr) -> std::io::Result<MemoryDns> {
        let (udp, tcp) = bind_pair(addr).await?;
        let addr = udp.local_addr()?;
        let zone: Arc<RwLock<HashMap<String, Node>>> = Arc::default();
        let tasks = vec![
            tokio::spawn(serve_udp(udp, zone.clone())),
            tokio::spawn(serve_tcp(tcp, zone.clone())),
        ];
        Ok(MemoryDns { zone, addr, tasks })
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
        let transport = if tcp { Transport::Tcp } else { Transport::Udp };
        handle(request, &self.zone, transport)
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

impl Drop for MemoryDns {
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

async fn serve_udp(socket: UdpSocket, zone: Arc<RwLock<HashMap<String, Node>>>) {
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
        if let Some(response) = handle(request, &zone, Transport::Udp) {
            if let Err(e) = socket.send_to(&response, peer).await {
                tracing::debug!(error = %e, %peer, "memory DNS: UDP send failed");
            }
        }
    }
}

async fn serve_tcp(listener: TcpListener, zone: Arc<RwLock<HashMap<String, Node>>>) {
    // Connections live in this set so that aborting the accept task (on drop)
    // also ends every open connection.
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    connections.spawn(serve_tcp_connection(stream, zone.clone()));
                }
                Err(e) => tracing::debug!(error = %e, "memory DNS: TCP accept failed"),
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

async fn serve_tcp_connection(mut stream: TcpStream, zone: Arc<RwLock<HashMap<String, Node>>>) {
    // RFC 1035 §4.2.2 / RFC 7766: each message is prefixed by its 2-byte length.
    loop {
        let Ok(len) = stream.read_u16().await else {
            return;
        };
        let mut request = vec![0u8; usize::from(len)];
        if stream.read_exact(&mut request).await.is_err() {
            return;
        }
        let Some(response) = handle(&request, &zone, Transport::Tcp) else {
            continue;
        };
        let Ok(len) = u16::try_from(response.len()) else {
            return;
        };
        let mut framed = Vec::with_capacity(response.len() + 2);
        framed.extend_from_slice(&len.to_be_bytes());
        framed.extend_from_slice(&response);
        if stream.write_all(&framed).await.is_err() {
            return;
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Transport {
    Udp,
    Tcp,
}

/// Turns one request into the wire bytes of its response, or `None` when the
/// packet is not worth answering (not a query, or too short to carry an id).
fn handle(
    request: &[u8],
    zone: &RwLock<HashMap<String, Node>>,
    transport: Transport,
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
    // AA: we are the authority for everything we hold. RA: resolvers that
    // query us as their "recursive" upstream expect it (hickory accepts either).
    response.metadata.authoritative = true;
    response.metadata.recursion_available = true;
    if let Some(edns) = &request.edns {
        let mut ours = Edns::new();
        ours.set_max_payload(edns.max_payload().max(512));
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
        let zone = zone.read().unwrap_or_else(|p| p.into_inner());
        let (code, answers) = answer(&zone, query.name(), query.query_type());
        response.metadata.response_code = code;
        if answers.is_empty() {
            // RFC 2308 §3: a negative answer carries the zone's SOA.
            if let Some(soa) = enclosing_soa(&zone, &normalize(&query.name().to_ascii())) {
                response.add_authority(soa);
            }
        }
        response.add_answers(answers);
    }

    let bytes = response.to_vec().ok()?;
    let limit = match (&request.edns, transport) {
        (_, Transport::Tcp) => usize::from(u16::MAX),
        (Some(edns), Transport::Udp) => usize::from(edns.max_payload().max(512)),
        (None, Transport::Udp) => 512,
    };
    if bytes.len() > limit {
        // RFC 1035 §4.2.1: too big for UDP, set TC so the client retries over TCP.
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

    fn resolver_for(dns: &MemoryDns, tcp_only: bool) -> TokioResolver {
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

    async fn started() -> MemoryDns {
        MemoryDns::start("127.0.0.1:0".parse().unwrap())
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
