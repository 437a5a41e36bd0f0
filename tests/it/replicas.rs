//! Several hubs on one database: the local CA, the master key and nonces
//! are shared, so a request may land on any of them.

use acmehub::config::{Config, FileConfig, Overrides, TechnicalZoneConfig};
use instant_acme::{ChallengeType, Identifier};

use crate::flows::{issue, verify_chain};
use crate::harness::{Db, TestHub, databases, master_key, shared_database};

/// The config of a hub on `database_url` with data in `dir`, not started.
fn config(dir: &std::path::Path, database_url: &str, master_key: &str) -> Config {
    Config::resolve(
        Default::default(),
        Overrides {
            listen: Some("127.0.0.1:0".parse().unwrap()),
            data_dir: Some(dir.to_path_buf()),
            database_url: Some(database_url.into()),
            master_key: Some(master_key.into()),
            ..Default::default()
        },
    )
    .unwrap()
}

#[tokio::test]
async fn a_second_hub_on_the_database_signs_with_the_same_ca() {
    for db in databases() {
        let (url, _db_dir) = shared_database(db).await;
        let key = master_key();
        let a = TestHub::replica(&url, &key).await;
        let root = std::fs::read_to_string(&a.root_pem).unwrap();
        // One process owns an SQLite file: there the second hub is the first
        // one's successor with a new data directory (a restored backup).
        let a = if db == Db::Sqlite {
            a.stop().await;
            None
        } else {
            Some(a)
        };
        let b = TestHub::replica(&url, &key).await;
        assert_eq!(
            std::fs::read_to_string(&b.root_pem).unwrap(),
            root,
            "{db:?}: the second hub's data directory got the database's root"
        );
        let account = b.account().await;
        let chain = issue(
            &b,
            &account,
            vec![Identifier::Dns("replica.example.test".into())],
            ChallengeType::Dns01,
        )
        .await;
        let (names, _) = verify_chain(&chain, &b.root_pem);
        assert_eq!(names, ["replica.example.test"]);
        if let Some(a) = a {
            // A nonce from one hub is good once, at any hub.
            let from_a = crate::raw::Raw::new(&a);
            let nonce = from_a.nonce().await;
            let raw = crate::raw::Raw::new(&b);
            let new_account = b.url("/acme/default/new-account");
            let header = serde_json::json!({"alg": "ES256", "nonce": nonce, "url": new_account, "jwk": raw.key.jwk()});
            let body =
                crate::raw::jws(&raw.key, &header, r#"{"termsOfServiceAgreed":true}"#).to_string();
            assert_eq!(raw.send(&new_account, body.clone()).await.status, 201);
            let replay = raw.send(&new_account, body).await;
            assert_eq!(replay.problem_type(), "urn:ietf:params:acme:error:badNonce");
            a.stop().await;
        }
        b.stop().await;
    }
}

#[tokio::test]
async fn hubs_starting_at_once_on_a_fresh_database_agree_on_one_ca() {
    // SQLite has one process per file; this race is PostgreSQL's.
    for db in databases().into_iter().filter(|db| *db == Db::Postgres) {
        let (url, _db_dir) = shared_database(db).await;
        let key = master_key();
        let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
        let hubs = futures::future::join_all(
            dirs.iter()
                .map(|d| acmehub::bootstrap::open(config(d.path(), &url, &key))),
        )
        .await;
        let roots: Vec<String> = hubs
            .into_iter()
            .map(|hub| hub.unwrap().ca.root_pem().to_string())
            .collect();
        assert!(roots.iter().all(|r| *r == roots[0]), "{roots:?}");
        for d in &dirs {
            assert_eq!(
                std::fs::read_to_string(d.path().join("ca/root.pem")).unwrap(),
                roots[0],
                "every data directory holds the one root"
            );
        }
    }
}

#[tokio::test]
async fn a_hub_with_another_master_key_refuses_to_start_and_changes_nothing() {
    for db in databases() {
        let (url, _db_dir) = shared_database(db).await;
        let first = tempfile::tempdir().unwrap();
        let first_key = master_key();
        let hub = acmehub::bootstrap::open(config(first.path(), &url, &first_key))
            .await
            .unwrap();
        let root = hub.ca.root_pem().to_string();
        drop(hub);
        let other = tempfile::tempdir().unwrap();
        let err = acmehub::bootstrap::open(config(other.path(), &url, &master_key()))
            .await
            .err()
            .expect("another master key is refused");
        assert!(
            err.to_string().contains("the same master key"),
            "{db:?}: {err}"
        );
        assert!(
            !other.path().join("ca/root.pem").exists(),
            "{db:?}: no CA was written"
        );
        let again = acmehub::bootstrap::open(config(first.path(), &url, &first_key))
            .await
            .unwrap();
        assert_eq!(
            again.ca.root_pem(),
            root,
            "{db:?}: the database kept its CA"
        );
    }
}

#[tokio::test]
async fn a_data_directory_from_another_hub_is_refused_and_one_without_a_database_ca_is_adopted() {
    for db in databases() {
        let key = master_key();
        // A hub whose CA lives in its data directory and its own database.
        let dir = tempfile::tempdir().unwrap();
        let (own_url, _own) = shared_database(db).await;
        let own_root = acmehub::bootstrap::open(config(dir.path(), &own_url, &key))
            .await
            .unwrap()
            .ca
            .root_pem()
            .to_string();
        // Another hub's database already has a CA: the directory is refused.
        let (url, _db_dir) = shared_database(db).await;
        let elsewhere = tempfile::tempdir().unwrap();
        acmehub::bootstrap::open(config(elsewhere.path(), &url, &key))
            .await
            .unwrap();
        let err = acmehub::bootstrap::open(config(dir.path(), &url, &key))
            .await
            .err()
            .expect("a foreign CA directory is refused");
        assert!(err.to_string().contains("another hub"), "{db:?}: {err}");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("ca/root.pem")).unwrap(),
            own_root,
            "{db:?}: the refused directory is unchanged"
        );
        // A root without its key is reported as such, not as a missing file.
        let broken = tempfile::tempdir().unwrap();
        std::fs::create_dir(broken.path().join("ca")).unwrap();
        std::fs::copy(
            dir.path().join("ca/root.pem"),
            broken.path().join("ca/root.pem"),
        )
        .unwrap();
        let err = acmehub::bootstrap::open(config(broken.path(), &url, &key))
            .await
            .err()
            .expect("a root without its key is refused");
        assert!(err.to_string().contains("restore the key"), "{db:?}: {err}");
        // A fresh database takes the directory's CA (what clients trust).
        let (fresh, _fresh_dir) = shared_database(db).await;
        let hub = acmehub::bootstrap::open(config(dir.path(), &fresh, &key))
            .await
            .unwrap();
        assert_eq!(hub.ca.root_pem(), own_root, "{db:?}");
    }
}

/// Relays TCP connections from `listener` to `target` until aborted;
/// aborting it cuts every connection it carries.
async fn relay(listener: tokio::net::TcpListener, target: String) {
    let mut connections = tokio::task::JoinSet::new();
    while let Ok((mut inbound, _)) = listener.accept().await {
        let target = target.clone();
        connections.spawn(async move {
            if let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await {
                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
            }
        });
    }
}

#[tokio::test]
async fn a_hub_that_loses_its_database_fails_closed_and_recovers_by_itself() {
    if !databases().contains(&Db::Postgres) {
        return;
    }
    let (url, _db_dir) = shared_database(Db::Postgres).await;
    // postgres://user@HOST:PORT/db?...: the hub reaches HOST:PORT through a relay.
    let target = url
        .split_once('@')
        .and_then(|(_, rest)| rest.split_once('/'))
        .map(|(hostport, _)| hostport.to_string())
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let link = tokio::spawn(relay(listener, target.clone()));
    let t = TestHub::replica(&url.replacen(&target, &addr.to_string(), 1), &master_key()).await;
    let http = t.http();
    let status = |path: &'static str| {
        let (http, url) = (http.clone(), t.url(path));
        async move { http.get(url).send().await.unwrap().status().as_u16() }
    };
    assert_eq!(status("/acme/default/directory").await, 200);
    assert_eq!(status("/readyz").await, 200);
    let raw = crate::raw::Raw::new(&t);
    let nonce = raw.nonce().await;

    link.abort();
    let _ = link.await;
    assert_eq!(
        status("/readyz").await,
        503,
        "not ready without the database"
    );
    // Past the instance cache's lifetime: the copy in memory still serves.
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    assert_eq!(
        status("/acme/default/directory").await,
        200,
        "the directory is served without the database"
    );
    // A good nonce cannot be checked off: the request is refused.
    let new_account = t.url("/acme/default/new-account");
    let header = serde_json::json!({"alg": "ES256", "nonce": nonce, "url": new_account, "jwk": raw.key.jwk()});
    let body = crate::raw::jws(&raw.key, &header, r#"{"termsOfServiceAgreed":true}"#).to_string();
    let refused = raw.send(&new_account, body).await;
    assert!(refused.status >= 500, "{} {}", refused.status, refused.text);
    assert_eq!(
        refused.problem_type(),
        "urn:ietf:params:acme:error:serverInternal",
        "{}",
        refused.text
    );

    let link = tokio::spawn(relay(
        tokio::net::TcpListener::bind(addr).await.unwrap(),
        target,
    ));
    let mut ready = false;
    for _ in 0..60 {
        if status("/readyz").await == 200 {
            ready = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    assert!(ready, "ready again once the database is back");
    let header = raw.header(&new_account).await;
    let body = crate::raw::jws(&raw.key, &header, r#"{"termsOfServiceAgreed":true}"#).to_string();
    let created = raw.send(&new_account, body).await;
    assert_eq!(created.status, 201, "{}", created.text);
    t.stop().await;
    link.abort();
}

#[tokio::test]
async fn every_replica_serves_the_technical_zone_records_another_one_wrote() {
    if !databases().contains(&Db::Postgres) {
        return;
    }
    let (url, _db_dir) = shared_database(Db::Postgres).await;
    let key = master_key();
    let zone = |f: &mut FileConfig| {
        f.dns.technical_zone = Some(TechnicalZoneConfig {
            nameservers: vec!["ns1.hub.test".into()],
            ..TechnicalZoneConfig::new("acme.hub.test", "127.0.0.1:0".parse().unwrap())
        });
    };
    let a = TestHub::replica_with(&url, &key, zone).await;
    let b = TestHub::replica_with(&url, &key, zone).await;
    let resolver = acmehub::validation::resolver::Resolver::new(
        &[b.hub.technical_zone.as_ref().unwrap().addr()],
        std::time::Duration::from_secs(2),
    )
    .unwrap();
    let name = "x1.acme.hub.test";
    // b polls the database every second; a few seconds of slack for a
    // loaded machine, not a timing claim.
    let served_by_b = |want: bool| {
        let resolver = &resolver;
        async move {
            for _ in 0..50 {
                let values = resolver.lookup_txt(name).await.unwrap_or_default();
                if values.iter().any(|v| v == "value-1") == want {
                    return true;
                }
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            false
        }
    };
    assert!(
        served_by_b(false).await,
        "nothing served before it is written"
    );
    acmehub::dns::publish::add_to_technical_zone(&a.hub, name, "value-1", 600)
        .await
        .unwrap();
    assert!(served_by_b(true).await, "b serves what a wrote");
    a.hub
        .store
        .remove_zone_record(name, "value-1")
        .await
        .unwrap();
    a.hub.refresh_technical_zone().await;
    assert!(served_by_b(false).await, "b stops serving what a removed");
    a.stop().await;
    b.stop().await;
}
