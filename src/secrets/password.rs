//! Console users' passwords: argon2id with the crate's defaults (19 MiB,
//! two passes), kept as PHC strings. Hashing or checking one costs tens of
//! milliseconds of CPU, so the async functions run it on the blocking pool,
//! never on the runtime's threads.

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};

/// A PHC string that no password matches, checked when a sign-in names an
/// unknown user, so that the answer takes as long as for a known one.
const DECOY: &str = "$argon2id$v=19$m=19456,t=2,p=1$ZGVjb3lkZWNveWRlY295$2fOfa/VeBT2+ITXb7ihc1GXy3nBq3ttsyZDnGgILpCQ";

fn hash_now(password: &str) -> Option<String> {
    let salt = SaltString::encode_b64(&crate::util::random_bytes::<16>()).ok()?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .ok()
        .map(|h| h.to_string())
}

/// Password checks run by this process, for tests that a sign-in path
/// checks a password whatever it ends in.
#[cfg(test)]
pub static CHECKS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn verify_now(password: &str, phc: &str) -> bool {
    #[cfg(test)]
    CHECKS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    PasswordHash::new(phc).is_ok_and(|parsed| {
        Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    })
}

/// The PHC string of a new password; None only if the blocking pool failed.
pub async fn hash(password: String) -> Option<String> {
    tokio::task::spawn_blocking(move || hash_now(&password))
        .await
        .ok()
        .flatten()
}

/// Whether `password` matches `phc`; with None, checks against a decoy (and
/// is false), taking the same time.
pub async fn verify(password: String, phc: Option<String>) -> bool {
    tokio::task::spawn_blocking(move || match phc {
        Some(phc) => verify_now(&password, &phc),
        None => {
            verify_now(&password, DECOY);
            false
        }
    })
    .await
    .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_password_matches_its_hash_only() {
        let phc = hash("correct horse battery".into()).await.unwrap();
        assert!(phc.starts_with("$argon2id$"));
        assert!(!phc.contains("correct horse"));
        assert!(verify("correct horse battery".into(), Some(phc.clone())).await);
        assert!(!verify("correct horse batterY".into(), Some(phc)).await);
        assert!(!verify("anything".into(), None).await);
        assert!(
            PasswordHash::new(DECOY).is_ok(),
            "the decoy is a valid PHC string"
        );
    }
}
