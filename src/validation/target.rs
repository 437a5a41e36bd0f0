//! Outbound safety: which addresses validation may dial, and dialing them.
//! Every connection the VA makes goes through [`Validator::connect`], so the
//! private-target rule holds for first requests and redirect hops alike.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use tokio::net::TcpStream;

use super::{Failure, LookupError, Validator};
use crate::error::ErrorKind;

/// Why `ip` is not a public unicast address, or `None` when it is. With
/// `allow_private_targets = false` validation refuses these: loopback,
/// private (RFC 1918, RFC 4193), shared (RFC 6598), link-local, unspecified,
/// multicast, broadcast, documentation and other reserved ranges, for IPv4,
/// IPv6 and IPv4-mapped IPv6.
pub fn forbidden_reason(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            // ::ffff:a.b.c.d reaches a.b.c.d: judge the IPv4 address.
            Some(v4) => forbidden_v4(v4),
            None => forbidden_v6(v6),
        },
    }
}

fn forbidden_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let o = ip.octets();
    if ip.is_loopback() {
        Some("a loopback address")
    } else if ip.is_private() {
        Some("a private address")
    } else if ip.is_link_local() {
        Some("a link-local address")
    } else if ip.is_unspecified() || o[0] == 0 {
        Some("an unspecified address")
    } else if ip.is_multicast() {
        Some("a multicast address")
    } else if ip.is_broadcast() {
        Some("the broadcast address")
    } else if ip.is_documentation() {
        Some("a documentation address")
    } else if o[0] == 100 && (o[1] & 0xc0) == 64 {
        Some("a shared (carrier-grade NAT) address")
    } else if o[0] == 198 && (o[1] & 0xfe) == 18 {
        Some("a benchmarking address")
    } else if o[0] == 192 && o[1] == 0 && o[2] == 0 {
        Some("an IETF protocol assignment address")
    } else if o[0] >= 240 {
        Some("a reserved address")
    } else {
        None
    }
}

fn forbidden_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let s = ip.segments();
    if ip.is_loopback() {
        Some("a loopback address")
    } else if ip.is_unspecified() {
        Some("an unspecified address")
    } else if ip.is_multicast() {
        Some("a multicast address")
    } else if (s[0] & 0xfe00) == 0xfc00 {
        Some("a private (unique local) address")
    } else if (s[0] & 0xffc0) == 0xfe80 || (s[0] & 0xffc0) == 0xfec0 {
        Some("a link-local address")
    } else if s[0] == 0x2001 && s[1] == 0x0db8 {
        Some("a documentation address")
    } else if s[..6] == [0, 0, 0, 0, 0, 0] {
        // IPv4-compatible (deprecated) addresses, ::a.b.c.d.
        Some("a reserved address")
    } else {
        None
    }
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
            match forbidden_reason(ip) {
                Some(why) if !self.allow_private_targets => refused = Some((ip, why)),
                _ => allowed.push(SocketAddr::new(ip, port)),
            }
        }
        if allowed.is_empty() {
            let (ip, why) = refused.unwrap_or((IpAddr::V4(Ipv4Addr::UNSPECIFIED), "no address"));
            return Err(Failure::permanent(
                ErrorKind::Connection,
                format!(
                    "refusing to connect to {ip} for {purpose}: it is {why}, and this instance does not validate private targets"
                ),
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
    fn private_and_reserved_addresses_are_named() {
        for (ip, expect) in [
            ("127.0.0.1", Some("a loopback address")),
            ("10.1.2.3", Some("a private address")),
            ("172.16.0.1", Some("a private address")),
            ("192.168.1.1", Some("a private address")),
            ("169.254.169.254", Some("a link-local address")),
            ("0.0.0.0", Some("an unspecified address")),
            ("224.0.0.1", Some("a multicast address")),
            ("192.0.2.10", Some("a documentation address")),
            ("100.64.0.1", Some("a shared (carrier-grade NAT) address")),
            ("::1", Some("a loopback address")),
            ("::", Some("an unspecified address")),
            ("fd00::1", Some("a private (unique local) address")),
            ("fe80::1", Some("a link-local address")),
            ("ff02::1", Some("a multicast address")),
            ("2001:db8::1", Some("a documentation address")),
            ("::ffff:10.0.0.1", Some("a private address")),
            ("::ffff:127.0.0.1", Some("a loopback address")),
            ("8.8.8.8", None),
            ("172.32.0.1", None),
            ("2606:4700::1111", None),
            ("::ffff:8.8.8.8", None),
        ] {
            assert_eq!(forbidden_reason(ip.parse().unwrap()), expect, "{ip}");
        }
    }
}
