//! A loopback lab for validation tests: a AuthoritativeServer as the only resolver,
//! small HTTP/HTTPS/TLS servers, fast timeouts and a single attempt.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::routing::get;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::config::ValidationConfig;
use crate::zone::authoritative::AuthoritativeServer;

pub async fn lab_dns() -> AuthoritativeServer {
    AuthoritativeServer::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap()
}

/// One fast attempt, private targets allowed (everything here is loopback),
/// CAA identity `acmehub.local`.
pub fn lab_config(dns: &AuthoritativeServer) -> ValidationConfig {
    ValidationConfig {
        resolvers: vec![dns.addr().to_string()],
        http01_port: 80,
        tlsalpn01_port: 443,
        allow_private_targets: true,
        attempt_timeout_secs: 3,
        attempts: 1,
        retry_delay_ms: 10,
        caa_identities: vec!["acmehub.local".to_string()],
        ..ValidationConfig::default()
    }
}

/// A loopback port with nothing listening on it (at the time of asking).
pub async fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap().port()
}

/// Serves the http-01 resource for `token`.
pub fn challenge_router(token: &str, key_authorization: &str) -> Router {
    let body = key_authorization.to_string();
    Router::new().route(
        &format!("/.well-known/acme-challenge/{token}"),
        get(move || async move { body }),
    )
}

pub async fn serve_http(router: Router) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    addr
}

pub async fn serve_http_on(port: u16, router: Router) {
    let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
}

/// Odd server behaviours for tls-alpn-01 tests.
#[derive(Debug, Clone, Copy, Default)]
pub struct TlsQuirks {
    /// Offer TLS 1.2 only.
    pub tls12_only: bool,
    /// Sign the handshake with a key that is not the certificate's.
    pub wrong_key: bool,
}

fn server_config(
    sans: &[&str],
    acme_digest: Option<[u8; 32]>,
    alpn: Vec<Vec<u8>>,
    quirks: TlsQuirks,
) -> rustls::ServerConfig {
    let mut params =
        rcgen::CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .unwrap();
    if let Some(digest) = acme_digest {
        params
            .custom_extensions
            .push(rcgen::CustomExtension::new_acme_identifier(&digest));
    }
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    // `with_single_cert` parses the certificate with webpki, which refuses the
    // critical acmeIdentifier extension; a fixed resolver skips that check.
    let handshake_key = if quirks.wrong_key {
        rcgen::KeyPair::generate().unwrap()
    } else {
        key
    };
    let signing_key = provider
        .key_provider
        .load_private_key(PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
            handshake_key.serialize_der(),
        )))
        .unwrap();
    let certified = rustls::sign::CertifiedKey::new(
        vec![CertificateDer::from(cert.der().to_vec())],
        signing_key,
    );
    let versions: &[&'static rustls::SupportedProtocolVersion] = if quirks.tls12_only {
        &[&rustls::version::TLS12]
    } else {
        &[&rustls::version::TLS13, &rustls::version::TLS12]
    };
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .unwrap()
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(FixedCert(Arc::new(certified))));
    config.alpn_protocols = alpn;
    config
}

#[derive(Debug)]
struct FixedCert(Arc<rustls::sign::CertifiedKey>);

impl rustls::server::ResolvesServerCert for FixedCert {
    fn resolve(
        &self,
        _hello: rustls::server::ClientHello<'_>,
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(self.0.clone())
    }
}

/// HTTPS with a self-signed certificate for `name`.
pub async fn serve_https(router: Router, name: &str) -> SocketAddr {
    let acceptor = TlsAcceptor::from(Arc::new(server_config(
        &[name],
        None,
        vec![b"http/1.1".to_vec()],
        TlsQuirks::default(),
    )));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let router = router.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), TowerToHyperService::new(router))
                    .await;
            });
        }
    });
    addr
}

/// A tls-alpn-01 responder: completes handshakes with a certificate for
/// `sans` (with an acmeIdentifier over `acme_digest` when given), offering
/// ALPN `acme-tls/1` only when `alpn` is set.
pub async fn serve_tls_alpn(
    sans: &[&str],
    acme_digest: Option<[u8; 32]>,
    alpn: bool,
    quirks: TlsQuirks,
) -> SocketAddr {
    let protocols = if alpn {
        vec![b"acme-tls/1".to_vec()]
    } else {
        Vec::new()
    };
    let acceptor = TlsAcceptor::from(Arc::new(server_config(
        sans,
        acme_digest,
        protocols,
        quirks,
    )));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                if let Ok(mut tls) = acceptor.accept(tcp).await {
                    // Hold the connection until the client closes it.
                    let mut buf = [0u8; 64];
                    let _ = tokio::io::AsyncReadExt::read(&mut tls, &mut buf).await;
                }
            });
        }
    });
    addr
}
