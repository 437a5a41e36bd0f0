//! Outbound safety: which addresses the hub may dial for a customer, and
//! dialing them. Every connection the VA makes goes through
//! [`Validator::connect`], so one [`TargetPolicy`] holds for first requests
//! and redirect hops alike; notifications check their targets with it too.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;

use super::{Failure, LookupError, Validator};
use crate::error::ErrorKind;

/// What kind of non-public address an IP is, and whether any setting may
/// make it a target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddressClass {
    /// An adjective for errors: `169.254.169.254 is link-local`.
    pub rule: &'static str,
    /// Never a target, whatever the settings: link-local (cloud metadata
    /// lives there), unspecified (reaches the hub's own host), multicast
    /// and broadcast. The others are refused only where private targets are
    /// off.
    pub always: bool,
}

impl AddressClass {
    const fn always(rule: &'static str) -> Option<Self> {
        Some(Self { rule, always: true })
    }

    const fn private(rule: &'static str) -> Option<Self> {
        Some(Self {
            rule,
            always: false,
        })
    }
}

/// The class of `ip`, or `None` for a public unicast address. IPv4-mapped
/// (`::ffff:a.b.c.d`) and NAT64 (`64:ff9b::a.b.c.d`, RFC 6052) addresses
/// are judged by the IPv4 address they reach.
pub fn classify(ip: IpAddr) -> Option<AddressClass> {
    match embedded_v4(ip) {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

/// The address a connection to `ip` really reaches, for judging it.
fn embedded_v4(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return IpAddr::V4(v4);
            }
            let s = v6.segments();
            if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
                let o = v6.octets();
                return IpAddr::V4(Ipv4Addr::new(o[12], o[13], o[14], o[15]));
            }
            ip
        }
        v4 => v4,
    }
}

fn classify_v4(ip: Ipv4Addr) -> Option<AddressClass> {
    let o = ip.octets();
    if ip.is_link_local() {
        AddressClass::always("link-local")
    } else if o[0] == 0 {
        // 0.0.0.0/8, "this network" (RFC 791): 0.0.0.0 reaches this host.
        AddressClass::always("unspecified")
    } else if ip.is_multicast() {
        AddressClass::always("multicast")
    } else if ip.is_broadcast() {
        AddressClass::always("broadcast")
    } else if ip.is_loopback() {
        AddressClass::private("loopback")
    } else if ip.is_private() {
        AddressClass::private("private")
    } else if ip.is_documentation() {
        AddressClass::private("reserved for documentation")
    } else if o[0] == 100 && (o[1] & 0xc0) == 64 {
        AddressClass::private("shared (carrier-grade NAT)")
    } else if o[0] == 198 && (o[1] & 0xfe) == 18 {
        AddressClass::private("reserved for benchmarking")
    } else if o[0] == 192 && o[1] == 0 && o[2] == 0 {
        AddressClass::private("reserved for IETF protocol assignments")
    } else if o[0] >= 240 {
        AddressClass::private("reserved")
    } else {
        None
    }
}

fn classify_v6(ip: Ipv6Addr) -> Option<AddressClass> {
    let s = ip.segments();
    if ip.is_unspecified() {
        AddressClass::always("unspecified")
    } else if ip.is_multicast() {
        AddressClass::always("multicast")
    } else if (s[0] & 0xffc0) == 0xfe80 {
        AddressClass::always("link-local")
    } else if ip.is_loopback() {
        AddressClass::private("loopback")
    } else if (s[0] & 0xfe00) == 0xfc00 {
        AddressClass::private("private (unique local)")
    } else if (s[0] & 0xffc0) == 0xfec0 {
        AddressClass::private("site-local")
    } else if s[0] == 0x2001 && s[1] == 0x0db8 {
        AddressClass::private("reserved for documentation")
    } else if s[..6] == [0, 0, 0, 0, 0, 0] {
        // IPv4-compatible (deprecated) addresses, ::a.b.c.d.
        AddressClass::private("reserved")
    } else {
        None
    }
}

/// Which addresses a connection made for a customer may reach: never the
/// [`AddressClass::always`] ones nor the hub's own listeners; private ones
/// only when allowed. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct TargetPolicy {
    /// Private, loopback and other non-public unicast addresses may be reached.
    pub allow_private: bool,
    /// The hub's own listeners and what each is, e.g. "HTTPS listener".
    own: Arc<[(SocketAddr, &'static str)]>,
}

impl TargetPolicy {
    pub fn new(allow_private: bool, own: Vec<(SocketAddr, &'static str)>) -> Self {
        Self {
            allow_private,
            own: own.into(),
        }
    }

    /// The same policy with private targets allowed or not.
    pub fn with_private(&self, allow: bool) -> Self {
        Self {
            allow_private: allow,
            own: self.own.clone(),
        }
    }

    /// `Ok` when a connection to `target` is allowed; otherwise why not, as
    /// a sentence that names the address and the rule and ends "refused by
    /// policy" (nothing about what the target would have answered: it is
    /// not contacted).
    pub fn check(&self, target: SocketAddr) -> Result<(), String> {
        let ip = embedded_v4(target.ip());
        let class = classify(ip);
        if let Some(class) = class.filter(|c| c.always) {
            return Err(format!("{ip} is {}: refused by policy", class.rule));
        }
        if let Some(what) = self.own_listener(ip, target.port()) {
            return Err(format!(
                "{} is the hub's own {what}: refused by policy",
                SocketAddr::new(ip, target.port())
            ));
        }
        match class {
            Some(class) if !self.allow_private => Err(format!(
                "{ip} is {}: refused by policy (private targets are off for this instance)",
                class.rule
            )),
            _ => Ok(()),
        }
    }

    /// The listener of the hub's that `ip:port` reaches, if any. A listener
    /// bound to a wildcard address is every local address on its port.
    fn own_listener(&self, ip: IpAddr, port: u16) -> Option<&'static str> {
        self.own.iter().find_map(|(addr, what)| {
            let bound = embedded_v4(addr.ip());
            let same =
                addr.port() == port && (bound == ip || (bound.is_unspecified() && is_local(ip)));
            same.then_some(*what)
        })
    }
}

/// Whether `ip` is an address of this host: loopback, or one a socket can
/// bind (the kernel knows its own addresses; no packet is sent).
fn is_local(ip: IpAddr) -> bool {
    ip.is_loopback() || std::net::UdpSocket::bind(SocketAddr::new(ip, 0)).is_ok()
}

/// Where a URL or an identifier points: a name to resolve or an address.
#[derive(Debug, Clone)]
pub(super) enum Host {
    Name(String),
    Ip(IpAddr),
}

impl Validator {
    /// Resolves `host` with our resolver, drops the addresses the instance
    /// forbids, and connects to the others in turn (IPv6 first). `purpose`
    /// names what the connection is for, in error details.
    pub(super) async fn connect(
        &self,
        host: &Host,
        port: u16,
        purpose: &str,
    ) -> Result<(TcpStream, SocketAddr), Failure> {
        let addresses = match host {
            Host::Ip(ip) => vec![*ip],
            Host::Name(name) => self
                .resolver
                .lookup_ips(name)
                .await
                .map_err(|e| address_failure(name, purpose, e))?,
        };
        let mut allowed = Vec::new();
        let mut refused = None;
        for ip in addresses {
            let target = SocketAddr::new(ip, port);
            match self.policy.check(target) {
                Ok(()) => allowed.push(target),
                Err(why) => refused = Some(why),
            }
        }
        if allowed.is_empty() {
            let why = refused.unwrap_or_else(|| "no address".to_string());
            return Err(Failure::permanent(
                ErrorKind::Connection,
                format!("refusing to connect to {purpose}: {why}"),
            ));
        }
        // A host that swallows SYNs must not use up the whole attempt before
        // its other addresses get a chance.
        let per_address =
            (self.attempt_timeout / allowed.len().max(1) as u32).max(Duration::from_millis(500));
        let mut last = None;
        for addr in allowed {
            match tokio::time::timeout(per_address, TcpStream::connect(addr)).await {
                Ok(Ok(stream)) => return Ok((stream, addr)),
                Ok(Err(e)) => last = Some((addr, io_reason(&e))),
                Err(_) => last = Some((addr, "the connection timed out".to_string())),
            }
        }
        let (addr, why) = last.unwrap_or((
            SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port),
            String::new(),
        ));
        Err(Failure::transient(
            ErrorKind::Connection,
            format!("could not connect to {addr} for {purpose}: {why}"),
        ))
    }
}

/// A short, stable phrase for an I/O error (the OS text varies by platform).
pub(super) fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::ConnectionRefused => "the connection was refused".to_string(),
        std::io::ErrorKind::ConnectionReset => "the connection was reset".to_string(),
        std::io::ErrorKind::TimedOut => "the connection timed out".to_string(),
        std::io::ErrorKind::UnexpectedEof => "the connection was closed early".to_string(),
        _ => e.to_string(),
    }
}

fn address_failure(name: &str, purpose: &str, error: LookupError) -> Failure {
    match error {
        LookupError::NoSuchName { .. } => Failure::permanent(
            ErrorKind::Dns,
            format!("{name} does not exist in DNS (NXDOMAIN), so {purpose} cannot be reached"),
        ),
        LookupError::NoRecords { .. } => Failure::transient(
            ErrorKind::Dns,
            format!("{name} has no A or AAAA record, so {purpose} cannot be reached"),
        ),
        LookupError::InvalidName { .. } => Failure::permanent(
            ErrorKind::Dns,
            format!("{name:?} is not a valid DNS name, so {purpose} cannot be reached"),
        ),
        failed @ LookupError::Failed { .. } => Failure::transient(
            ErrorKind::Dns,
            format!("{failed}, so {purpose} cannot be reached"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_classed_and_the_dangerous_ones_always_refused() {
        let always = |rule| Some(AddressClass { rule, always: true });
        let private = |rule| {
            Some(AddressClass {
                rule,
                always: false,
            })
        };
        for (ip, expect) in [
            ("127.0.0.1", private("loopback")),
            ("10.1.2.3", private("private")),
            ("172.16.0.1", private("private")),
            ("192.168.1.1", private("private")),
            ("169.254.169.254", always("link-local")),
            ("0.0.0.0", always("unspecified")),
            ("0.1.2.3", always("unspecified")),
            ("224.0.0.1", always("multicast")),
            ("255.255.255.255", always("broadcast")),
            ("192.0.2.10", private("reserved for documentation")),
            ("100.64.0.1", private("shared (carrier-grade NAT)")),
            ("::1", private("loopback")),
            ("::", always("unspecified")),
            ("fd00::1", private("private (unique local)")),
            ("fe80::1", always("link-local")),
            ("ff02::1", always("multicast")),
            ("2001:db8::1", private("reserved for documentation")),
            ("::ffff:10.0.0.1", private("private")),
            ("::ffff:127.0.0.1", private("loopback")),
            ("::ffff:169.254.169.254", always("link-local")),
            ("::ffff:0.0.0.0", always("unspecified")),
            ("::ffff:224.0.0.1", always("multicast")),
            ("64:ff9b::a9fe:a9fe", always("link-local")),
            ("8.8.8.8", None),
            ("172.32.0.1", None),
            ("2606:4700::1111", None),
            ("::ffff:8.8.8.8", None),
        ] {
            assert_eq!(classify(ip.parse().unwrap()), expect, "{ip}");
        }
    }

    #[test]
    fn the_policy_names_the_address_and_the_rule() {
        let target = |s: &str| s.parse::<SocketAddr>().unwrap();
        let open = TargetPolicy::new(true, vec![(target("127.0.0.1:8443"), "HTTPS listener")]);
        assert_eq!(
            open.check(target("[::ffff:169.254.169.254]:80")),
            Err("169.254.169.254 is link-local: refused by policy".into())
        );
        assert_eq!(
            open.check(target("127.0.0.1:8443")),
            Err("127.0.0.1:8443 is the hub's own HTTPS listener: refused by policy".into())
        );
        assert_eq!(open.check(target("127.0.0.1:80")), Ok(()));
        assert_eq!(open.check(target("8.8.8.8:443")), Ok(()));
        let strict = open.with_private(false);
        let refused = strict.check(target("10.0.0.1:80")).unwrap_err();
        assert!(
            refused.starts_with("10.0.0.1 is private: refused by policy"),
            "{refused}"
        );
        assert_eq!(strict.check(target("8.8.8.8:443")), Ok(()));
        // A wildcard listener is every local address on its port.
        let wildcard = TargetPolicy::new(true, vec![(target("[::]:53"), "DNS listener")]);
        assert!(wildcard.check(target("127.0.0.1:53")).is_err());
        assert!(wildcard.check(target("127.0.0.1:54")).is_ok());
        assert!(wildcard.check(target("8.8.8.8:53")).is_ok());
    }
}
