//! Configuration shared by the subcommands: flags, each also read from a `STRATA_*`
//! variable (clap `env`). Secrets are wrapped so they never print.

use std::path::PathBuf;

use clap::{ArgAction, Args};

// Shared with the proxy, so they live in the contract crate.
pub use strata_contract::{
    DEFAULT_KEY_ISSUER, DEFAULT_PROXY_AUDIENCE, ProxyCredentialConfig, Secret, SecretError,
    read_or_create_secret_file,
};

#[derive(Clone, Debug, Args)]
pub struct DatabaseConfig {
    /// Database URL: `sqlite://path?mode=rwc` (embedded default) or `postgres://…`.
    #[arg(
        long = "database-url",
        env = "STRATA_DATABASE_URL",
        default_value = "sqlite://strata.db?mode=rwc"
    )]
    pub url: Secret,
    /// Connections in the pool (default: 2 × CPU cores, at least 4).
    #[arg(
        long = "database-max-connections",
        env = "STRATA_DATABASE_MAX_CONNECTIONS"
    )]
    pub max_connections: Option<u32>,
    /// Seconds to wait when opening a connection.
    #[arg(
        long = "database-connect-timeout",
        env = "STRATA_DATABASE_CONNECT_TIMEOUT",
        default_value_t = 5
    )]
    pub connect_timeout_secs: u64,
    /// Seconds a request waits for a pooled connection before it gets 503.
    #[arg(
        long = "database-acquire-timeout",
        env = "STRATA_DATABASE_ACQUIRE_TIMEOUT",
        default_value_t = 3
    )]
    pub acquire_timeout_secs: u64,
}

impl DatabaseConfig {
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: Secret::new(url),
            max_connections: None,
            connect_timeout_secs: 5,
            acquire_timeout_secs: 3,
        }
    }

    /// A pool larger than the CPUs can serve only queues work inside the database
    /// (measured in BENCHMARKS.md): 2 × cores, at least 4, unless configured.
    pub fn pool_size(&self) -> u32 {
        self.max_connections.unwrap_or_else(|| {
            let cores = std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2);
            u32::try_from(cores * 2).unwrap_or(u32::MAX).max(4)
        })
    }

    /// The URL without its password, for logs.
    pub fn redacted_url(&self) -> String {
        redact_url(self.url.expose())
    }
}

/// Replaces the password of `scheme://user:password@host` with `***`.
/// A comma-separated setting's entries trimmed, empty ones dropped
/// (`STRATA_X=""` reaches clap as one empty entry).
pub fn clean_list(items: &[String]) -> Vec<String> {
    items
        .iter()
        .map(|i| i.trim().to_owned())
        .filter(|i| !i.is_empty())
        .collect()
}

pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (authority, tail) = rest.split_once('/').map_or((rest, ""), |(a, t)| (a, t));
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or_default();
            let slash = if rest.contains('/') { "/" } else { "" };
            format!("{scheme}://{user}:***@{host}{slash}{tail}")
        }
        None => url.to_owned(),
    }
}

#[derive(Clone, Debug, Args)]
pub struct AuthConfig {
    /// Accept tokens from strata's own issuer (`strata token mint`).
    #[arg(long = "local-issuer", env = "STRATA_LOCAL_ISSUER", default_value_t = true, action = ArgAction::Set)]
    pub local_issuer_enabled: bool,
    /// `iss` of tokens strata mints itself.
    #[arg(
        long = "local-issuer-name",
        env = "STRATA_LOCAL_ISSUER_NAME",
        default_value = "strata-local"
    )]
    pub local_issuer_name: String,
    /// `aud` that strata's own tokens carry.
    #[arg(
        long = "api-audience",
        env = "STRATA_API_AUDIENCE",
        default_value = "strata-api"
    )]
    pub audience: String,
    /// `iss` of the external OIDC identity provider; enables OIDC tokens.
    #[arg(
        long = "oidc-issuer",
        env = "STRATA_OIDC_ISSUER",
        requires = "oidc_jwks_url"
    )]
    pub oidc_issuer: Option<String>,
    /// URL of the identity provider's JWKS document.
    #[arg(
        long = "oidc-jwks-url",
        env = "STRATA_OIDC_JWKS_URL",
        requires = "oidc_issuer"
    )]
    pub oidc_jwks_url: Option<String>,
    /// `aud` expected in OIDC tokens (defaults to --api-audience).
    #[arg(long = "oidc-audience", env = "STRATA_OIDC_AUDIENCE")]
    pub oidc_audience: Option<String>,
    /// Claim of the OIDC token that lists the user's groups.
    #[arg(
        long = "oidc-groups-claim",
        env = "STRATA_OIDC_GROUPS_CLAIM",
        default_value = "groups"
    )]
    pub oidc_groups_claim: String,
    /// OAuth client id (a public client) that `strata login` signs in with, by the
    /// device authorization grant at STRATA_OIDC_ISSUER; unset: `login` asks for a token.
    #[arg(
        long = "oidc-cli-client-id",
        env = "STRATA_OIDC_CLI_CLIENT_ID",
        requires = "oidc_issuer"
    )]
    pub oidc_cli_client_id: Option<String>,
    /// Scopes `strata login` asks for.
    #[arg(
        long = "oidc-cli-scopes",
        env = "STRATA_OIDC_CLI_SCOPES",
        default_value = "openid profile email"
    )]
    pub oidc_cli_scopes: String,
    /// Which token of the identity provider's answer `strata login` keeps: the one
    /// whose `aud` is STRATA_OIDC_AUDIENCE (`access_token` or `id_token`).
    #[arg(
        long = "oidc-cli-token",
        env = "STRATA_OIDC_CLI_TOKEN",
        default_value = "access_token",
        value_parser = ["access_token", "id_token"]
    )]
    pub oidc_cli_token: String,
    /// RBAC table (roles → permissions, IdP groups → roles); defaults to the built-in
    /// copy of `policies/rbac.toml`.
    #[arg(long = "rbac-file", env = "STRATA_RBAC_FILE")]
    pub rbac_file: Option<PathBuf>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            local_issuer_enabled: true,
            local_issuer_name: "strata-local".into(),
            audience: "strata-api".into(),
            oidc_issuer: None,
            oidc_jwks_url: None,
            oidc_audience: None,
            oidc_groups_claim: "groups".into(),
            oidc_cli_client_id: None,
            oidc_cli_scopes: "openid profile email".into(),
            oidc_cli_token: "access_token".into(),
            rbac_file: None,
        }
    }
}

/// Scoped API keys: who signs them, for which audience, how long they may live, and
/// the key that encrypts the signing keys at rest.
#[derive(Clone, Debug, Args)]
pub struct KeysConfig {
    /// Key that encrypts signing keys in the database: base64 of 32 random bytes
    /// (`openssl rand -base64 32`). Every replica needs the same one.
    #[arg(long = "key-encryption-key", env = "STRATA_KEY_ENCRYPTION_KEY")]
    pub encryption_key: Option<Secret>,
    /// File holding that key, used when STRATA_KEY_ENCRYPTION_KEY is unset; created
    /// (mode 0600) on first use, so the embedded default needs no configuration.
    #[arg(
        long = "key-encryption-key-file",
        env = "STRATA_KEY_ENCRYPTION_KEY_FILE",
        default_value = "strata-secret.key"
    )]
    pub encryption_key_file: PathBuf,
    /// `iss` of the API keys strata signs.
    #[arg(
        long = "key-issuer",
        env = "STRATA_KEY_ISSUER",
        default_value = DEFAULT_KEY_ISSUER
    )]
    pub key_issuer: String,
    /// `aud` of the API keys: the proxy, which accepts nothing else.
    #[arg(
        long = "proxy-audience",
        env = "STRATA_PROXY_AUDIENCE",
        default_value = DEFAULT_PROXY_AUDIENCE
    )]
    pub proxy_audience: String,
    /// Longest lifetime of a key in `dev`, in days (also the default lifetime).
    #[arg(long = "key-max-days-dev", env = "STRATA_KEY_MAX_DAYS_DEV", default_value_t = 365, value_parser = clap::value_parser!(u32).range(1..=3650))]
    pub max_days_dev: u32,
    /// Longest lifetime of a key in `staging`, in days (also the default lifetime).
    #[arg(long = "key-max-days-staging", env = "STRATA_KEY_MAX_DAYS_STAGING", default_value_t = 180, value_parser = clap::value_parser!(u32).range(1..=3650))]
    pub max_days_staging: u32,
    /// Longest lifetime of a key in `prod`, in days (also the default lifetime).
    #[arg(long = "key-max-days-prod", env = "STRATA_KEY_MAX_DAYS_PROD", default_value_t = 90, value_parser = clap::value_parser!(u32).range(1..=3650))]
    pub max_days_prod: u32,
}

impl KeysConfig {
    /// Defaults, with the encryption key given directly (tests, tools).
    pub fn with_encryption_key(key: Secret) -> Self {
        Self {
            encryption_key: Some(key),
            encryption_key_file: PathBuf::from("strata-secret.key"),
            key_issuer: DEFAULT_KEY_ISSUER.into(),
            proxy_audience: DEFAULT_PROXY_AUDIENCE.into(),
            max_days_dev: 365,
            max_days_staging: 180,
            max_days_prod: 90,
        }
    }

    /// The longest lifetime of a key in `environment`, in seconds.
    pub fn max_lifetime_secs(&self, environment: crate::domain::Environment) -> i64 {
        use crate::domain::Environment;
        let days = match environment {
            Environment::Dev => self.max_days_dev,
            Environment::Staging => self.max_days_staging,
            Environment::Prod => self.max_days_prod,
        };
        i64::from(days) * 86_400
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_and_urls_do_not_print() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s} {s:?}"), "[redacted] [redacted]");
        assert_eq!(
            redact_url("postgres://app:hunter2@db:5432/strata"),
            "postgres://app:***@db:5432/strata"
        );
        assert_eq!(
            redact_url("sqlite://strata.db?mode=rwc"),
            "sqlite://strata.db?mode=rwc"
        );
        assert_eq!(redact_url("postgres://db/strata"), "postgres://db/strata");
    }
}

/// Notification delivery: how often, how refusals are retried, what is watched for,
/// and the SMTP server e-mail destinations are sent through.
#[derive(Clone, Debug, Args)]
pub struct NotifyConfig {
    /// Seconds between notification delivery passes (every replica runs them; each
    /// delivery is leased to one); 0 turns delivery off on this replica.
    #[arg(
        long = "notify-interval-secs",
        env = "STRATA_NOTIFY_INTERVAL_SECS",
        default_value_t = 5
    )]
    pub interval_secs: u64,
    /// Seconds before a refused notification is retried; each retry doubles it, up to
    /// an hour, for 10 attempts.
    #[arg(
        long = "notify-retry-base-secs",
        env = "STRATA_NOTIFY_RETRY_BASE_SECS",
        default_value_t = 30
    )]
    pub retry_base_secs: u64,
    /// Announce a key this many days before it expires.
    #[arg(
        long = "notify-key-expiry-days",
        env = "STRATA_NOTIFY_KEY_EXPIRY_DAYS",
        default_value_t = 7
    )]
    pub key_expiry_days: u32,
    /// Announce a project whose reconcile has failed for this many minutes.
    #[arg(
        long = "notify-reconcile-failing-minutes",
        env = "STRATA_NOTIFY_RECONCILE_FAILING_MINUTES",
        default_value_t = 30
    )]
    pub reconcile_failing_minutes: u32,
    /// SMTP server for e-mail destinations: `smtp://user:pass@host:587?tls=required`
    /// (STARTTLS), `smtps://user:pass@host:465` (TLS), or `smtp://host:25` (no TLS: a
    /// relay on a private network).
    #[arg(long = "smtp-url", env = "STRATA_SMTP_URL", hide_env_values = true)]
    pub smtp_url: Option<Secret>,
    /// The sender of notification e-mails.
    #[arg(
        long = "smtp-from",
        env = "STRATA_SMTP_FROM",
        default_value = "strata <strata@localhost>"
    )]
    pub smtp_from: String,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        Self {
            interval_secs: 5,
            retry_base_secs: 30,
            key_expiry_days: 7,
            reconcile_failing_minutes: 30,
            smtp_url: None,
            smtp_from: "strata <strata@localhost>".into(),
        }
    }
}
