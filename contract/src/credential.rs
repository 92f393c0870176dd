//! The credential the proxy presents to the control plane, and the secret files both
//! read or create at start.

use std::path::PathBuf;

use clap::Args;

use crate::Secret;

/// `iss` of the API keys strata signs, and their `aud` (the proxy): the control plane
/// and the proxy must agree on both.
pub const DEFAULT_KEY_ISSUER: &str = "strata";
pub const DEFAULT_PROXY_AUDIENCE: &str = "strata-proxy";

/// The credential the proxy presents to the control plane (policy snapshot, usage).
#[derive(Clone, Debug, Args)]
pub struct ProxyCredentialConfig {
    /// Shared by every proxy and control-plane replica; at least 32 characters.
    #[arg(long = "proxy-token", env = "STRATA_PROXY_TOKEN")]
    pub token: Option<Secret>,
    /// File holding it, used when STRATA_PROXY_TOKEN is unset; created (mode 0600) on
    /// first use, so `strata serve` and `strata proxy` in one directory agree.
    #[arg(
        long = "proxy-token-file",
        env = "STRATA_PROXY_TOKEN_FILE",
        default_value = "strata-proxy.token"
    )]
    pub token_file: PathBuf,
}

impl ProxyCredentialConfig {
    pub fn with_token(token: Secret) -> Self {
        Self {
            token: Some(token),
            token_file: PathBuf::from("strata-proxy.token"),
        }
    }

    pub fn load(&self) -> Result<Secret, SecretError> {
        let token = match &self.token {
            Some(t) => t.clone(),
            None => Secret::new(read_or_create_secret_file(&self.token_file, || {
                let mut bytes = [0u8; 32];
                getrandom::fill(&mut bytes).map_err(SecretError::Randomness)?;
                Ok(base64::Engine::encode(
                    &base64::engine::general_purpose::URL_SAFE_NO_PAD,
                    bytes,
                ))
            })?),
        };
        if token.expose().len() < 32 {
            return Err(SecretError::ProxyTokenTooShort);
        }
        Ok(token)
    }
}

/// Why a secret strata reads or creates at start is unusable.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("cannot read {}", .path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot create {}", .path.display())]
    Create {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write {}", .path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("no randomness to make a secret from")]
    Randomness(#[source] getrandom::Error),
    #[error("the proxy credential (STRATA_PROXY_TOKEN) must be at least 32 characters")]
    ProxyTokenTooShort,
}

/// The trimmed contents of a secret file, creating it (mode 0600) with `make()` when
/// missing. Two processes racing to create it end up reading the same contents.
pub fn read_or_create_secret_file(
    path: &std::path::Path,
    make: impl FnOnce() -> Result<String, SecretError>,
) -> Result<String, SecretError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let read = |source| SecretError::Read {
        path: path.to_owned(),
        source,
    };
    match std::fs::read_to_string(path) {
        Ok(text) => return Ok(text.trim().to_owned()),
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(read(e)),
        Err(_) => {}
    }
    let value = make()?;
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(mut file) => file
            .write_all(format!("{value}\n").as_bytes())
            .map_err(|source| SecretError::Write {
                path: path.to_owned(),
                source,
            })?,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(source) => {
            return Err(SecretError::Create {
                path: path.to_owned(),
                source,
            });
        }
    }
    std::fs::read_to_string(path)
        .map(|t| t.trim().to_owned())
        .map_err(read)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_proxy_credential_is_long_and_shared_through_its_file() {
        let short = ProxyCredentialConfig::with_token(Secret::new("short"));
        assert!(matches!(short.load(), Err(SecretError::ProxyTokenTooShort)));
        let dir = std::env::temp_dir().join(format!("strata-proxy-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
        let config = ProxyCredentialConfig {
            token: None,
            token_file: dir.join("proxy.token"),
        };
        let first = config.load().unwrap_or_else(|e| panic!("{e}"));
        let second = config.load().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            first.expose(),
            second.expose(),
            "a second process reads the same one"
        );
        assert!(first.expose().len() >= 32);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
