//! Where `strata login` keeps what it signed in with: `strata/credentials.toml` in the
//! user's config directory (`$XDG_CONFIG_HOME`, else `~/.config`), mode 0600.
//! `STRATA_URL` and `STRATA_TOKEN` (or `--url` / `--token`) take precedence, for CI.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

use super::ApiClient;
use super::device::Refresh;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Credentials {
    pub url: String,
    pub token: String,
    /// How the token was obtained: `device` (the identity provider) or `token`.
    pub method: String,
    /// With the device flow: how to renew the token before it expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh: Option<Refresh>,
}

/// Renew a token this close to its expiry (clocks differ a little).
const RENEW_BEFORE_SECS: i64 = 60;

/// `--url` / `--token` (also `STRATA_URL` / `STRATA_TOKEN`) on every client command.
#[derive(Debug, Clone, clap::Args)]
pub struct Target {
    /// The strata to talk to, e.g. https://strata.example.com (default: the one you
    /// logged in to).
    #[arg(long = "url", env = "STRATA_URL")]
    pub url: Option<String>,
    /// A bearer token (default: the one `strata login` stored).
    #[arg(
        long = "token",
        env = "STRATA_TOKEN",
        global = true,
        hide_env_values = true
    )]
    pub token: Option<String>,
}

impl Target {
    /// A client for the flags' strata, else the stored login's (renewed first when it
    /// is about to expire and the identity provider gave a refresh token).
    pub async fn client(&self) -> anyhow::Result<ApiClient> {
        let mut stored = load()?;
        if self.token.is_none()
            && let Some(credentials) = stored.as_mut()
        {
            renew_if_expiring(credentials).await?;
        }
        let url = self
            .url
            .clone()
            .or_else(|| stored.as_ref().map(|c| c.url.clone()));
        let token = self
            .token
            .clone()
            .or_else(|| stored.as_ref().map(|c| c.token.clone()));
        match (url, token) {
            (Some(url), Some(token)) => Ok(ApiClient::new(&url, &token)),
            (None, _) => bail!(
                "no strata to talk to: run `strata login --url URL`, or set STRATA_URL and STRATA_TOKEN"
            ),
            (Some(url), None) => {
                bail!("no token for {url}: run `strata login --url {url}`, or set STRATA_TOKEN")
            }
        }
    }
}

/// `exp` of a JWT, read without verifying it (strata verifies; this only decides
/// whether to renew).
fn expires_at(token: &str) -> Option<i64> {
    use base64::Engine;
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    serde_json::from_slice::<serde_json::Value>(&bytes).ok()?["exp"].as_i64()
}

async fn renew_if_expiring(credentials: &mut Credentials) -> anyhow::Result<()> {
    let Some(exp) = expires_at(&credentials.token) else {
        return Ok(());
    };
    let now = chrono::Utc::now().timestamp();
    if exp - now > RENEW_BEFORE_SECS {
        return Ok(());
    }
    let Some(refresh) = &credentials.refresh else {
        if exp <= now {
            bail!(
                "your sign-in to {} expired: run `strata login --url {}` again",
                credentials.url,
                credentials.url
            );
        }
        return Ok(());
    };
    let http = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .context("cannot start an HTTP client")?;
    let renewed = refresh.renew(&http).await.with_context(|| {
        format!(
            "your sign-in to {} expired and could not be renewed: run `strata login --url {}` again",
            credentials.url, credentials.url
        )
    })?;
    credentials.token = renewed.token;
    credentials.refresh = renewed.refresh;
    store(credentials)?;
    Ok(())
}

pub fn path() -> anyhow::Result<PathBuf> {
    let dir = dirs::config_dir()
        .context("cannot find your config directory: set XDG_CONFIG_HOME or HOME")?;
    Ok(dir.join("strata").join("credentials.toml"))
}

pub fn load() -> anyhow::Result<Option<Credentials>> {
    let path = path()?;
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    toml::from_str(&text)
        .map(Some)
        .with_context(|| format!("{} is not valid: run `strata login` again", path.display()))
}

/// Writes the file readable by its owner only (created 0600, never widened).
pub fn store(credentials: &Credentials) -> anyhow::Result<PathBuf> {
    let path = path()?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let text = toml::to_string(credentials).context("cannot encode the credentials")?;
    let partial = path.with_extension("toml.partial");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&partial)
        .with_context(|| format!("cannot write {}", partial.display()))?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", partial.display()))?;
    std::fs::rename(&partial, &path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

/// Removes the stored login; `false` when there was none.
pub fn remove() -> anyhow::Result<bool> {
    let path = path()?;
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e).with_context(|| format!("cannot remove {}", path.display())),
    }
}
