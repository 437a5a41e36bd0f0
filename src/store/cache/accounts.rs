//! Accounts read by id, kept in memory: every authenticated ACME request
//! reads its account, about eight per issuance.
//!
//! An entry must never outlive a change to its row (a deactivated account
//! must stop working). On SQLite one process owns the database and every
//! account write goes through its store, which drops the entry. On
//! PostgreSQL another replica (or an operator's SQL) may write, so a
//! trigger announces each changed or deleted account on the channel
//! [`CHANNEL`], and a task of each store listens: a notice drops the entry.
//! The cache is used only while that listener is connected; when the
//! connection is lost, notices may be lost with it, so the cache is emptied
//! and stays off until the listener is back.
//!
//! A write bumps the generation after it commits, and a read stores what it
//! fetched only if no write came in between, so a stale row never lingers.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use tokio::sync::oneshot;

use crate::store::Account;

/// The channel the accounts trigger notifies (migration 0012).
const CHANNEL: &str = "acmehub_accounts";

/// How soon the listener tries again after losing its connection.
const RETRY: Duration = Duration::from_secs(1);

#[derive(Default)]
pub(crate) struct AccountCache {
    cached: Mutex<CachedAccounts>,
    /// Dropped with the cache, which stops its listener.
    _stop: Option<oneshot::Sender<()>>,
}

#[derive(Default)]
struct CachedAccounts {
    generation: u64,
    /// Entries are kept and handed out only while this is set.
    live: bool,
    by_id: HashMap<String, Account>,
}

impl AccountCache {
    const MAX: usize = 100_000;

    /// A cache in use from the start (one process owns the database).
    pub(crate) fn live() -> Arc<Self> {
        let cache = Arc::new(Self::default());
        cache.set_live(true);
        cache
    }

    fn lock(&self) -> MutexGuard<'_, CachedAccounts> {
        self.cached.lock().expect("account cache")
    }

    /// The cached account, or the generation to hand to [`Self::put`].
    pub(crate) fn get(&self, id: &str) -> Result<Account, u64> {
        let cached = self.lock();
        cached.by_id.get(id).cloned().ok_or(cached.generation)
    }

    #[cfg(test)]
    pub(crate) fn is_live(&self) -> bool {
        self.lock().live
    }

    pub(crate) fn put(&self, account: &Account, generation: u64) {
        let mut cached = self.lock();
        if !cached.live || cached.generation != generation {
            return;
        }
        if cached.by_id.len() >= Self::MAX {
            cached.by_id.clear();
        }
        cached.by_id.insert(account.id.clone(), account.clone());
    }

    pub(crate) fn forget(&self, id: &str) {
        let mut cached = self.lock();
        cached.generation += 1;
        cached.by_id.remove(id);
    }

    pub(crate) fn clear(&self) {
        let live = self.lock().live;
        self.set_live(live);
    }

    /// Empties the cache, and turns it on or off.
    fn set_live(&self, live: bool) {
        let mut cached = self.lock();
        cached.generation += 1;
        cached.by_id.clear();
        cached.live = live;
    }
}

/// A cache for the PostgreSQL database at `url`, kept by a listener task
/// that ends when the cache is dropped.
pub(crate) fn follow_postgres(url: &str) -> Arc<AccountCache> {
    let (stop, stopped) = oneshot::channel();
    let cache = Arc::new(AccountCache {
        cached: Mutex::default(),
        _stop: Some(stop),
    });
    let listening = listen(url.to_string(), Arc::downgrade(&cache));
    tokio::spawn(async move {
        tokio::select! {
            () = listening => {}
            _ = stopped => {}
        }
    });
    cache
}

/// Keeps `cache` live while notices come in; never returns while the cache
/// exists.
async fn listen(url: String, cache: Weak<AccountCache>) {
    use sqlx::postgres::PgListener;
    loop {
        let listener = async {
            let mut listener = PgListener::connect(&url).await?;
            listener.listen(CHANNEL).await?;
            Ok::<_, sqlx::Error>(listener)
        };
        match listener.await {
            Ok(mut listener) => {
                if let Some(cache) = cache.upgrade() {
                    cache.set_live(true);
                }
                loop {
                    let notice = listener.try_recv().await;
                    let Some(cache) = cache.upgrade() else { return };
                    match notice {
                        Ok(Some(notice)) => cache.forget(notice.payload()),
                        Ok(None) | Err(_) => {
                            tracing::warn!(
                                "lost the database's account notices; \
                                 the account cache is off until they are back"
                            );
                            cache.set_live(false);
                            break;
                        }
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "listening for the database's account notices");
            }
        }
        tokio::time::sleep(RETRY).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::AccountStatus;

    #[test]
    fn a_cached_account_read_from_before_a_write_is_not_kept() {
        let cache = AccountCache::live();
        let account = Account {
            id: "a1".into(),
            instance_id: "i".into(),
            key_thumbprint: "t".into(),
            jwk: "{}".into(),
            status: AccountStatus::Valid,
            contact: vec![],
            tos_agreed: true,
            access_key_id: None,
            created_at: 0,
        };
        let generation = cache.get("a1").unwrap_err();
        // a write lands between the read and its put: the put is dropped
        cache.forget("a1");
        cache.put(&account, generation);
        assert!(cache.get("a1").is_err());
        let generation = cache.get("a1").unwrap_err();
        cache.put(&account, generation);
        assert_eq!(cache.get("a1").unwrap().id, "a1");
        // emptied (an instance went away), it stays in use
        cache.clear();
        assert!(cache.get("a1").is_err());
        let generation = cache.get("a1").unwrap_err();
        cache.put(&account, generation);
        assert!(
            cache.get("a1").is_ok(),
            "a cleared cache stopped keeping accounts"
        );
        // a cache that is off (its notices are lost) keeps nothing
        let off = AccountCache::default();
        let generation = off.get("a1").unwrap_err();
        off.put(&account, generation);
        assert!(
            off.get("a1").is_err(),
            "a cache that is off kept an account"
        );
    }
}
