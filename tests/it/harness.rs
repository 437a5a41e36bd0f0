//! Starting a hub for a test: temp data dir, SQLite or a fresh PostgreSQL
//! schema, a test DNS server as the hub's resolver, and challenge responders.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use acmehub::config::{Config, FileConfig, Overrides, ValidationConfig};
use acmehub::hub::Hub;
use acmehub::server::Server;
use acmehub::zone::authoritative::AuthoritativeServer;
use tokio::net::TcpListener;

/// Which database a test hub runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Db {
    Sqlite,
    Postgres,
}

/// The databases to run a test on: SQLite always, PostgreSQL when
/// `ACMEHUB_TEST_DATABASE_URL` is set.
pub fn databases() -> Vec<Db> {
    match std::env::var("ACMEHUB_TEST_DATABASE_URL") {
        Ok(url) if !url.is_empty() => vec![Db::Sqlite, Db::Postgres],
        _ => {
            eprintln!(
                "notice: ACMEHUB_TEST_DATABASE_URL unset; PostgreSQL runs of this test skipped"
            );
            vec![Db::Sqlite]
        }
    }
}

pub struct TestHub {
    pub hub: Arc<Hub>,
    pub server: Option<Server>,
    pub _dir: tempfile::TempDir,
    pub dns: AuthoritativeServer,
    pub directory: String,
    pub root_pem: PathBuf,
    pub http01_port: u16,
    pub tlsalpn01_port: u16,
    pub base_url: String,
}

/// A free loopback TCP port (bound and released; fine for tests).
pub async fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap().port()
}

async fn postgres_url() -> String {
    use sqlx::Connection;
    let url = std::env::var("ACMEHUB_TEST_DATABASE_URL").unwrap();
    let schema = format!(
        "it_{}",
        acmehub::util::random_id().to_lowercase().replace('-', "_")
    );
    let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .execute(&mut conn)
        .await
        .unwrap();
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}options=-c%20search_path%3D{schema}")
}

/// A database for several hubs, as a URL: a fresh PostgreSQL schema, or
/// an SQLite file in the returned directory (hubs on it must take turns:
/// one process owns an SQLite file).
pub async fn shared_database(db: Db) -> (String, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let url = match db {
        Db::Sqlite => format!("sqlite://{}/shared.db", dir.path().display()),
        Db::Postgres => postgres_url().await,
    };
    (url, dir)
}

/// A master key (32 random bytes, base64) for hubs that share a database.
pub fn master_key() -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(acmehub::util::random_bytes::<32>())
}

impl TestHub {
    pub async fn start(db: Db) -> TestHub {
        Self::start_with(db, |_| {}).await
    }

    pub async fn start_with(db: Db, tweak: impl FnOnce(&mut FileConfig)) -> TestHub {
        let database_url = match db {
            Db::Sqlite => None,
            Db::Postgres => Some(postgres_url().await),
        };
        Self::launch(database_url, None, tweak).await
    }

    /// A hub with its own data directory on a database that other hubs
    /// use too (see [`shared_database`]), with the master key they share.
    pub async fn replica(database_url: &str, master_key: &str) -> TestHub {
        Self::replica_with(database_url, master_key, |_| {}).await
    }

    /// [`Self::replica`] with the config changed by `tweak`.
    pub async fn replica_with(
        database_url: &str,
        master_key: &str,
        tweak: impl FnOnce(&mut FileConfig),
    ) -> TestHub {
        Self::launch(Some(database_url.into()), Some(master_key.into()), tweak).await
    }

    async fn launch(
        database_url: Option<String>,
        master_key: Option<String>,
        tweak: impl FnOnce(&mut FileConfig),
    ) -> TestHub {
        let dir = tempfile::tempdir().unwrap();
        let dns = AuthoritativeServer::start(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0))
            .await
            .unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let http01_port = free_port().await;
        let tlsalpn01_port = free_port().await;
        let mut file = FileConfig {
            validation: ValidationConfig {
                resolvers: vec![dns.addr().to_string()],
                http01_port,
                tlsalpn01_port,
                attempts: 1,
                attempt_timeout_secs: 5,
                retry_delay_ms: 100,
                ..Default::default()
            },
            ..Default::default()
        };
        // The test DNS is every zone's authoritative server too.
        file.dns.authoritative_port = dns.addr().port();
        tweak(&mut file);
        let config = Config::resolve(
            file,
            Overrides {
                listen: Some(listener.local_addr().unwrap()),
                data_dir: Some(dir.path().to_path_buf()),
                database_url,
                master_key,
                ..Default::default()
            },
        )
        .unwrap();
        let base_url = config.public_url.clone();
        let hub = acmehub::bootstrap::open(config).await.unwrap();
        let server = Server::start(hub.clone(), listener).await.unwrap();
        TestHub {
            directory: format!("https://localhost:{port}/acme/default/directory"),
            root_pem: dir.path().join("ca").join("root.pem"),
            hub,
            server: Some(server),
            _dir: dir,
            dns,
            http01_port,
            tlsalpn01_port,
            base_url,
        }
    }

    /// An instant-acme account builder that trusts the hub's root.
    pub fn builder(&self) -> instant_acme::AccountBuilder {
        instant_acme::Account::builder_with_root(&self.root_pem).unwrap()
    }

    /// A fresh account on the default instance.
    pub async fn account(&self) -> instant_acme::Account {
        let (account, _) = self
            .builder()
            .create(
                &instant_acme::NewAccount {
                    contact: &["mailto:ops@example.test"],
                    terms_of_service_agreed: true,
                    only_return_existing: false,
                },
                self.directory.clone(),
                None,
            )
            .await
            .unwrap();
        account
    }

    /// An HTTPS client trusting the hub's root.
    pub fn http(&self) -> reqwest::Client {
        let root = std::fs::read(&self.root_pem).unwrap();
        reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&root).unwrap())
            .build()
            .unwrap()
    }

    /// The bootstrap admin token the hub wrote on first start.
    pub fn admin_token(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("admin-token"))
            .unwrap()
            .trim()
            .to_string()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    pub async fn stop(mut self) {
        if let Some(server) = self.server.take() {
            server.shutdown().await;
        }
    }
}

/// Serves http-01 key authorizations on 127.0.0.1:`port`.
pub struct Http01Responder {
    pub tokens: Arc<Mutex<std::collections::HashMap<String, String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Http01Responder {
    pub async fn start(port: u16) -> Self {
        use axum::extract::{Path, State};
        let tokens: Arc<Mutex<std::collections::HashMap<String, String>>> = Default::default();
        let app = axum::Router::new()
            .route(
                "/.well-known/acme-challenge/{token}",
                axum::routing::get(
                    |State(t): State<Arc<Mutex<std::collections::HashMap<String, String>>>>,
                     Path(token): Path<String>| async move {
                        match t.lock().unwrap().get(&token) {
                            Some(v) => (axum::http::StatusCode::OK, v.clone()),
                            None => (axum::http::StatusCode::NOT_FOUND, String::new()),
                        }
                    },
                ),
            )
            .with_state(tokens.clone());
        let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { tokens, task }
    }

    pub fn set(&self, token: &str, key_authorization: &str) {
        self.tokens
            .lock()
            .unwrap()
            .insert(token.to_string(), key_authorization.to_string());
    }
}

impl Drop for Http01Responder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Answers tls-alpn-01 (RFC 8737) on 127.0.0.1:`port` for one name.
pub struct TlsAlpnResponder {
    task: tokio::task::JoinHandle<()>,
}

impl TlsAlpnResponder {
    pub async fn start(port: u16, name: &str, key_authorization: &str) -> Self {
        use ring::digest;
        let digest = digest::digest(&digest::SHA256, key_authorization.as_bytes());
        let mut params = rcgen::CertificateParams::new(vec![name.to_string()]).unwrap();
        params.custom_extensions =
            vec![rcgen::CustomExtension::new_acme_identifier(digest.as_ref())];
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        // rustls refuses to load a certificate with the critical acmeIdentifier
        // extension through with_single_cert, so hand it over pre-built.
        let signing_key = provider
            .key_provider
            .load_private_key(rustls_pki_types::PrivateKeyDer::Pkcs8(
                key.serialize_der().into(),
            ))
            .unwrap();
        let certified = Arc::new(rustls::sign::CertifiedKey::new(
            vec![cert.der().clone()],
            signing_key,
        ));
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(OneCert(certified)));
        config.alpn_protocols = vec![b"acme-tls/1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    // The validator only needs the handshake.
                    if let Ok(mut tls) = acceptor.accept(tcp).await {
                        use tokio::io::AsyncWriteExt;
                        let _ = tls.shutdown().await;
                    }
                });
            }
        });
        Self { task }
    }
}

impl Drop for TlsAlpnResponder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Parses a PEM chain into DER certificates.
pub fn pem_chain(pem: &str) -> Vec<Vec<u8>> {
    use rustls_pki_types::pem::PemObject;
    rustls_pki_types::CertificateDer::pem_slice_iter(pem.as_bytes())
        .map(|c| c.unwrap().to_vec())
        .collect()
}

#[derive(Debug)]
struct OneCert(Arc<rustls::sign::CertifiedKey>);

impl rustls::server::ResolvesServerCert for OneCert {
    fn resolve(
        &self,
        _hello: rustls::server::ClientHello<'_>,
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(self.0.clone())
    }
}
