//! Secrets at rest: stored credentials and access-key HMAC keys are sealed
//! with AES-256-GCM (ring's AEAD) under the master key, with the owning
//! object's identity as associated data, so a ciphertext moved to another
//! row or instance fails to open. This module never logs or formats a
//! plaintext, and its errors never carry one.

pub mod password;

use std::io::Write;
use std::path::Path;

use base64::Engine;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::hmac;

/// The version byte in front of every sealed value.
const FORMAT_V1: u8 = 1;

/// Failures of the secrets module; none carries secret material.
#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    #[error("the master key must be 32 bytes in standard base64 ({0})")]
    BadMasterKey(&'static str),
    #[error("cannot read or write the master key file {path}: {source}")]
    File {
        path: String,
        source: std::io::Error,
    },
    /// Wrong key, wrong associated data, or tampered ciphertext.
    #[error(
        "a stored secret could not be decrypted (wrong master key, or it was moved or altered)"
    )]
    Open,
}

/// The 32-byte key that seals every stored secret. Replicas share it.
pub struct MasterKey {
    aead: LessSafeKey,
    /// Derived key for fingerprints, so they reveal nothing about a secret.
    fingerprint: hmac::Key,
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(<redacted>)")
    }
}

impl MasterKey {
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, SecretsError> {
        if bytes.len() != 32 {
            return Err(SecretsError::BadMasterKey("it does not decode to 32 bytes"));
        }
        let aead = LessSafeKey::new(
            UnboundKey::new(&AES_256_GCM, bytes)
                .map_err(|_| SecretsError::BadMasterKey("rejected"))?,
        );
        let derived = hmac::sign(
            &hmac::Key::new(hmac::HMAC_SHA256, bytes),
            b"acmehub fingerprint v1",
        );
        Ok(Self {
            aead,
            fingerprint: hmac::Key::new(hmac::HMAC_SHA256, derived.as_ref()),
        })
    }

    /// Parses standard base64 (as `ACMEHUB_MASTER_KEY` holds it).
    pub fn from_base64(text: &str) -> Result<Self, SecretsError> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .map_err(|_| SecretsError::BadMasterKey("it is not standard base64"))?;
        Self::from_bytes(&bytes)
    }

    /// The configured key: `ACMEHUB_MASTER_KEY`, else `master_key_file`, else
    /// `<data-dir>/master-key`, created (mode 0600) with a random key on
    /// first start.
    pub fn load(
        from_env: Option<&str>,
        file: Option<&Path>,
        data_dir: &Path,
    ) -> Result<Self, SecretsError> {
        if let Some(text) = from_env {
            return Self::from_base64(text);
        }
        let default = data_dir.join("master-key");
        let path = file.unwrap_or(&default);
        let err = |source| SecretsError::File {
            path: path.display().to_string(),
            source,
        };
        match std::fs::read_to_string(path) {
            Ok(text) => Self::from_base64(&text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && file.is_none() => {
                let text = base64::engine::general_purpose::STANDARD
                    .encode(crate::util::random_bytes::<32>());
                let mut options = std::fs::OpenOptions::new();
                options.write(true).create_new(true);
                #[cfg(unix)]
                {
                    use std::os::unix::fs::OpenOptionsExt;
                    options.mode(0o600);
                }
                match options.open(path) {
                    Ok(mut f) => {
                        f.write_all(format!("{text}\n").as_bytes()).map_err(err)?;
                        tracing::info!(path = %path.display(), "master key created");
                        Self::from_base64(&text)
                    }
                    // Another process created it first: use theirs.
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                        Self::from_base64(&std::fs::read_to_string(path).map_err(err)?)
                    }
                    Err(e) => Err(err(e)),
                }
            }
            Err(e) => Err(err(e)),
        }
    }

    /// Seals `plaintext` bound to `aad` (the owner's identity).
    pub fn seal(&self, plaintext: &[u8], aad: &str) -> Vec<u8> {
        let nonce_bytes = crate::util::random_bytes::<NONCE_LEN>();
        let mut buffer = plaintext.to_vec();
        // Sealing only fails for inputs beyond AES-GCM's size limit (64 GiB).
        self.aead
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce_bytes),
                Aad::from(aad.as_bytes()),
                &mut buffer,
            )
            .expect("secrets are far below AES-GCM's size limit");
        let mut out = Vec::with_capacity(1 + NONCE_LEN + buffer.len());
        out.push(FORMAT_V1);
        out.extend_from_slice(&nonce_bytes);
        out.extend_from_slice(&buffer);
        out
    }

    /// Opens a value sealed with the same key and `aad`.
    pub fn open(&self, sealed: &[u8], aad: &str) -> Result<Vec<u8>, SecretsError> {
        if sealed.len() < 1 + NONCE_LEN + AES_256_GCM.tag_len() || sealed[0] != FORMAT_V1 {
            return Err(SecretsError::Open);
        }
        let nonce = Nonce::try_assume_unique_for_key(&sealed[1..1 + NONCE_LEN])
            .map_err(|_| SecretsError::Open)?;
        let mut buffer = sealed[1 + NONCE_LEN..].to_vec();
        let plain = self
            .aead
            .open_in_place(nonce, Aad::from(aad.as_bytes()), &mut buffer)
            .map_err(|_| SecretsError::Open)?;
        Ok(plain.to_vec())
    }

    /// A short keyed fingerprint (`hmac-sha256:` + 16 hex digits): tells two
    /// secrets apart without revealing either, even a weak password.
    pub fn fingerprint(&self, plaintext: &[u8]) -> String {
        let tag = hmac::sign(&self.fingerprint, plaintext);
        format!("hmac-sha256:{}", crate::util::hex(&tag.as_ref()[..8]))
    }
}

/// The associated data that binds a sealed value to its owner.
pub fn owner(kind: &str, instance_id: &str, id: &str) -> String {
    format!("acmehub:{kind}:{instance_id}:{id}")
}

/// SHA-256 of a token, lowercase hex: what the store keeps.
pub fn token_hash(token: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
    crate::util::hex(digest.as_ref())
}

/// A new random token secret.
pub fn new_token() -> String {
    format!(
        "ahk_{}",
        crate::util::b64(&crate::util::random_bytes::<32>())
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> MasterKey {
        MasterKey::from_bytes(&[byte; 32]).unwrap()
    }

    #[test]
    fn seal_and_open_round_trip() {
        let k = key(7);
        let aad = owner("credential", "inst-a", "cred-1");
        let sealed = k.seal(b"api-token-123", &aad);
        assert!(!sealed.windows(13).any(|w| w == b"api-token-123"));
        assert_eq!(k.open(&sealed, &aad).unwrap(), b"api-token-123");
        // Fresh nonce every time.
        assert_ne!(sealed, k.seal(b"api-token-123", &aad));
    }

    #[test]
    fn tampering_wrong_owner_and_wrong_key_fail() {
        let k = key(7);
        let aad = owner("credential", "inst-a", "cred-1");
        let sealed = k.seal(b"secret", &aad);
        for i in [0, 1, 14, sealed.len() - 1] {
            let mut bad = sealed.clone();
            bad[i] ^= 1;
            assert!(k.open(&bad, &aad).is_err(), "flipped byte {i} accepted");
        }
        assert!(
            k.open(&sealed, &owner("credential", "inst-b", "cred-1"))
                .is_err()
        );
        assert!(
            k.open(&sealed, &owner("credential", "inst-a", "cred-2"))
                .is_err()
        );
        assert!(key(8).open(&sealed, &aad).is_err());
        assert!(k.open(&sealed[..10], &aad).is_err());
    }

    #[test]
    fn master_keys_are_32_bytes_of_base64_and_files_are_created_private() {
        assert!(MasterKey::from_base64("c2hvcnQ=").is_err());
        assert!(MasterKey::from_base64("not base64!").is_err());
        let text = base64::engine::general_purpose::STANDARD.encode([1u8; 32]);
        assert!(MasterKey::from_base64(&text).is_ok());
        let dir = tempfile::tempdir().unwrap();
        let first = MasterKey::load(None, None, dir.path()).unwrap();
        let sealed = first.seal(b"x", "a");
        let second = MasterKey::load(None, None, dir.path()).unwrap();
        assert_eq!(second.open(&sealed, "a").unwrap(), b"x");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("master-key"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // A configured file that is missing is an error, not a new key.
        assert!(MasterKey::load(None, Some(&dir.path().join("absent")), dir.path()).is_err());
    }

    #[test]
    fn fingerprints_are_stable_keyed_and_short() {
        let k = key(7);
        assert_eq!(k.fingerprint(b"a"), k.fingerprint(b"a"));
        assert_ne!(k.fingerprint(b"a"), k.fingerprint(b"b"));
        assert_ne!(k.fingerprint(b"a"), key(8).fingerprint(b"a"));
        assert_eq!(k.fingerprint(b"a").len(), "hmac-sha256:".len() + 16);
    }
}
