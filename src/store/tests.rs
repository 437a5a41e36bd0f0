//! The same store tests on SQLite and, when `ACMEHUB_TEST_DATABASE_URL` is
//! set, on PostgreSQL.

use super::engine::{Fields, Statement, held, reader};
use super::*;
use crate::policy::{ChallengeType, Identifier};
use crate::util::{now, random_id};
use sqlx::{Connection, Row};
use std::time::Duration;

/// A fresh store per backend: a temp SQLite file, and a PostgreSQL schema of
/// its own so tests never see each other's rows.
pub(crate) async fn backends() -> Vec<(Store, Option<tempfile::TempDir>)> {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = Store::connect(&format!("sqlite://{}/t.db", dir.path().display()))
        .await
        .unwrap();
    let mut stores = vec![(sqlite, Some(dir))];
    if let Some(url) = postgres_test_url() {
        stores.push((postgres_schema(&url).await, None));
    }
    stores
}

/// The PostgreSQL server to test against, if one is given; says so when not.
fn postgres_test_url() -> Option<String> {
    match std::env::var("ACMEHUB_TEST_DATABASE_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            eprintln!("notice: ACMEHUB_TEST_DATABASE_URL unset; PostgreSQL store tests skipped");
            None
        }
    }
}

/// Creates a throwaway schema and connects with it as the search path.
async fn postgres_schema(url: &str) -> Store {
    Store::connect(&postgres_schema_url(url).await)
        .await
        .unwrap()
}

/// The URL of a throwaway schema of the database at `url`.
async fn postgres_schema_url(url: &str) -> String {
    use sqlx::Connection;
    let schema = format!("t_{}", random_id().to_lowercase().replace('-', "_"));
    let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .execute(&mut conn)
        .await
        .unwrap();
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}options=-c%20search_path%3D{schema}")
}

async fn account(store: &Store) -> (Instance, Account) {
    let instance = store
        .ensure_instance("default", Issuer::Local)
        .await
        .unwrap();
    let thumb = random_id();
    let account = store
        .insert_account(
            &instance.id,
            &thumb,
            "{}",
            &["mailto:a@example.com".into()],
            true,
            None,
        )
        .await
        .unwrap();
    (instance, account)
}

fn new_order(instance: &Instance, account: &Account, names: &[&str]) -> NewOrder {
    let identifiers: Vec<Identifier> = names.iter().map(|n| Identifier::dns(n).unwrap()).collect();
    NewOrder {
        relayed: false,
        instance_id: instance.id.clone(),
        account_id: account.id.clone(),
        identifiers: identifiers.clone(),
        not_before: None,
        not_after: None,
        expires_at: now() + 3600,
        replaces: None,
        profile: None,
        authorizations: identifiers
            .iter()
            .map(|id| NewAuthz::Create {
                identifier: id.clone(),
                wildcard: false,
                expires_at: now() + 3600,
                challenges: vec![
                    (ChallengeType::Http01, random_id()),
                    (ChallengeType::Dns01, random_id()),
                ],
                valid: false,
            })
            .collect(),
    }
}

/// A new order for `names` and the first challenge of each of its
/// authorizations.
async fn order_and_challenges(
    store: &Store,
    instance: &Instance,
    account: &Account,
    names: &[&str],
) -> (Order, Vec<Challenge>) {
    let order = store
        .create_order(&new_order(instance, account, names), |_| None)
        .await
        .unwrap();
    let mut challenges = Vec::new();
    for authz_id in &order.authz_ids {
        let authz = store
            .authorization(&instance.id, authz_id)
            .await
            .unwrap()
            .unwrap();
        challenges.push(authz.challenges[0].clone());
    }
    (order, challenges)
}

/// Records a `processing` challenge as validated; true when its authorization took it.
async fn finish_valid(store: &Store, ch: &Challenge) -> Result<bool, StoreError> {
    store
        .finish_challenge(&ch.id, &ch.authz_id, None, now() + 86400, now())
        .await
}

#[tokio::test]
async fn a_nonce_is_redeemed_once() {
    for (store, _dir) in backends().await {
        let nonce = random_id();
        assert!(store.redeem_nonce(&nonce, now() + 60).await.unwrap());
        assert!(
            !store.redeem_nonce(&nonce, now() + 60).await.unwrap(),
            "{:?}",
            store.backend()
        );
        assert_eq!(store.prune_nonces(now() + 120).await.unwrap(), 1);
    }
}

#[tokio::test]
async fn one_account_per_key_and_instance() {
    for (store, _dir) in backends().await {
        let (instance, account) = account(&store).await;
        let again = store
            .insert_account(&instance.id, &account.key_thumbprint, "{}", &[], true, None)
            .await;
        assert!(matches!(again, Err(StoreError::Conflict(_))));
        let found = store
            .account_by_thumbprint(&instance.id, &account.key_thumbprint)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(found.id, account.id);
        assert_eq!(found.contact, vec!["mailto:a@example.com".to_string()]);
        // key change to a key in use is a conflict; to a fresh key works once
        let (_, other) = self::account(&store).await;
        let clash = store
            .change_account_key(
                &account.id,
                &account.key_thumbprint,
                &other.key_thumbprint,
                "{}",
            )
            .await;
        assert!(matches!(clash, Err(StoreError::Conflict(_))));
        store
            .change_account_key(&account.id, &account.key_thumbprint, "fresh", "{}")
            .await
            .unwrap();
        let stale = store
            .change_account_key(&account.id, &account.key_thumbprint, "fresh2", "{}")
            .await;
        assert!(matches!(stale, Err(StoreError::Guard)));
    }
}

#[tokio::test]
async fn an_order_becomes_ready_when_all_authorizations_are_valid() {
    for (store, _dir) in backends().await {
        let (instance, account) = account(&store).await;
        let order = store
            .create_order(
                &new_order(&instance, &account, &["a.example.com", "b.example.com"]),
                |_| None,
            )
            .await
            .unwrap();
        assert_eq!(order.status, OrderStatus::Pending);
        for (i, authz_id) in order.authz_ids.iter().enumerate() {
            let authz = store
                .authorization(&instance.id, authz_id)
                .await
                .unwrap()
                .unwrap();
            let ch = &authz.challenges[0];
            assert!(store.start_challenge(&ch.id, now()).await.unwrap());
            assert!(
                !store.start_challenge(&ch.id, now()).await.unwrap(),
                "started twice"
            );
            finish_valid(&store, ch).await.unwrap();
            let status = store
                .order(&instance.id, &order.id)
                .await
                .unwrap()
                .unwrap()
                .status;
            let expected = if i == 0 {
                OrderStatus::Pending
            } else {
                OrderStatus::Ready
            };
            assert_eq!(status, expected);
        }
        // a second order reuses the valid authorization
        let reuse = store
            .reusable_authz(
                &account.id,
                &Identifier::dns("a.example.com").unwrap(),
                false,
                now(),
                &[ChallengeType::Http01, ChallengeType::Dns01],
            )
            .await
            .unwrap();
        assert_eq!(reuse.as_deref(), Some(order.authz_ids[0].as_str()));
        // ...but not where the challenge type that proved it (dns-01) is no longer allowed.
        let reuse = store
            .reusable_authz(
                &account.id,
                &Identifier::dns("a.example.com").unwrap(),
                false,
                now(),
                &[ChallengeType::Http01],
            )
            .await
            .unwrap();
        assert_eq!(reuse, None);
    }
}

#[tokio::test]
async fn an_order_whose_challenges_finish_at_once_becomes_ready() {
    // Two validations of one order end at the same moment (a client
    // answers both challenges together): reading the other's authorization
    // each would see it still pending; the order's count of authorizations
    // to go, updated in its row, sees both.
    for (store, _dir) in backends().await {
        let (instance, account) = account(&store).await;
        let mut orders = Vec::new();
        for i in 0..40 {
            let a = format!("a{i}.example.com");
            let b = format!("b{i}.example.com");
            let (order, challenges) =
                order_and_challenges(&store, &instance, &account, &[&a, &b]).await;
            for ch in &challenges {
                assert!(store.start_challenge(&ch.id, now()).await.unwrap());
            }
            orders.push((order.id, challenges));
        }
        let finishing = orders
            .iter()
            .flat_map(|(_, challenges)| challenges)
            .map(|ch| {
                let store = store.clone();
                let ch = ch.clone();
                tokio::spawn(async move { finish_valid(&store, &ch).await })
            });
        for finished in futures::future::join_all(finishing.collect::<Vec<_>>()).await {
            finished.unwrap().unwrap();
        }
        for (id, _) in &orders {
            let order = store.order(&instance.id, id).await.unwrap().unwrap();
            assert_eq!(order.status, OrderStatus::Ready, "{:?}", store.backend());
        }
    }
}

/// Both challenges of one authorization validated (a client that answers
/// http-01 and dns-01 alike), one after the other or at the same moment:
/// the authorization counts once toward its order, which stays pending
/// until its other authorization is valid too. Counted twice, the order
/// would be ready, and finalizable, with a name never proven.
#[tokio::test]
async fn two_challenges_of_one_authorization_count_once_toward_the_order() {
    for (store, _dir) in backends().await {
        let (instance, account) = account(&store).await;
        for at_once in [false, true] {
            let mut orders = Vec::new();
            for i in 0..20 {
                let a = format!("a{i}-{at_once}.example.com");
                let b = format!("b{i}-{at_once}.example.com");
                let order = store
                    .create_order(&new_order(&instance, &account, &[&a, &b]), |_| None)
                    .await
                    .unwrap();
                let first = store
                    .authorization(&instance.id, &order.authz_ids[0])
                    .await
                    .unwrap()
                    .unwrap();
                for ch in &first.challenges {
                    assert!(store.start_challenge(&ch.id, now()).await.unwrap());
                }
                orders.push((order, first.challenges));
            }
            let finish = |ch: Challenge| {
                let store = store.clone();
                async move { finish_valid(&store, &ch).await }
            };
            let all = orders.iter().flat_map(|(_, challenges)| challenges.clone());
            let mut took = 0;
            if at_once {
                let finishing = all.map(|ch| tokio::spawn(finish(ch)));
                for finished in futures::future::join_all(finishing.collect::<Vec<_>>()).await {
                    took += finished.unwrap().unwrap() as usize;
                }
            } else {
                for ch in all {
                    took += finish(ch).await.unwrap() as usize;
                }
            }
            assert_eq!(
                took,
                orders.len(),
                "one challenge of each authorization is the one it took"
            );
            for (order, challenges) in &orders {
                for ch in challenges {
                    let (ch, _) = store
                        .challenge(&instance.id, &ch.id)
                        .await
                        .unwrap()
                        .unwrap();
                    assert_eq!(ch.status, ChallengeStatus::Valid);
                }
                let read = store.order(&instance.id, &order.id).await.unwrap().unwrap();
                assert_eq!(
                    read.status,
                    OrderStatus::Pending,
                    "{:?} at once: {at_once}",
                    store.backend()
                );
                let second = store
                    .authorization(&instance.id, &order.authz_ids[1])
                    .await
                    .unwrap()
                    .unwrap();
                let ch = second.challenges[0].clone();
                assert!(store.start_challenge(&ch.id, now()).await.unwrap());
                finish(ch).await.unwrap();
                let read = store.order(&instance.id, &order.id).await.unwrap().unwrap();
                assert_eq!(read.status, OrderStatus::Ready);
            }
        }
    }
}

/// During a rolling upgrade on PostgreSQL, replicas still running the
/// code before `orders.unready` make orders without a count (0) and make
/// authorizations valid without taking one off. Such orders still become
/// ready once every authorization is valid, and not before.
#[tokio::test]
async fn orders_made_or_moved_without_the_count_become_ready_when_all_are_valid() {
    for (store, _dir) in backends().await {
        let (instance, account) = account(&store).await;
        let validate = |ch: Challenge| {
            let store = store.clone();
            async move {
                assert!(store.start_challenge(&ch.id, now()).await.unwrap());
                finish_valid(&store, &ch).await.unwrap();
            }
        };
        let status = |id: String| {
            let (store, instance) = (store.clone(), instance.clone());
            async move {
                store
                    .order(&instance.id, &id)
                    .await
                    .unwrap()
                    .unwrap()
                    .status
            }
        };
        // Made by an old replica: no count.
        let (order, challenges) = order_and_challenges(
            &store,
            &instance,
            &account,
            &["old-a.example.com", "old-b.example.com"],
        )
        .await;
        store
            .write(vec![Statement::new(
                "UPDATE orders SET unready = 0 WHERE id = $1",
                vec![order.id.as_str().into()],
            )])
            .await
            .unwrap();
        validate(challenges[0].clone()).await;
        assert_eq!(status(order.id.clone()).await, OrderStatus::Pending);
        validate(challenges[1].clone()).await;
        assert_eq!(status(order.id.clone()).await, OrderStatus::Ready);
        // Counted, then one authorization made valid by an old replica.
        let (order, challenges) = order_and_challenges(
            &store,
            &instance,
            &account,
            &["moved-a.example.com", "moved-b.example.com"],
        )
        .await;
        store
            .write(vec![Statement::new(
                "UPDATE authorizations SET status = 'valid' WHERE id = $1",
                vec![challenges[0].authz_id.as_str().into()],
            )])
            .await
            .unwrap();
        assert_eq!(status(order.id.clone()).await, OrderStatus::Pending);
        validate(challenges[1].clone()).await;
        assert_eq!(status(order.id.clone()).await, OrderStatus::Ready);
    }
}

#[tokio::test]
async fn a_failed_challenge_invalidates_the_order() {
    for (store, _dir) in backends().await {
        let (instance, account) = account(&store).await;
        let order = store
            .create_order(&new_order(&instance, &account, &["a.example.com"]), |_| {
                None
            })
            .await
            .unwrap();
        let authz = store
            .authorization(&instance.id, &order.authz_ids[0])
            .await
            .unwrap()
            .unwrap();
        let ch = &authz.challenges[0];
        store.start_challenge(&ch.id, now()).await.unwrap();
        store
            .finish_challenge(&ch.id, &ch.authz_id, Some(r#"{"type":"x"}"#), 0, now())
            .await
            .unwrap();
        let order = store.order(&instance.id, &order.id).await.unwrap().unwrap();
        assert_eq!(order.status, OrderStatus::Invalid);
        assert_eq!(order.error.as_deref(), Some(r#"{"type":"x"}"#));
        let (ch, authz) = store
            .challenge(&instance.id, &ch.id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(ch.status, ChallengeStatus::Invalid);
        assert_eq!(authz.status, AuthzStatus::Invalid);
        // the other challenge of an invalid authorization cannot start
        let other = authz.challenges.iter().find(|c| c.id != ch.id).unwrap();
        assert!(!store.start_challenge(&other.id, now()).await.unwrap());
    }
}

#[tokio::test]
async fn a_deactivated_authorization_invalidates_its_order_once() {
    for (store, _dir) in backends().await {
        let (instance, account) = account(&store).await;
        let order = store
            .create_order(
                &new_order(&instance, &account, &["a.example.com", "b.example.com"]),
                |_| None,
            )
            .await
            .unwrap();
        let authz_id = &order.authz_ids[0];
        store.deactivate_authz(authz_id).await.unwrap();
        let order = store.order(&instance.id, &order.id).await.unwrap().unwrap();
        assert_eq!(order.status, OrderStatus::Invalid);
        assert!(
            order.error.as_deref().unwrap().contains("deactivated"),
            "{:?}",
            order.error
        );
        let authz = store
            .authorization(&instance.id, authz_id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(authz.status, AuthzStatus::Deactivated);
        // a second deactivation is refused and changes nothing
        assert!(matches!(
            store.deactivate_authz(authz_id).await,
            Err(StoreError::Guard)
        ));
        let other = store
            .authorization(&instance.id, &order.authz_ids[1])
            .await
            .unwrap()
            .unwrap();
        assert_eq!(other.status, AuthzStatus::Pending);
    }
}

#[tokio::test]
async fn an_order_is_finalized_exactly_once() {
    for (store, _dir) in backends().await {
        let (instance, account) = account(&store).await;
        let mut new = new_order(&instance, &account, &["a.example.com"]);
        if let NewAuthz::Create { valid, .. } = &mut new.authorizations[0] {
            *valid = true;
        }
        let order = store.create_order(&new, |_| None).await.unwrap();
        assert_eq!(order.status, OrderStatus::Ready);
        let intent = |serial: &str| CertificateIntent {
            instance_id: instance.id.clone(),
            account_id: account.id.clone(),
            order_id: order.id.clone(),
            serial: serial.into(),
            issuer: CertificateIssuer::Local,
            identifiers: order.identifiers.clone(),
            spki: vec![1, 2, 3],
            not_before: now(),
            not_after: now() + 86400,
        };
        let (first, second) = (intent("01"), intent("02"));
        let (a, b) = tokio::join!(store.begin_issuance(&first), store.begin_issuance(&second));
        assert_eq!(
            a.is_ok() as u8 + b.is_ok() as u8,
            1,
            "both or neither finalized"
        );
        let cert_id = a.or(b).unwrap().id;
        let unsigned = store
            .unsigned_certificates(i64::MAX, i64::MAX)
            .await
            .unwrap();
        assert_eq!(unsigned.len(), 1);
        // Of two processes taking the signing over, one wins; then it is
        // leased, and no longer offered to a sweep.
        let (cert, lease) = &unsigned[0];
        assert!(
            store
                .claim_signing(&cert.id, *lease, now() + 30)
                .await
                .unwrap()
        );
        assert!(
            !store
                .claim_signing(&cert.id, *lease, now() + 30)
                .await
                .unwrap()
        );
        assert!(
            store
                .unsigned_certificates(i64::MAX, now())
                .await
                .unwrap()
                .is_empty()
        );
        assert!(
            store
                .complete_issuance(cert, b"der", "pem", "ari", None, now())
                .await
                .unwrap(),
            "the order became valid"
        );
        let order = store.order(&instance.id, &order.id).await.unwrap().unwrap();
        assert_eq!(order.status, OrderStatus::Valid);
        assert_eq!(order.certificate_id.as_deref(), Some(cert_id.as_str()));
        let cert = store
            .certificate(&instance.id, &cert_id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(cert.der.as_deref(), Some(&b"der"[..]));
        // What the download and the order's reader get of what this process
        // just finished (kept in memory): for their own instance only.
        let download = store
            .certificate_download(&instance.id, &cert_id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(download.chain_pem.as_deref(), Some("pem"));
        assert_eq!(download.account_id, account.id);
        let other = store.ensure_instance("other", Issuer::Local).await.unwrap();
        assert!(
            store
                .certificate_download(&other.id, &cert_id)
                .await
                .unwrap()
                .is_none()
        );
        // Marked so that a read from memory shows (the database has the
        // time complete_issuance wrote).
        store.order_made_valid(&Order {
            updated_at: 42,
            ..order.clone()
        });
        assert!(store.order(&other.id, &order.id).await.unwrap().is_none());
        let kept = store.order(&instance.id, &order.id).await.unwrap().unwrap();
        assert_eq!((kept.status, kept.updated_at), (OrderStatus::Valid, 42));
        store.revoke_certificate(&cert_id, 1, now()).await.unwrap();
        let download = store
            .certificate_download(&instance.id, &cert_id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            download.chain_pem.as_deref(),
            Some("pem"),
            "revoked, still downloadable"
        );
        assert!(matches!(
            store.revoke_certificate(&cert_id, 1, now()).await,
            Err(StoreError::Guard)
        ));
        let revoked = store
            .revoked_certificates(&CertificateIssuer::Local, now())
            .await
            .unwrap();
        assert_eq!(revoked.len(), 1);
        assert_eq!(revoked[0].reason, 1);
    }
}

#[tokio::test]
async fn settings_keep_the_first_value() {
    for (store, _dir) in backends().await {
        let first = store.setting_or_insert("k", b"one").await.unwrap();
        let second = store.setting_or_insert("k", b"two").await.unwrap();
        assert_eq!(first, b"one");
        assert_eq!(second, b"one");
    }
}

#[tokio::test]
async fn a_periodic_job_runs_in_one_process_once_per_period() {
    for (store, _dir) in backends().await {
        let (now, hour) = (1_000_000, 3600);
        let take = |owner: &'static str, at: i64| {
            let store = store.clone();
            async move {
                store
                    .take_job("job", owner, at, at + hour, at - hour)
                    .await
                    .unwrap()
            }
        };
        let (a, b) = tokio::join!(take("a", now), take("b", now));
        assert_eq!(a as u8 + b as u8, 1, "one of two processes takes it");
        let winner = if a { "a" } else { "b" };
        assert!(!take("c", now + 10).await, "held: nobody else takes it");
        store.finish_job("job", winner, now + 20).await.unwrap();
        assert!(!take("c", now + 30).await, "ran a moment ago: not due");
        assert!(
            take("c", now + 20 + hour + 1).await,
            "due again after its period"
        );
        // c dies while running: its lease lapses and the run is done again.
        assert!(!take("a", now + 2 * hour).await);
        assert!(
            take("a", now + 20 + 2 * hour + 2).await,
            "a lapsed lease is taken over"
        );
    }
}

#[tokio::test]
async fn a_worker_whose_lease_was_taken_over_can_no_longer_write() {
    for (store, _dir) in backends().await {
        let (instance, account) = account(&store).await;
        let mut new = new_order(&instance, &account, &["relay.example.com"]);
        new.relayed = true;
        let order = store.create_order(&new, |_| None).await.unwrap();
        let t = now();
        assert!(
            store
                .lease_upstream_order(&order.id, t, t + 60, "a")
                .await
                .unwrap()
        );
        // A second worker cannot take a held lease.
        assert!(
            !store
                .lease_upstream_order(&order.id, t, t + 60, "b")
                .await
                .unwrap()
        );
        let mut seen_by_a = store.upstream_order(&order.id).await.unwrap().unwrap();
        seen_by_a.state = UpstreamOrderState::Authorizing;
        store.update_upstream_order(&seen_by_a).await.unwrap();
        // A's lease lapses (time moves past it) and B takes the order over.
        assert!(
            store
                .lease_upstream_order(&order.id, t + 61, t + 121, "b")
                .await
                .unwrap()
        );
        seen_by_a.state = UpstreamOrderState::Ready;
        assert!(matches!(
            store.update_upstream_order(&seen_by_a).await,
            Err(StoreError::Guard)
        ));
        assert!(
            !store
                .extend_upstream_order(&order.id, "a", t + 200)
                .await
                .unwrap()
        );
        // A's release leaves B's lease alone; B writes.
        store.release_upstream_order(&order.id, "a").await.unwrap();
        assert!(
            !store
                .lease_upstream_order(&order.id, t + 62, t + 122, "c")
                .await
                .unwrap()
        );
        let mut seen_by_b = store.upstream_order(&order.id).await.unwrap().unwrap();
        assert_eq!(seen_by_b.state, UpstreamOrderState::Authorizing);
        seen_by_b.state = UpstreamOrderState::Ready;
        store.update_upstream_order(&seen_by_b).await.unwrap();
    }
}

#[tokio::test]
async fn account_reads_see_every_account_write() {
    for (store, _dir) in backends().await {
        let (instance, acct) = account(&store).await;
        let read = |s: &Store| {
            let (i, a) = (instance.id.clone(), acct.id.clone());
            let s = s.clone();
            async move { s.account(&i, &a).await.unwrap().unwrap() }
        };
        assert_eq!(read(&store).await.contact, acct.contact);
        store
            .update_account_contact(&acct.id, &["mailto:b@example.com".into()])
            .await
            .unwrap();
        assert_eq!(read(&store).await.contact, ["mailto:b@example.com"]);
        store
            .change_account_key(&acct.id, &acct.key_thumbprint, "new-thumb", "{\"k\":1}")
            .await
            .unwrap();
        let changed = read(&store).await;
        assert_eq!(
            (changed.key_thumbprint.as_str(), changed.jwk.as_str()),
            ("new-thumb", "{\"k\":1}")
        );
        store.deactivate_account(&acct.id).await.unwrap();
        assert_eq!(read(&store).await.status, AccountStatus::Deactivated);
        // another instance's account id is not found through this one
        assert!(
            store
                .account("other-instance", &acct.id)
                .await
                .unwrap()
                .is_none()
        );
    }
}

#[tokio::test]
async fn sqlite_commits_are_durable_unless_asked_otherwise() {
    let dir = tempfile::tempdir().unwrap();
    for (query, expected) in [("", 2i64), ("?synchronous=normal", 1)] {
        let url = format!("sqlite://{}/s{expected}.db{query}", dir.path().display());
        let store = Store::connect(&url).await.unwrap();
        let row = sqlx::query("PRAGMA synchronous")
            .fetch_one(&store.pool)
            .await
            .unwrap();
        assert_eq!(row.try_get::<i64, _>(0).unwrap(), expected, "{url}");
        // the readers see the writer's commits and cannot write themselves
        store.setting_or_insert("probe", b"1").await.unwrap();
        let seen = store
            .reader
            .fetch_optional(&Statement::new(
                "SELECT value FROM settings WHERE name = 'probe'",
                vec![],
            ))
            .await
            .unwrap()
            .expect("the probe setting");
        assert_eq!(seen.field::<Vec<u8>>("value").unwrap(), b"1");
        let write = store
            .reader
            .fetch_optional(&Statement::new("DELETE FROM settings", vec![]))
            .await;
        assert!(write.is_err(), "a reader wrote");
        assert!(store.setting("probe").await.unwrap().is_some());
    }
}

#[tokio::test]
async fn an_account_write_whose_caller_went_away_still_drops_the_cached_account() {
    for (store, _dir) in backends().await {
        let (instance, acct) = account(&store).await;
        assert!(
            store
                .account(&instance.id, &acct.id)
                .await
                .unwrap()
                .is_some()
        );
        // the caller is dropped at its first await, as when a client hangs up
        let write = store.deactivate_account(&acct.id);
        let _ = tokio::time::timeout(std::time::Duration::ZERO, write).await;
        let mut status = AccountStatus::Valid;
        for _ in 0..100 {
            status = store
                .account(&instance.id, &acct.id)
                .await
                .unwrap()
                .unwrap()
                .status;
            if status == AccountStatus::Deactivated {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert_eq!(status, AccountStatus::Deactivated);
    }
}

/// Writes that land in one group commit are each saved or refused alone:
/// one whose second statement breaks a constraint leaves nothing of its
/// first, and the others are kept.
#[tokio::test]
async fn a_failed_write_is_undone_alone_and_the_others_are_kept() {
    for (store, _dir) in backends().await {
        let insert = |name: &str| {
            Statement::new(
                "INSERT INTO settings (name, value) VALUES ($1, $2)",
                vec![name.into(), b"v".to_vec().into()],
            )
        };
        store.write(vec![insert("taken")]).await.unwrap();
        let (kept, failed, also_kept) = tokio::join!(
            store.write(vec![insert("first")]),
            store.write(vec![insert("half"), insert("taken")]),
            store.write(vec![insert("last")]),
        );
        assert_eq!(kept.unwrap(), [1]);
        assert_eq!(also_kept.unwrap(), [1]);
        assert!(
            matches!(failed, Err(StoreError::Write(_) | StoreError::Database(_))),
            "{failed:?}"
        );
        for (name, there) in [
            ("first", true),
            ("half", false),
            ("last", true),
            ("taken", true),
        ] {
            assert_eq!(
                store.setting(name).await.unwrap().is_some(),
                there,
                "{name}"
            );
        }
        // An argument short is refused on either backend, never bound NULL.
        let short = store
            .write(vec![Statement::new(
                "INSERT INTO settings (name, value) VALUES ($1, $2)",
                vec!["short".into()],
            )])
            .await;
        assert!(short.is_err(), "{short:?}");
        assert!(store.setting("short").await.unwrap().is_none());
        // A guard that matches no row refuses its write, and undoes it.
        let guarded = store
            .write(vec![
                insert("guarded"),
                Statement::new(
                    "UPDATE settings SET value = $1 WHERE name = 'nowhere'",
                    vec![b"x".to_vec().into()],
                )
                .guard(),
            ])
            .await;
        assert!(matches!(guarded, Err(StoreError::Guard)), "{guarded:?}");
        assert!(store.setting("guarded").await.unwrap().is_none());
    }
}

/// Statements written at once (on PostgreSQL one statement of CTEs) keep
/// each its own arguments, report the rows each changed, and are undone
/// together when one fails or a guard matches nothing.
#[tokio::test]
async fn statements_written_at_once_are_kept_or_undone_together() {
    for (store, _dir) in backends().await {
        let insert = |name: &str, value: &[u8]| {
            Statement::new(
                "INSERT INTO settings (name, value) VALUES ($1, $2)",
                vec![name.into(), value.to_vec().into()],
            )
        };
        let update = |name: &str, value: &[u8]| {
            Statement::new(
                "UPDATE settings SET value = $2 WHERE name = $1",
                vec![name.into(), value.to_vec().into()],
            )
            .guard()
        };
        store.write(vec![insert("old", b"0")]).await.unwrap();
        let changed = store
            .write_at_once(vec![
                insert("a", b"1"),
                update("old", b"2"),
                insert("b", b"3"),
                Statement::new(
                    "UPDATE settings SET value = $1 WHERE name = 'nowhere'",
                    vec![b"x".to_vec().into()],
                ),
            ])
            .await
            .unwrap();
        assert_eq!(changed, [1, 1, 1, 0]);
        for (name, value) in [("a", b"1"), ("old", b"2"), ("b", b"3")] {
            assert_eq!(
                store.setting(name).await.unwrap().as_deref(),
                Some(&value[..]),
                "{name}"
            );
        }
        let guarded = store
            .write_at_once(vec![insert("c", b"4"), update("nowhere", b"5")])
            .await;
        assert!(matches!(guarded, Err(StoreError::Guard)), "{guarded:?}");
        let failed = store
            .write_at_once(vec![update("old", b"6"), insert("a", b"7")])
            .await;
        assert!(
            matches!(failed, Err(StoreError::Write(_) | StoreError::Database(_))),
            "{failed:?}"
        );
        assert!(store.setting("c").await.unwrap().is_none());
        assert_eq!(
            store.setting("old").await.unwrap().as_deref(),
            Some(&b"2"[..])
        );
        assert_eq!(
            store.setting("a").await.unwrap().as_deref(),
            Some(&b"1"[..])
        );
    }
}

/// Many orders made and finalized at once, with the group-commit writer and
/// the pool's own writes interleaved: none is refused as busy, each order is
/// finalized exactly once, and all of it is on disk for the next process.
#[tokio::test]
async fn concurrent_writes_are_all_saved_once_and_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/g.db", dir.path().display());
    let store = Store::connect(&url).await.unwrap();
    let (instance, account) = account(&store).await;
    let orders = futures::future::join_all((0..100).map(|i| {
        let (store, instance, account) = (store.clone(), instance.clone(), account.clone());
        async move {
            let mut new = new_order(&instance, &account, &[&format!("n{i}.example.com")]);
            if let NewAuthz::Create { valid, .. } = &mut new.authorizations[0] {
                *valid = true;
            }
            // a write of the pool's between the writer's
            store
                .setting_or_insert(&format!("s{i}"), b"1")
                .await
                .unwrap();
            store.create_order(&new, |_| None).await.unwrap()
        }
    }))
    .await;
    let finalized = futures::future::join_all(orders.iter().flat_map(|order| {
        let intent = CertificateIntent {
            instance_id: instance.id.clone(),
            account_id: account.id.clone(),
            order_id: order.id.clone(),
            serial: random_id(),
            issuer: CertificateIssuer::Local,
            identifiers: order.identifiers.clone(),
            spki: vec![1],
            not_before: now(),
            not_after: now() + 86400,
        };
        let store = store.clone();
        // twice each: exactly one of the two may win
        [intent.clone(), intent].map(move |intent| {
            let store = store.clone();
            async move { store.begin_issuance(&intent).await }
        })
    }))
    .await;
    let won = finalized.iter().filter(|r| r.is_ok()).count();
    let refused = finalized
        .iter()
        .filter(|r| matches!(r, Err(StoreError::Guard)))
        .count();
    assert_eq!((won, refused), (100, 100));
    drop(store);
    let reopened = Store::connect(&url).await.unwrap();
    for order in &orders {
        let order = reopened
            .order(&instance.id, &order.id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(order.status, OrderStatus::Processing);
    }
    assert_eq!(
        reopened
            .unsigned_certificates(i64::MAX, i64::MAX)
            .await
            .unwrap()
            .len(),
        100
    );
    assert!(reopened.setting("s99").await.unwrap().is_some());
}

/// The flow's held connections of a PostgreSQL store.
fn flow(store: &Store) -> &held::Connections {
    match &store.reader {
        reader::Reader::Postgres(flow) => flow,
        reader::Reader::Sqlite(_) => panic!("a SQLite store has no held connections"),
    }
}

#[tokio::test]
async fn a_connection_whose_caller_went_away_mid_query_is_closed_not_reused() {
    let Some(url) = postgres_test_url() else {
        return;
    };
    let store = postgres_schema(&url).await;
    let flow = flow(&store);
    let answers = async |n: i64| {
        let row = flow
            .fetch_optional(sqlx::query("SELECT $1 AS n").bind(n))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(row.try_get::<i64, _>("n").unwrap(), n);
    };
    // a connection that finished its query is reused
    answers(7).await;
    assert_eq!(flow.idle(), 1);
    let mut held = flow.get().await.unwrap();
    assert_eq!(flow.idle(), 0);
    let gave_up = tokio::time::timeout(
        Duration::from_millis(50),
        held.fetch_optional(sqlx::query("SELECT 1 FROM pg_sleep(2)")),
    )
    .await;
    assert!(gave_up.is_err(), "the slow query finished");
    drop(held);
    assert_eq!(flow.idle(), 0, "a connection mid-query was kept");
    // the next caller gets a fresh connection that answers its own query
    answers(8).await;
}

#[tokio::test]
async fn sqlite_reads_do_not_wait_for_a_write_in_progress_nor_see_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.db");
    let store = Store::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    let (instance, acct) = account(&store).await;
    let reader::Reader::Sqlite(readers) = &store.reader else {
        panic!("a SQLite store reads through SQLite readers");
    };
    // another writer holds SQLite's write lock with an uncommitted change
    let writer = rusqlite::Connection::open(&path).unwrap();
    writer
        .execute_batch("BEGIN IMMEDIATE; UPDATE accounts SET status = 'deactivated'")
        .unwrap();
    store.forget_accounts();
    let started = std::time::Instant::now();
    let seen = store
        .account(&instance.id, &acct.id)
        .await
        .unwrap()
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "a read waited for the writer"
    );
    assert_eq!(
        seen.status,
        AccountStatus::Valid,
        "a read saw an uncommitted write"
    );
    // a statement that fails leaves its connection usable, and kept
    let bad = store
        .reader
        .fetch_all(&Statement::new("SELECT nothing FROM accounts", vec![]))
        .await;
    assert!(matches!(bad, Err(StoreError::Read(_))), "{:?}", bad.err());
    writer.execute_batch("COMMIT").unwrap();
    store.forget_accounts();
    let seen = store
        .account(&instance.id, &acct.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(seen.status, AccountStatus::Deactivated);
    assert_eq!(
        readers.idle(),
        1,
        "reads one at a time share one connection"
    );
}

#[tokio::test]
async fn an_in_memory_sqlite_database_is_refused() {
    let Err(e) = Store::connect("sqlite::memory:").await else {
        panic!("an in-memory database was accepted");
    };
    assert!(e.to_string().contains("in-memory"), "{e}");
}

/// Waits up to 10 s for `done`.
async fn eventually(what: &str, mut done: impl AsyncFnMut() -> bool) {
    for _ in 0..200 {
        if done().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{what}: not after 10 s");
}

#[tokio::test]
async fn a_replica_stops_using_an_account_another_replica_or_an_operator_changed() {
    let Some(url) = postgres_test_url() else {
        return;
    };
    let url = postgres_schema_url(&url).await;
    let (a, b) = (
        Store::connect(&url).await.unwrap(),
        Store::connect(&url).await.unwrap(),
    );
    let (instance, acct) = account(&a).await;
    eventually("replica b's cache is on", async || b.accounts.is_live()).await;
    let read = async |store: &Store| {
        store
            .account(&instance.id, &acct.id)
            .await
            .unwrap()
            .expect("the account")
    };
    assert_eq!(read(&b).await.status, AccountStatus::Valid);
    assert!(
        b.accounts.get(&acct.id).is_ok(),
        "replica b did not cache the account"
    );
    // replica a deactivates it: b stops accepting it
    a.deactivate_account(&acct.id).await.unwrap();
    eventually("replica b sees the deactivation", async || {
        read(&b).await.status == AccountStatus::Deactivated
    })
    .await;
    // an operator's SQL, through neither store, is seen as well
    let (_, other) = account(&a).await;
    let cached = b.account(&instance.id, &other.id).await.unwrap().unwrap();
    assert!(b.accounts.get(&other.id).is_ok());
    let mut conn = sqlx::AnyConnection::connect(&url).await.unwrap();
    sqlx::query("UPDATE accounts SET contact = '[\"mailto:ops@example.com\"]' WHERE id = $1")
        .bind(&cached.id)
        .execute(&mut conn)
        .await
        .unwrap();
    eventually("replica b sees the operator's change", async || {
        b.account(&instance.id, &other.id)
            .await
            .unwrap()
            .unwrap()
            .contact
            == ["mailto:ops@example.com"]
    })
    .await;
}

#[tokio::test]
async fn a_connection_the_server_dropped_while_idle_is_not_handed_out() {
    let Some(url) = postgres_test_url() else {
        return;
    };
    let store = postgres_schema(&url).await;
    let flow = flow(&store);
    let pid = async || -> i32 {
        let row = flow
            .fetch_optional(sqlx::query("SELECT pg_backend_pid() AS pid"))
            .await
            .unwrap()
            .unwrap();
        row.try_get("pid").unwrap()
    };
    let first = pid().await;
    assert_eq!(flow.idle(), 1);
    // the server ends that connection while it sits idle
    let mut admin = sqlx::AnyConnection::connect(&url).await.unwrap();
    sqlx::query("SELECT pg_terminate_backend($1)")
        .bind(first)
        .execute(&mut admin)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    // the next caller is answered, on another connection
    assert_ne!(pid().await, first);
}
