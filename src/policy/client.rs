//! Which address a request comes from: the connection's peer, or, behind a
//! trusted proxy (`trusted_proxies`), the address the proxy saw. Rate
//! limits, sign-in throttles and audit events count by it.

use std::net::SocketAddr;

/// The peer address of a request's connection, set by the accept loop.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub SocketAddr);

/// The client's address: the peer, or, when the peer is a trusted proxy, the
/// right-most `X-Forwarded-For` entry that is not itself a trusted proxy
/// (entries to its left are whatever the client claimed).
pub fn client_ip(
    trusted: &[super::Pattern],
    peer: std::net::IpAddr,
    headers: &axum::http::HeaderMap,
) -> std::net::IpAddr {
    let is_trusted = |ip: std::net::IpAddr| {
        let id = super::Identifier::from_ip(ip.to_canonical());
        trusted.iter().any(|p| p.allows(&id))
    };
    if !is_trusted(peer) {
        return peer;
    }
    let hops: Vec<std::net::IpAddr> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|hop| hop.trim().parse().ok())
        .collect();
    hops.into_iter()
        .rev()
        .find(|ip| !is_trusted(*ip))
        .unwrap_or(peer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let trusted = vec![super::super::Pattern::parse("10.0.0.0/8").unwrap()];
        let mut headers = axum::http::HeaderMap::new();
        headers.insert(
            "x-forwarded-for",
            "203.0.113.9, 198.51.100.7, 10.0.0.5".parse().unwrap(),
        );
        let proxy: std::net::IpAddr = "10.1.2.3".parse().unwrap();
        let stranger: std::net::IpAddr = "192.0.2.1".parse().unwrap();
        // Through the proxy: the last untrusted hop, not what the client claimed first.
        assert_eq!(
            client_ip(&trusted, proxy, &headers),
            "198.51.100.7".parse::<std::net::IpAddr>().unwrap()
        );
        // From anyone else the header means nothing.
        assert_eq!(client_ip(&trusted, stranger, &headers), stranger);
        assert_eq!(client_ip(&[], proxy, &headers), proxy);
        // A proxy that sends no header is the client.
        assert_eq!(
            client_ip(&trusted, proxy, &axum::http::HeaderMap::new()),
            proxy
        );
    }
}
