//! Starting a hub: opens (and on first start creates) what it needs
//! (data directory, database, master key, the local CA, the nonce key, the
//! `default` instance, the admin token, the technical zone) and assembles
//! the running [`Hub`]; later starts reuse what is there. What replicas
//! must share lives in the database: the local CA (sealed with the master
//! key), a check that every replica has the same master key, and the nonce
//! key. Also the listener's TLS configuration.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use crate::ca::local::{CaFiles, LocalCa};
use crate::config::Config;
use crate::hub::{DEFAULT_INSTANCE, Hub, Parts};
use crate::nonce::Nonces;
use crate::secrets::MasterKey;
use crate::store::{Issuer, Store};
use crate::validation::Validator;

/// Failures while opening the hub.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    #[error("cannot prepare data directory {path}: {source}")]
    DataDir {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot open the database: {0}")]
    Store(#[from] crate::store::StoreError),
    #[error("cannot load or create the local CA: {0}")]
    Ca(#[from] crate::ca::local::CaError),
    #[error("{0}")]
    Setup(String),
}

/// Opens (and on first start creates) everything the hub needs.
pub async fn open(config: Config) -> Result<Arc<Hub>, HubError> {
    // dns-update brings aws-lc-rs into rustls as well; with two providers
    // compiled in, rustls needs a process default: ring, as everywhere here.
    let _ = rustls::crypto::ring::default_provider().install_default();
    create_private_dir(&config.data_dir)?;
    let store = Store::connect(&config.database_url).await?;
    let secrets = MasterKey::load(
        config.master_key.as_deref(),
        config.master_key_file.as_deref(),
        &config.data_dir,
    )
    .map_err(|e| HubError::Setup(e.to_string()))?;
    check_master_key(&store, &secrets).await?;
    let ca = shared_ca(&store, &secrets, &config.data_dir.join("ca")).await?;
    let nonces = Nonces::new(store.clone(), config.acme.nonce_lifetime_secs)
        .await
        .map_err(|e| HubError::Setup(e.detail))?;
    let default = store
        .ensure_instance(DEFAULT_INSTANCE, Issuer::Local)
        .await?;
    let admin_token = match &config.admin_token {
        Some(token) => token.trim().to_string(),
        None => {
            let path = config.data_dir.join("admin-token");
            ensure_admin_token(&path)?;
            std::fs::read_to_string(&path)
                .map_err(|source| HubError::DataDir {
                    path: path.display().to_string(),
                    source,
                })?
                .trim()
                .to_string()
        }
    };
    if admin_token.len() < 16 {
        return Err(HubError::Setup(
            "the admin token must be at least 16 characters".into(),
        ));
    }
    let admin_token_hash = crate::secrets::token_hash(&admin_token);
    let technical_zone = match &config.dns.technical_zone {
        Some(zone) => {
            let served = crate::zone::TechnicalZone::start(zone).await.map_err(|e| {
                HubError::Setup(format!(
                    "cannot serve the technical zone on {}: {e}",
                    zone.listen
                ))
            })?;
            served.reload(&store).await;
            Some(served)
        }
        None => None,
    };
    // A challenge or a notification must never make the hub talk to
    // itself: its listeners are never outbound targets.
    let mut own = vec![(config.listen, "HTTPS listener")];
    if let Some(zone) = &technical_zone {
        own.push((zone.addr(), "technical-zone DNS listener"));
    }
    let validator = Validator::new(&config.validation)
        .map_err(|e| HubError::Setup(e.detail))?
        .with_own_listeners(own);
    Ok(Arc::new(Hub::new(
        Parts {
            config,
            store,
            ca,
            validator,
            nonces,
            technical_zone,
            secrets,
            admin_token_hash,
        },
        default,
    )))
}

/// The TLS configuration of the listener: a certificate from the local CA
/// for localhost, 127.0.0.1, ::1 and the public URL's host.
pub fn tls_config(hub: &Hub) -> Result<rustls::ServerConfig, HubError> {
    let mut names = vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ];
    if let Some(host) = hub.config.public_host() {
        if !names.contains(&host) {
            names.push(host);
        }
    }
    let (chain, key) = hub.ca.listener_certificate(&names)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| HubError::Setup(format!("TLS setup: {e}")))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| HubError::Setup(format!("TLS certificate: {e}")))?;
    tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(tls)
}

/// A value sealed with the master key the database's secrets are sealed
/// with: a replica given another key refuses to start, rather than failing
/// later on every stored credential.
const MASTER_KEY_CHECK: &str = "master-key-check";

async fn check_master_key(store: &Store, key: &MasterKey) -> Result<(), HubError> {
    let proof = key.seal(MASTER_KEY_CHECK.as_bytes(), MASTER_KEY_CHECK);
    let stored = store.setting_or_insert(MASTER_KEY_CHECK, &proof).await?;
    match key.open(&stored, MASTER_KEY_CHECK) {
        Ok(plain) if plain == MASTER_KEY_CHECK.as_bytes() => Ok(()),
        _ => Err(HubError::Setup(
            "the master key is not the one this database's secrets are sealed with: every \
             hub on one database needs the same master key (ACMEHUB_MASTER_KEY or \
             master_key_file)"
                .into(),
        )),
    }
}

/// The setting holding the local CA's files, sealed.
const LOCAL_CA: &str = "local-ca";

/// The local CA every hub on this database signs with. The database holds
/// it (sealed with the master key); `dir` holds a copy, where operators
/// find `root.pem`. A fresh database takes the CA found in `dir` (a hub
/// that kept its CA only there) or a new one; when two hubs start at once,
/// the first to store its CA wins and the other adopts it, which it may do
/// only with a CA it has just created, never one clients may already trust.
async fn shared_ca(store: &Store, key: &MasterKey, dir: &Path) -> Result<LocalCa, HubError> {
    // What the directory held before this start, checked to belong
    // together before it is compared; `current` is what it holds now.
    let on_disk = if CaFiles::present(dir) {
        LocalCa::load_or_create(dir)?;
        CaFiles::read(dir)?
    } else {
        None
    };
    let mut current = on_disk.clone();
    let sealed = match store.setting(LOCAL_CA).await? {
        Some(sealed) => sealed,
        None => {
            let ours = match &on_disk {
                Some(files) => files.clone(),
                None => {
                    LocalCa::load_or_create(dir)?;
                    let created = CaFiles::read(dir)?.ok_or_else(|| {
                        HubError::Setup(format!("{}: no CA after creating one", dir.display()))
                    })?;
                    current = Some(created.clone());
                    created
                }
            };
            let plain = serde_json::to_vec(&ours).expect("CA files serialize");
            store
                .setting_or_insert(LOCAL_CA, &key.seal(&plain, LOCAL_CA))
                .await?
        }
    };
    let stored: CaFiles = key
        .open(&sealed, LOCAL_CA)
        .ok()
        .and_then(|plain| serde_json::from_slice(&plain).ok())
        .ok_or_else(|| {
            HubError::Setup(
                "the local CA stored in the database cannot be opened with this master key".into(),
            )
        })?;
    if let Some(files) = &on_disk
        && files.root_cert != stored.root_cert
    {
        return Err(HubError::Setup(format!(
            "{}/root.pem is not the root CA of the hub this database belongs to: the data \
             directory comes from another hub. Move {} aside to use the database's CA.",
            dir.display(),
            dir.display()
        )));
    }
    if current.as_ref() != Some(&stored) {
        stored.write(dir)?;
        tracing::info!(dir = %dir.display(), "local CA written from the database");
    }
    Ok(LocalCa::load_or_create(dir)?)
}

fn create_private_dir(path: &Path) -> Result<(), HubError> {
    let err = |source| HubError::DataDir {
        path: path.display().to_string(),
        source,
    };
    std::fs::create_dir_all(path).map_err(err)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700)).map_err(err)?;
    }
    Ok(())
}

/// Writes a random admin token (mode 0600) unless the file exists.
fn ensure_admin_token(path: &Path) -> Result<(), HubError> {
    if path.exists() {
        return Ok(());
    }
    let token = crate::util::b64(&crate::util::random_bytes::<32>());
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let result = options
        .open(path)
        .and_then(|mut f| f.write_all(format!("{token}\n").as_bytes()));
    match result {
        Ok(()) => {
            tracing::info!(path = %path.display(), "admin token written");
            Ok(())
        }
        // Another process created it first: theirs is the token.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(source) => Err(HubError::DataDir {
            path: path.display().to_string(),
            source,
        }),
    }
}
