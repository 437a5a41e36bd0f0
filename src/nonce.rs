//! Replay nonces (RFC 8555 §6.5). A nonce is `expiry || tag16 || HMAC`, so
//! handing one out costs no database write. How a nonce is made single-use
//! depends on who can redeem it:
//!
//! - **Shared** (PostgreSQL, where replicas redeem each other's nonces):
//!   `tag16` is random, the HMAC key lives in the database, and redeeming
//!   inserts the nonce into the used-nonce table, whose unique key makes it
//!   single-use across replicas.
//! - **Local** (SQLite, one process): `tag16` is a counter, and redeeming
//!   sets the counter's bit in a window of the most recent [`WINDOW`] nonces
//!   held in memory (1 MiB). No database round trip, no table that grows
//!   with traffic. The key is made at start-up, so a restart voids
//!   outstanding nonces: clients get `badNonce` once and retry with the
//!   fresh nonce that comes with it, as §6.5 expects.

use std::sync::Mutex;

use ring::hmac;

use crate::error::{Error, ErrorKind};
use crate::store::{Backend, Store};
use crate::util::{b64, now, random_bytes};

const KEY_SETTING: &str = "nonce_hmac_key";
const TAG_LEN: usize = 32;
const BODY_LEN: usize = 8 + 16;
/// How many of the latest nonces a local hub can still redeem: 2^23 bits
/// (1 MiB), about half an hour of nonces at 5,000 a second.
pub const WINDOW: u64 = 1 << 23;

/// Issues and redeems nonces.
pub struct Nonces {
    key: hmac::Key,
    lifetime: i64,
    used: Used,
}

enum Used {
    Shared(Store),
    Local(Mutex<Window>),
}

/// The local used-nonce set: counter `c` is bit `c % WINDOW`, cleared when
/// `c` is issued, so a set bit always belongs to the latest counter of its slot.
struct Window {
    next: u64,
    bits: Vec<u64>,
}

impl Window {
    fn new(size: u64) -> Self {
        Self {
            next: 0,
            bits: vec![0; (size / 64) as usize],
        }
    }

    /// How many counters the window holds.
    fn size(&self) -> u64 {
        self.bits.len() as u64 * 64
    }

    fn slot(&self, counter: u64) -> (usize, u64) {
        let i = counter % self.size();
        ((i / 64) as usize, 1 << (i % 64))
    }

    fn issue(&mut self) -> u64 {
        let counter = self.next;
        self.next += 1;
        let (word, bit) = self.slot(counter);
        self.bits[word] &= !bit;
        counter
    }

    /// Marks `counter` used; `Err` says why it cannot be.
    fn redeem(&mut self, counter: u64) -> Result<(), &'static str> {
        if counter >= self.next {
            return Err("is not one this server issued");
        }
        if self.next - counter > self.size() {
            return Err("is too old");
        }
        let (word, bit) = self.slot(counter);
        if self.bits[word] & bit != 0 {
            return Err("was already used");
        }
        self.bits[word] |= bit;
        Ok(())
    }
}

impl Nonces {
    /// On PostgreSQL loads (or creates, once for all replicas) the nonce
    /// key; on SQLite makes this process's own key and window.
    pub async fn new(store: Store, lifetime_secs: u64) -> Result<Self, Error> {
        Self::with_window(store, lifetime_secs, WINDOW).await
    }

    async fn with_window(store: Store, lifetime_secs: u64, window: u64) -> Result<Self, Error> {
        let lifetime = lifetime_secs.max(1) as i64;
        let (key, used) = match store.backend() {
            Backend::Postgres => {
                let key = store
                    .setting_or_insert(KEY_SETTING, &random_bytes::<32>())
                    .await?;
                (key, Used::Shared(store))
            }
            Backend::Sqlite => (
                random_bytes::<32>().to_vec(),
                Used::Local(Mutex::new(Window::new(window.max(64)))),
            ),
        };
        Ok(Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, &key),
            lifetime,
            used,
        })
    }

    /// A fresh nonce.
    pub fn issue(&self) -> String {
        let mut buf = Vec::with_capacity(BODY_LEN + TAG_LEN);
        buf.extend_from_slice(&(now() + self.lifetime).to_be_bytes());
        match &self.used {
            Used::Shared(_) => buf.extend_from_slice(&random_bytes::<16>()),
            Used::Local(window) => {
                let counter = window.lock().expect("nonce window").issue();
                buf.extend_from_slice(&[0; 8]);
                buf.extend_from_slice(&counter.to_be_bytes());
            }
        }
        let tag = hmac::sign(&self.key, &buf);
        buf.extend_from_slice(tag.as_ref());
        b64(&buf)
    }

    /// Accepts a nonce once: it must be ours, unexpired and unused.
    pub async fn redeem(&self, nonce: &str) -> Result<(), Error> {
        let bad = |why: &str| {
            Error::new(
                ErrorKind::BadNonce,
                format!("JWS nonce {why}; retry with the Replay-Nonce of this response"),
            )
        };
        use base64::Engine;
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(nonce)
            .map_err(|_| bad("is not one this server issued"))?;
        if raw.len() != BODY_LEN + TAG_LEN {
            return Err(bad("is not one this server issued"));
        }
        let (body, tag) = raw.split_at(BODY_LEN);
        hmac::verify(&self.key, body, tag).map_err(|_| {
            bad(match self.used {
                Used::Shared(_) => "is not one this server issued",
                Used::Local(_) => "is not one this server issued since it last started",
            })
        })?;
        let word = |at: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&body[at..at + 8]);
            b
        };
        let expires_at = i64::from_be_bytes(word(0));
        if expires_at <= now() {
            return Err(bad("has expired"));
        }
        match &self.used {
            Used::Shared(store) => {
                if !store.redeem_nonce(nonce, expires_at).await? {
                    return Err(bad("was already used"));
                }
            }
            Used::Local(window) => {
                let counter = u64::from_be_bytes(word(16));
                window
                    .lock()
                    .expect("nonce window")
                    .redeem(counter)
                    .map_err(bad)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::backends;

    fn kind(r: Result<(), Error>) -> (ErrorKind, String) {
        let e = r.unwrap_err();
        (e.kind, e.detail)
    }

    #[tokio::test]
    async fn nonces_are_single_use_and_authentic() {
        for (store, _dir) in backends().await {
            let nonces = Nonces::new(store.clone(), 60).await.unwrap();
            let n = nonces.issue();
            nonces.redeem(&n).await.unwrap();
            let (k, detail) = kind(nonces.redeem(&n).await);
            assert_eq!(k, ErrorKind::BadNonce);
            assert!(detail.contains("already used"), "{detail}");
            // a forged nonce (tag flipped) and garbage are refused
            let mut forged = nonces.issue().into_bytes();
            let last = forged.len() - 2;
            forged[last] = if forged[last] == b'A' { b'B' } else { b'A' };
            let forged = String::from_utf8(forged).unwrap();
            assert_eq!(kind(nonces.redeem(&forged).await).0, ErrorKind::BadNonce);
            assert_eq!(kind(nonces.redeem("abc").await).0, ErrorKind::BadNonce);
            // nonces redeemed out of order are each accepted once
            let batch: Vec<String> = (0..5).map(|_| nonces.issue()).collect();
            for n in batch.iter().rev() {
                nonces.redeem(n).await.unwrap();
            }
            for n in &batch {
                assert_eq!(kind(nonces.redeem(n).await).0, ErrorKind::BadNonce);
            }
            let second = Nonces::new(store.clone(), 60).await.unwrap();
            let outstanding = nonces.issue();
            match store.backend() {
                // a replica on the same database accepts the first's nonces, once
                Backend::Postgres => {
                    second.redeem(&outstanding).await.unwrap();
                    assert_eq!(
                        kind(nonces.redeem(&outstanding).await).0,
                        ErrorKind::BadNonce
                    );
                }
                // a restart voids outstanding nonces, saying so
                Backend::Sqlite => {
                    let (k, detail) = kind(second.redeem(&outstanding).await);
                    assert_eq!(k, ErrorKind::BadNonce);
                    assert!(detail.contains("since it last started"), "{detail}");
                    assert_eq!(
                        store.prune_nonces(i64::MAX).await.unwrap(),
                        0,
                        "no table rows"
                    );
                }
            }
        }
    }

    #[tokio::test]
    async fn a_local_nonce_older_than_the_window_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::connect(&format!("sqlite://{}/n.db", dir.path().display()))
            .await
            .unwrap();
        let nonces = Nonces::with_window(store, 60, 128).await.unwrap();
        let old = nonces.issue();
        let used = nonces.issue();
        nonces.redeem(&used).await.unwrap();
        for _ in 0..127 {
            nonces.issue();
        }
        let (k, detail) = kind(nonces.redeem(&old).await);
        assert_eq!(k, ErrorKind::BadNonce);
        assert!(detail.contains("too old"), "{detail}");
        // the slot `used` had is now a newer nonce's, which is unused
        assert_eq!(kind(nonces.redeem(&used).await).0, ErrorKind::BadNonce);
        let mut last = String::new();
        for _ in 0..200 {
            last = nonces.issue();
        }
        nonces.redeem(&last).await.unwrap();
    }

    #[test]
    fn the_window_reuses_a_slot_only_for_a_newer_counter() {
        let mut w = Window::new(64);
        let a = w.issue();
        w.redeem(a).unwrap();
        assert_eq!(w.redeem(a), Err("was already used"));
        for _ in 0..63 {
            w.issue();
        }
        // counter 64 takes counter 0's slot and starts unused
        let b = w.issue();
        assert_eq!(b % 64, a % 64);
        assert_eq!(w.redeem(a), Err("is too old"));
        w.redeem(b).unwrap();
        assert_eq!(w.redeem(b + 1), Err("is not one this server issued"));
    }
}
