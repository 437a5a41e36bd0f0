//! http-01 (RFC 8555 §8.3; RFC 8738 §3 for IP identifiers): GET
//! `http://<host>/.well-known/acme-challenge/<token>` and compare the body
//! with the key authorization. Redirects are followed (at most
//! [`MAX_REDIRECTS`]), each hop checked like the first request. Bodies are
//! read up to [`MAX_BODY`] bytes and never quoted back.

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::{Request, StatusCode, header};
use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::TlsConnector;
use url::Url;

use super::target::{Host, io_reason};
use super::{Failure, Validator};
use crate::error::ErrorKind;
use crate::policy::{Identifier, IdentifierKind};

/// Redirects followed before giving up (as Let's Encrypt does).
const MAX_REDIRECTS: usize = 10;
/// The key authorization is under 200 bytes; anything much larger is not one.
const MAX_BODY: usize = 8 * 1024;

const USER_AGENT: &str = concat!("acmehub-validation/", env!("CARGO_PKG_VERSION"));

/// What one HTTP exchange told us.
struct Fetched {
    status: StatusCode,
    location: Option<String>,
    /// Read only for 200 responses.
    body: Vec<u8>,
}

impl Validator {
    pub(super) async fn http01(
        &self,
        identifier: &Identifier,
        token: &str,
        key_authorization: &str,
    ) -> Result<(), Failure> {
        let host = match identifier.kind {
            IdentifierKind::Dns => identifier.value.clone(),
            // RFC 8738 §3 / RFC 3986 §3.2.2: IPv6 literals go in brackets.
            IdentifierKind::Ip => match identifier.ip_addr() {
                Some(std::net::IpAddr::V6(v6)) => format!("[{v6}]"),
                _ => identifier.value.clone(),
            },
        };
        let first = Url::parse(&format!(
            "http://{host}:{}/.well-known/acme-challenge/{token}",
            self.http01_port
        ))
        .map_err(|_| {
            Failure::permanent(
                ErrorKind::Malformed,
                format!("cannot build the http-01 URL for {}", identifier.value),
            )
        })?;

        let mut url = first.clone();
        let mut redirects = 0;
        loop {
            let fetched = self.fetch(&url).await?;
            if is_redirect(fetched.status) {
                if let Some(location) = &fetched.location {
                    let next = url.join(location).map_err(|_| {
                        Failure::permanent(
                            ErrorKind::Connection,
                            format!(
                                "{url} redirected to an invalid URL while validating {}",
                                identifier.value
                            ),
                        )
                    })?;
                    if redirects == MAX_REDIRECTS {
                        return Err(Failure::permanent(
                            ErrorKind::Connection,
                            format!(
                                "{first} redirected more than {MAX_REDIRECTS} times while validating {}; the last hop pointed to {next}",
                                identifier.value
                            ),
                        ));
                    }
                    self.check_redirect(&url, &next, identifier)?;
                    redirects += 1;
                    url = next;
                    continue;
                }
            }
            if fetched.status != StatusCode::OK {
                return Err(Failure::permanent(
                    ErrorKind::Unauthorized,
                    format!(
                        "the server at {url} answered HTTP {} for the challenge URL of {}; it must answer 200 with the key authorization",
                        fetched.status.as_u16(),
                        identifier.value
                    ),
                ));
            }
            // RFC 8555 §8.3: the body is the key authorization; surrounding
            // whitespace (a trailing newline from `echo`) is tolerated.
            let body = fetched.body.trim_ascii();
            if body != key_authorization.as_bytes() {
                return Err(Failure::permanent(
                    ErrorKind::IncorrectResponse,
                    format!(
                        "the body at {url} ({} bytes) is not the expected key authorization for token {token} of {}",
                        fetched.body.len(),
                        identifier.value
                    ),
                ));
            }
            return Ok(());
        }
    }

    /// RFC 8555 §8.3 lets a server redirect; we allow only what a CA would
    /// (Let's Encrypt follows redirects to ports 80 and 443 only): http or
    /// https, to the standard ports (or the configured ones, for labs), and
    /// the target policy applies again when the hop is dialed.
    fn check_redirect(&self, from: &Url, to: &Url, identifier: &Identifier) -> Result<(), Failure> {
        if to.scheme() != "http" && to.scheme() != "https" {
            return Err(Failure::permanent(
                ErrorKind::Connection,
                format!(
                    "{from} redirected to {to} while validating {}; only http and https redirects are followed: refused by policy",
                    identifier.value
                ),
            ));
        }
        let port = to.port_or_known_default().unwrap_or(0);
        let allowed = [80, 443, self.http01_port, self.tlsalpn01_port];
        if !allowed.contains(&port) {
            return Err(Failure::permanent(
                ErrorKind::Connection,
                format!(
                    "{from} redirected to {to} while validating {}; redirects may only go to port 80 or 443: port {port} refused by policy",
                    identifier.value
                ),
            ));
        }
        if to.host().is_none() {
            return Err(Failure::permanent(
                ErrorKind::Connection,
                format!(
                    "{from} redirected to {to}, which has no host, while validating {}",
                    identifier.value
                ),
            ));
        }
        Ok(())
    }

    /// One GET of `url`: connect (with the address rules), TLS for https,
    /// HTTP/1.1, and the body when the status is 200.
    async fn fetch(&self, url: &Url) -> Result<Fetched, Failure> {
        let host = match url.host() {
            Some(url::Host::Domain(d)) => Host::Name(d.to_string()),
            Some(url::Host::Ipv4(v4)) => Host::Ip(v4.into()),
            Some(url::Host::Ipv6(v6)) => Host::Ip(v6.into()),
            None => {
                return Err(Failure::permanent(
                    ErrorKind::Connection,
                    format!("{url} has no host"),
                ));
            }
        };
        let port = url.port_or_known_default().unwrap_or(80);
        let (tcp, addr) = self.connect(&host, port, url.as_str()).await?;

        let host_header = match (url.host_str(), url.port()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_string(),
            (None, _) => String::new(),
        };
        let path = match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_string(),
        };
        let request = Request::get(path)
            .header(header::HOST, host_header)
            .header(header::USER_AGENT, USER_AGENT)
            .header(header::ACCEPT, "*/*")
            .header(header::CONNECTION, "close")
            .body(Empty::<Bytes>::new())
            .map_err(|_| {
                Failure::permanent(
                    ErrorKind::Malformed,
                    format!("cannot build a request for {url}"),
                )
            })?;

        if url.scheme() == "https" {
            let server_name = match &host {
                Host::Name(n) => ServerName::try_from(n.clone()).map_err(|_| {
                    Failure::permanent(
                        ErrorKind::Tls,
                        format!("{n:?} cannot be used as a TLS server name"),
                    )
                })?,
                Host::Ip(ip) => ServerName::IpAddress((*ip).into()),
            };
            let tls = TlsConnector::from(self.https_client.clone())
                .connect(server_name, tcp)
                .await
                .map_err(|e| tls_failure(&e, addr, url.as_str()))?;
            exchange(tls, request, url, addr).await
        } else {
            exchange(tcp, request, url, addr).await
        }
    }
}

/// A TLS handshake failure: protocol errors are the host's to fix (not
/// retried); I/O errors are connection trouble (retried).
pub(super) fn tls_failure(
    e: &std::io::Error,
    addr: std::net::SocketAddr,
    purpose: &str,
) -> Failure {
    if e.kind() == std::io::ErrorKind::InvalidData {
        Failure::permanent(
            ErrorKind::Tls,
            format!("the TLS handshake with {addr} for {purpose} failed: {e}"),
        )
    } else {
        Failure::transient(
            ErrorKind::Connection,
            format!(
                "the TLS handshake with {addr} for {purpose} failed: {}",
                io_reason(e)
            ),
        )
    }
}

fn is_redirect(status: StatusCode) -> bool {
    matches!(status.as_u16(), 301 | 302 | 303 | 307 | 308)
}

async fn exchange<S>(
    io: S,
    request: Request<Empty<Bytes>>,
    url: &Url,
    addr: std::net::SocketAddr,
) -> Result<Fetched, Failure>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let broken = |e: hyper::Error| {
        Failure::transient(
            ErrorKind::Connection,
            format!("the HTTP exchange with {addr} for {url} failed: {e}"),
        )
    };
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(broken)?;
    // The connection task must not outlive this exchange, even when the
    // attempt times out and this future is dropped.
    let _driver = AbortOnDrop(tokio::spawn(async move {
        let _ = connection.await;
    }));
    let response = sender.send_request(request).await.map_err(broken)?;
    let status = response.status();
    let location = response
        .headers()
        .get(header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    if status != StatusCode::OK {
        return Ok(Fetched {
            status,
            location,
            body: Vec::new(),
        });
    }
    let too_large = || {
        Failure::permanent(
            ErrorKind::IncorrectResponse,
            format!(
                "the body at {url} is larger than {MAX_BODY} bytes; it must contain only the key authorization"
            ),
        )
    };
    let declared = response
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > MAX_BODY as u64) {
        return Err(too_large());
    }
    let mut body = response.into_body();
    let mut buf = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(broken)?;
        if let Ok(data) = frame.into_data() {
            // Stop reading as soon as the limit is passed: a host must not be
            // able to make us buffer an arbitrarily large body.
            if buf.len() + data.len() > MAX_BODY {
                return Err(too_large());
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok(Fetched {
        status,
        location,
        body: buf,
    })
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::super::{ChallengeType, Validator};
    use crate::error::ErrorKind;
    use crate::policy::Identifier;
    use axum::Router;
    use axum::http::{HeaderMap, StatusCode, header};
    use axum::response::IntoResponse;
    use axum::routing::get;

    const TOKEN: &str = "evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA";
    const KEY_AUTH: &str =
        "evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA.nP1qzpXGymHBrUEepNY9HCsQk7K8KhOypzEt62jcerQ";
    const PATH: &str = "/.well-known/acme-challenge/evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA";

    struct Setup {
        _dns: crate::zone::authoritative::AuthoritativeServer,
        validator: Validator,
        port: u16,
    }

    /// A lab where www.example.com and other.example.com point at a local
    /// HTTP server running `router`, and http01_port is that server's port.
    async fn setup(router: Router) -> Setup {
        let dns = lab_dns().await;
        let addr = serve_http(router).await;
        for name in ["www.example.com", "other.example.com"] {
            dns.set_a(name, &[addr.ip()]);
        }
        let mut config = lab_config(&dns);
        config.http01_port = addr.port();
        Setup {
            validator: Validator::new(&config).unwrap(),
            _dns: dns,
            port: addr.port(),
        }
    }

    async fn validate(setup: &Setup, name: &str) -> Result<(), crate::error::Error> {
        let identifier = Identifier::dns(name).unwrap();
        setup
            .validator
            .validate(ChallengeType::Http01, &identifier, TOKEN, KEY_AUTH, "")
            .await
    }

    #[tokio::test]
    async fn valid_key_authorization_with_trailing_newline_passes() {
        let router = Router::new().route(
            PATH,
            get(|headers: HeaderMap| async move {
                // The Host header names the identifier (RFC 8555 §8.3).
                let host = headers
                    .get(header::HOST)
                    .and_then(|h| h.to_str().ok())
                    .unwrap_or("");
                if host.starts_with("www.example.com") {
                    format!("{KEY_AUTH}\n").into_response()
                } else {
                    StatusCode::MISDIRECTED_REQUEST.into_response()
                }
            }),
        );
        let s = setup(router).await;
        validate(&s, "www.example.com").await.unwrap();
    }

    #[tokio::test]
    async fn ip_identifier_is_fetched_by_address() {
        let s = setup(challenge_router(TOKEN, KEY_AUTH)).await;
        let ip = Identifier::ip("127.0.0.1").unwrap();
        s.validator
            .validate(ChallengeType::Http01, &ip, TOKEN, KEY_AUTH, "")
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn wrong_body_is_incorrect_and_not_echoed() {
        let router = Router::new().route(PATH, get(|| async { "SECRET-PAGE-CONTENT" }));
        let s = setup(router).await;
        let err = validate(&s, "www.example.com").await.unwrap_err();
        assert_eq!(err.kind, ErrorKind::IncorrectResponse);
        assert!(
            !err.detail.contains("SECRET-PAGE-CONTENT"),
            "body echoed: {}",
            err.detail
        );
        assert!(err.detail.contains("www.example.com"), "{}", err.detail);
    }

    #[tokio::test]
    async fn not_found_is_unauthorized_and_names_the_url() {
        let s = setup(Router::new()).await;
        let err = validate(&s, "www.example.com").await.unwrap_err();
        assert_eq!(err.kind, ErrorKind::Unauthorized);
        assert!(err.detail.contains("HTTP 404"), "{}", err.detail);
        assert!(
            err.detail
                .contains(&format!("http://www.example.com:{}{PATH}", s.port)),
            "{}",
            err.detail
        );
    }

    #[tokio::test]
    async fn oversized_body_is_refused() {
        let router = Router::new().route(
            PATH,
            get(|| async { format!("{KEY_AUTH}{}", " ".repeat(9000)) }),
        );
        let s = setup(router).await;
        let err = validate(&s, "www.example.com").await.unwrap_err();
        assert_eq!(err.kind, ErrorKind::IncorrectResponse);
        assert!(err.detail.contains("larger than"), "{}", err.detail);
    }

    #[tokio::test]
    async fn redirect_chain_to_another_name_is_followed() {
        let router = Router::new()
            .route(
                PATH,
                get(|| async { axum::response::Redirect::temporary("/step2") }),
            )
            .route(
                "/step2",
                get(|headers: HeaderMap| async move {
                    let port = headers
                        .get(header::HOST)
                        .and_then(|h| h.to_str().ok())
                        .and_then(|h| h.rsplit(':').next())
                        .unwrap_or("80")
                        .to_string();
                    axum::response::Redirect::permanent(&format!(
                        "http://other.example.com:{port}/final"
                    ))
                }),
            )
            .route(
                "/final",
                get(|headers: HeaderMap| async move {
                    let host = headers
                        .get(header::HOST)
                        .and_then(|h| h.to_str().ok())
                        .unwrap_or("");
                    if host.starts_with("other.example.com") {
                        KEY_AUTH.into_response()
                    } else {
                        StatusCode::MISDIRECTED_REQUEST.into_response()
                    }
                }),
            );
        let s = setup(router).await;
        validate(&s, "www.example.com").await.unwrap();
    }

    #[tokio::test]
    async fn redirect_loop_stops_after_ten_hops() {
        let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = hits.clone();
        let router = Router::new()
            .route(
                PATH,
                get(|| async { axum::response::Redirect::temporary("/loop") }),
            )
            .route(
                "/loop",
                get(move || {
                    counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    async { axum::response::Redirect::temporary("/loop") }
                }),
            );
        let s = setup(router).await;
        let err = validate(&s, "www.example.com").await.unwrap_err();
        assert_eq!(err.kind, ErrorKind::Connection);
        assert!(err.detail.contains("more than 10"), "{}", err.detail);
        assert_eq!(
            hits.load(std::sync::atomic::Ordering::SeqCst),
            10,
            "ten redirects were followed"
        );
    }

    #[tokio::test]
    async fn redirect_to_a_forbidden_port_is_refused() {
        let router = Router::new().route(
            PATH,
            get(|| async {
                axum::response::Redirect::temporary("http://other.example.com:8081/x")
            }),
        );
        let s = setup(router).await;
        let err = validate(&s, "www.example.com").await.unwrap_err();
        assert_eq!(err.kind, ErrorKind::Connection);
        assert!(err.detail.contains(":8081"), "{}", err.detail);
        assert!(err.detail.contains("port 80 or 443"), "{}", err.detail);
        assert!(err.detail.contains("refused by policy"), "{}", err.detail);
    }

    /// A page that redirects the challenge URL to `target` (port 80, which
    /// redirects may use).
    fn redirect_to(target: &'static str) -> Router {
        Router::new().route(
            PATH,
            get(move || async move {
                axum::response::Redirect::temporary(&format!("http://{target}/latest/meta-data/"))
            }),
        )
    }

    #[tokio::test]
    async fn redirects_to_addresses_that_are_never_targets_are_refused_by_policy() {
        // Private targets are allowed here (the lab default): these
        // addresses are refused whatever the instance says.
        for (target, address, rule) in [
            ("169.254.169.254", "169.254.169.254", "link-local"),
            ("[fe80::1]", "fe80::1", "link-local"),
            ("0.0.0.0", "0.0.0.0", "unspecified"),
            ("224.0.0.1", "224.0.0.1", "multicast"),
            ("255.255.255.255", "255.255.255.255", "broadcast"),
            ("[::ffff:169.254.169.254]", "169.254.169.254", "link-local"),
            ("[::]", "::", "unspecified"),
            ("[ff02::1]", "ff02::1", "multicast"),
        ] {
            let s = setup(redirect_to(target)).await;
            let err = validate(&s, "www.example.com").await.unwrap_err();
            assert_eq!(err.kind, ErrorKind::Connection, "{target}: {}", err.detail);
            assert!(
                err.detail
                    .contains(&format!("{address} is {rule}: refused by policy")),
                "{target}: {}",
                err.detail
            );
        }
    }

    #[tokio::test]
    async fn names_that_resolve_to_metadata_addresses_are_refused_at_every_hop() {
        let s = setup(Router::new().route(
            PATH,
            get(|| async { axum::response::Redirect::temporary("http://metadata.example.com/x") }),
        ))
        .await;
        s._dns.set_a(
            "metadata.example.com",
            &["169.254.169.254".parse().unwrap()],
        );
        let err = validate(&s, "www.example.com").await.unwrap_err();
        assert!(
            err.detail
                .contains("169.254.169.254 is link-local: refused by policy"),
            "{}",
            err.detail
        );
        // And as the identifier itself, on the first request.
        let ip = Identifier::ip("169.254.169.254").unwrap();
        let err = s
            .validator
            .validate(ChallengeType::Http01, &ip, TOKEN, KEY_AUTH, "")
            .await
            .unwrap_err();
        assert!(err.detail.contains("refused by policy"), "{}", err.detail);
        assert!(!err.detail.contains("HTTP "), "{}", err.detail);
    }

    #[tokio::test]
    async fn the_hubs_own_listener_is_never_a_target() {
        let s = setup(challenge_router(TOKEN, KEY_AUTH)).await;
        let own: std::net::SocketAddr = format!("127.0.0.1:{}", s.port).parse().unwrap();
        let hub = s
            .validator
            .clone()
            .with_own_listeners(vec![(own, "HTTPS listener")]);
        let err = validate_with(&hub, "www.example.com").await.unwrap_err();
        assert!(
            err.detail.contains(&format!(
                "127.0.0.1:{} is the hub's own HTTPS listener: refused by policy",
                s.port
            )),
            "{}",
            err.detail
        );
        // Bound to a wildcard address, the listener is every local address
        // on its port.
        let wildcard: std::net::SocketAddr = format!("0.0.0.0:{}", s.port).parse().unwrap();
        let hub = s
            .validator
            .clone()
            .with_own_listeners(vec![(wildcard, "HTTPS listener")]);
        let err = validate_with(&hub, "www.example.com").await.unwrap_err();
        assert!(err.detail.contains("refused by policy"), "{}", err.detail);
        // Another port of the same host is not the hub.
        let elsewhere: std::net::SocketAddr = "0.0.0.0:1".parse().unwrap();
        let hub = s
            .validator
            .clone()
            .with_own_listeners(vec![(elsewhere, "HTTPS listener")]);
        validate_with(&hub, "www.example.com").await.unwrap();
    }

    async fn validate_with(v: &Validator, name: &str) -> Result<(), crate::error::Error> {
        let identifier = Identifier::dns(name).unwrap();
        v.validate(ChallengeType::Http01, &identifier, TOKEN, KEY_AUTH, "")
            .await
    }

    #[tokio::test]
    async fn redirect_to_another_scheme_is_refused() {
        let router = Router::new().route(
            PATH,
            get(|| async { axum::response::Redirect::temporary("ftp://other.example.com/x") }),
        );
        let s = setup(router).await;
        let err = validate(&s, "www.example.com").await.unwrap_err();
        assert!(err.detail.contains("only http and https"), "{}", err.detail);
    }

    #[tokio::test]
    async fn https_redirect_hop_accepts_a_self_signed_certificate() {
        let dns = lab_dns().await;
        let https = serve_https(
            Router::new().route("/secure", get(|| async { KEY_AUTH })),
            "other.example.com",
        )
        .await;
        let tls_port = https.port();
        let http = serve_http(Router::new().route(
            PATH,
            get(move || async move {
                axum::response::Redirect::temporary(&format!(
                    "https://other.example.com:{tls_port}/secure"
                ))
            }),
        ))
        .await;
        dns.set_a("www.example.com", &[http.ip()]);
        dns.set_a("other.example.com", &[https.ip()]);
        let mut config = lab_config(&dns);
        config.http01_port = http.port();
        // Redirects may target the configured tls-alpn-01 port as well.
        config.tlsalpn01_port = tls_port;
        let v = Validator::new(&config).unwrap();
        let identifier = Identifier::dns("www.example.com").unwrap();
        v.validate(ChallengeType::Http01, &identifier, TOKEN, KEY_AUTH, "")
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn connection_refused_names_address_and_port() {
        let dns = lab_dns().await;
        dns.set_a("www.example.com", &["127.0.0.1".parse().unwrap()]);
        let port = free_port().await;
        let mut config = lab_config(&dns);
        config.http01_port = port;
        let v = Validator::new(&config).unwrap();
        let identifier = Identifier::dns("www.example.com").unwrap();
        let err = v
            .validate(ChallengeType::Http01, &identifier, TOKEN, KEY_AUTH, "")
            .await
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::Connection);
        assert!(
            err.detail.contains(&format!("127.0.0.1:{port}")),
            "{}",
            err.detail
        );
        assert!(err.detail.contains("refused"), "{}", err.detail);
    }

    #[tokio::test]
    async fn private_targets_are_refused_when_the_instance_forbids_them() {
        let s = setup(challenge_router(TOKEN, KEY_AUTH)).await;
        let strict = s.validator.clone().with_private_targets(false);
        let identifier = Identifier::dns("www.example.com").unwrap();
        let err = strict
            .validate(ChallengeType::Http01, &identifier, TOKEN, KEY_AUTH, "")
            .await
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::Connection);
        assert!(
            err.detail
                .contains("127.0.0.1 is loopback: refused by policy"),
            "{}",
            err.detail
        );
        // The same lab passes when private targets are allowed (the default).
        s.validator
            .validate(ChallengeType::Http01, &identifier, TOKEN, KEY_AUTH, "")
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn unknown_name_is_a_dns_error() {
        let s = setup(challenge_router(TOKEN, KEY_AUTH)).await;
        let err = validate(&s, "missing.example.net").await.unwrap_err();
        assert_eq!(err.kind, ErrorKind::Dns);
        assert!(err.detail.contains("NXDOMAIN"), "{}", err.detail);
    }
}
