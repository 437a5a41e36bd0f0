//! Replay nonces (RFC 8555 §6.5). A nonce is `expiry || random || HMAC`, so
//! handing one out costs no database write; redeeming one inserts it into the
//! used-nonce table, whose unique key makes it single-use across processes and
//! replicas. The HMAC key lives in the database, so nonces survive restarts.

use ring::hmac;

use crate::error::{Error, ErrorKind};
use crate::store::Store;
use crate::util::{b64, now, random_bytes};

const KEY_SETTING: &str = "nonce_hmac_key";
const TAG_LEN: usize = 32;
const BODY_LEN: usize = 8 + 16;

/// Issues and redeems nonces.
pub struct Nonces {
    key: hmac::Key,
    lifetime: i64,
    store: Store,
}

impl Nonces {
    /// Loads (or creates, once for all replicas) the nonce key.
    pub async fn new(store: Store, lifetime_secs: u64) -> Result<Self, Error> {
        let key = store
            .setting_or_insert(KEY_SETTING, &random_bytes::<32>())
            .await?;
        Ok(Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, &key),
            lifetime: lifetime_secs.max(1) as i64,
            store,
        })
    }

    /// A fresh nonce.
    pub fn issue(&self) -> String {
        let mut buf = Vec::with_capacity(BODY_LEN + TAG_LEN);
        buf.extend_from_slice(&(now() + self.lifetime).to_be_bytes());
        buf.extend_from_slice(&random_bytes::<16>());
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
        hmac::verify(&self.key, body, tag).map_err(|_| bad("is not one this server issued"))?;
        let mut expiry = [0u8; 8];
        expiry.copy_from_slice(&body[..8]);
        let expires_at = i64::from_be_bytes(expiry);
        if expires_at <= now() {
            return Err(bad("has expired"));
        }
        if !self.store.redeem_nonce(nonce, expires_at).await? {
            return Err(bad("was already used"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn nonces_are_single_use_and_authentic() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::connect(&format!("sqlite://{}/n.db", dir.path().display()))
            .await
            .unwrap();
        let nonces = Nonces::new(store.clone(), 60).await.unwrap();
        let n = nonces.issue();
        nonces.redeem(&n).await.unwrap();
        assert_eq!(
            nonces.redeem(&n).await.unwrap_err().kind,
            ErrorKind::BadNonce
        );
        // a forged nonce (tag flipped) and garbage are refused
        let mut forged = nonces.issue().into_bytes();
        let last = forged.len() - 2;
        forged[last] = if forged[last] == b'A' { b'B' } else { b'A' };
        let forged = String::from_utf8(forged).unwrap();
        assert_eq!(
            nonces.redeem(&forged).await.unwrap_err().kind,
            ErrorKind::BadNonce
        );
        assert_eq!(
            nonces.redeem("abc").await.unwrap_err().kind,
            ErrorKind::BadNonce
        );
        // a second handle on the same database (a restart, a replica) accepts the first's nonces
        let again = Nonces::new(store, 60).await.unwrap();
        again.redeem(&nonces.issue()).await.unwrap();
    }
}
