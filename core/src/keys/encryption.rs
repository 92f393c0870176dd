//! The key that encrypts signing keys at rest (AES-256-GCM, the key id as associated
//! data so a sealed value cannot be moved to another row).

use std::path::Path;

use aes_gcm::aead::{Aead, Payload};
use aes_gcm::{Aes256Gcm, KeyInit, Nonce};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::config::{KeysConfig, SecretError, read_or_create_secret_file};

const SEALED_PREFIX: &str = "aes256gcm:";
const NONCE_LEN: usize = 12;

#[derive(Clone)]
pub struct KeyEncryptionKey(Aes256Gcm);

/// What is wrong with a key encryption key's text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyShapeError {
    #[error("it is not base64 (make one with: openssl rand -base64 32)")]
    NotBase64,
    #[error("it must be 32 bytes, got {0} (make one with: openssl rand -base64 32)")]
    Length(usize),
}

/// Why the key encryption key cannot be had.
#[derive(Debug, thiserror::Error)]
pub enum KekError {
    #[error(transparent)]
    Secret(#[from] SecretError),
    /// The key from `origin` (the variable or the file) is malformed.
    #[error("{origin} is unusable")]
    Shape {
        origin: String,
        #[source]
        source: KeyShapeError,
    },
}

/// Why a signing key cannot be sealed or opened.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("no randomness for a nonce")]
    Randomness(#[source] getrandom::Error),
    #[error("encryption failed")]
    Encrypt,
    #[error("signing key '{0}' is not encrypted in a known format")]
    UnknownFormat(String),
    #[error("signing key '{0}' is corrupt")]
    Corrupt(String),
    #[error(
        "signing key '{0}' cannot be decrypted with the configured key encryption key \
         (STRATA_KEY_ENCRYPTION_KEY / _FILE): every replica needs the key that encrypted it"
    )]
    WrongKey(String),
}

impl std::fmt::Debug for KeyEncryptionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyEncryptionKey([redacted])")
    }
}

impl KeyEncryptionKey {
    /// From base64 of 32 bytes.
    pub fn from_base64(text: &str) -> Result<Self, KeyShapeError> {
        let bytes = STANDARD
            .decode(text.trim())
            .map_err(|_| KeyShapeError::NotBase64)?;
        let cipher =
            Aes256Gcm::new_from_slice(&bytes).map_err(|_| KeyShapeError::Length(bytes.len()))?;
        Ok(Self(cipher))
    }

    /// A new random key, as base64.
    pub fn generate_base64() -> Result<String, SecretError> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(SecretError::Randomness)?;
        Ok(STANDARD.encode(bytes))
    }

    /// `STRATA_KEY_ENCRYPTION_KEY`, else the key file (created when missing).
    pub fn from_config(config: &KeysConfig) -> Result<Self, KekError> {
        if let Some(key) = &config.encryption_key {
            return Self::from_base64(key.expose()).map_err(|source| KekError::Shape {
                origin: "STRATA_KEY_ENCRYPTION_KEY".into(),
                source,
            });
        }
        Self::from_file(&config.encryption_key_file)
    }

    fn from_file(path: &Path) -> Result<Self, KekError> {
        let text = read_or_create_secret_file(path, Self::generate_base64)?;
        Self::from_base64(&text).map_err(|source| KekError::Shape {
            origin: format!("the key in {}", path.display()),
            source,
        })
    }

    /// Whether a stored value was sealed by [`Self::seal`].
    pub(crate) fn is_sealed(stored: &str) -> bool {
        stored.starts_with(SEALED_PREFIX)
    }

    pub(crate) fn seal(&self, kid: &str, plaintext: &[u8]) -> Result<String, SealError> {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(SealError::Randomness)?;
        let payload = Payload {
            msg: plaintext,
            aad: kid.as_bytes(),
        };
        let ciphertext = self
            .0
            .encrypt(&Nonce::from(nonce), payload)
            .map_err(|_| SealError::Encrypt)?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&ciphertext);
        Ok(format!("{SEALED_PREFIX}{}", STANDARD.encode(out)))
    }

    pub(crate) fn open(&self, kid: &str, sealed: &str) -> Result<Vec<u8>, SealError> {
        let corrupt = || SealError::Corrupt(kid.to_owned());
        let body = sealed
            .strip_prefix(SEALED_PREFIX)
            .ok_or_else(|| SealError::UnknownFormat(kid.to_owned()))?;
        let bytes = STANDARD.decode(body).map_err(|_| corrupt())?;
        if bytes.len() <= NONCE_LEN {
            return Err(corrupt());
        }
        let (nonce, ciphertext) = bytes.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| corrupt())?;
        let payload = Payload {
            msg: ciphertext,
            aad: kid.as_bytes(),
        };
        self.0
            .decrypt(&Nonce::from(nonce), payload)
            .map_err(|_| SealError::WrongKey(kid.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> KeyEncryptionKey {
        let b64 = KeyEncryptionKey::generate_base64().unwrap_or_else(|e| panic!("{e}"));
        KeyEncryptionKey::from_base64(&b64).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn seals_and_opens_bound_to_the_kid() {
        let k = key();
        let sealed = k
            .seal("kid-1", b"private")
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(sealed.starts_with(SEALED_PREFIX));
        assert!(!sealed.contains("private"));
        assert_eq!(
            k.open("kid-1", &sealed).ok().as_deref(),
            Some(&b"private"[..])
        );
        let moved = k.open("kid-2", &sealed);
        assert!(
            matches!(&moved, Err(SealError::WrongKey(kid)) if kid == "kid-2"),
            "{moved:?}"
        );
        let other = key().open("kid-1", &sealed);
        assert!(
            matches!(&other, Err(SealError::WrongKey(kid)) if kid == "kid-1"),
            "{other:?}"
        );
    }

    #[test]
    fn rejects_keys_of_the_wrong_shape() {
        let short = KeyEncryptionKey::from_base64(&STANDARD.encode([0u8; 16]));
        assert_eq!(short.err(), Some(KeyShapeError::Length(16)));
        let junk = KeyEncryptionKey::from_base64("not base64!");
        assert_eq!(junk.err(), Some(KeyShapeError::NotBase64));
    }

    #[test]
    fn key_file_is_created_private_and_reused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("strata-kek-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
        let path = dir.join("secret.key");
        let first = KeyEncryptionKey::from_file(&path).unwrap_or_else(|e| panic!("{e}"));
        let mode = std::fs::metadata(&path)
            .map(|m| m.permissions().mode() & 0o777)
            .unwrap_or_default();
        assert_eq!(mode, 0o600);
        let sealed = first.seal("k", b"x").unwrap_or_else(|e| panic!("{e}"));
        let second = KeyEncryptionKey::from_file(&path).unwrap_or_else(|e| panic!("{e}"));
        assert!(
            second.open("k", &sealed).is_ok(),
            "the same key is read back"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
