//! The proxy's own settings. What it shares with the control plane (key issuer and
//! audience, the proxy credential, Mantle's URL) is configured where the control plane
//! configures it, so `strata serve` can run the proxy with the same flags.

use std::net::SocketAddr;

use clap::Args;
use strata_contract::Secret;

use crate::limits::OnStoreError;

#[derive(Clone, Debug, Args)]
pub struct ProxyConfig {
    /// Address the OpenAI-compatible proxy listens on.
    #[arg(
        long = "proxy-listen",
        env = "STRATA_PROXY_LISTEN",
        default_value = "127.0.0.1:8081"
    )]
    pub proxy_listen: SocketAddr,
    /// Seconds the proxy keeps serving from its last policy snapshot while the control
    /// plane does not answer; after that it refuses requests (503) until it does.
    #[arg(
        long = "proxy-max-staleness",
        env = "STRATA_PROXY_MAX_STALENESS_SECS",
        default_value_t = 300
    )]
    pub max_staleness_secs: u64,
    /// A long-term Bedrock API key to call Mantle with for every project, instead of
    /// each project's IAM role (weaker: AWS then applies the key's own permissions, not
    /// the project's model list; strata still does).
    #[arg(long = "bedrock-api-key", env = "STRATA_BEDROCK_API_KEY")]
    pub bedrock_api_key: Option<Secret>,
    /// Call Mantle with short-term Bedrock API keys minted per project from its assumed
    /// role (one region, renewed before they expire) instead of SigV4; AWS still
    /// applies each project's policy. For networks that pass bearer tokens only.
    #[arg(
        long = "short-term-api-keys",
        env = "STRATA_SHORT_TERM_API_KEYS",
        default_value_t = false
    )]
    pub short_term_api_keys: bool,
    /// Seconds a non-streaming call to Mantle may take in all.
    #[arg(
        long = "upstream-timeout",
        env = "STRATA_PROXY_UPSTREAM_TIMEOUT_SECS",
        default_value_t = 300
    )]
    pub upstream_timeout_secs: u64,
    /// Seconds a stream from Mantle may stay silent before the proxy gives up on it.
    #[arg(
        long = "upstream-idle-timeout",
        env = "STRATA_PROXY_UPSTREAM_IDLE_TIMEOUT_SECS",
        default_value_t = 120
    )]
    pub upstream_idle_timeout_secs: u64,
    /// Seconds between usage flushes to the control plane (and on shutdown).
    #[arg(
        long = "usage-flush",
        env = "STRATA_PROXY_USAGE_FLUSH_SECS",
        default_value_t = 10
    )]
    pub usage_flush_secs: u64,
    /// Largest request body accepted, in bytes (images inline make bodies large).
    #[arg(long = "proxy-max-body", env = "STRATA_PROXY_MAX_BODY_BYTES", default_value_t = 16 * 1024 * 1024)]
    pub proxy_max_body_bytes: usize,
    /// Redis for rate limits and budgets shared by every proxy replica, and for the
    /// owners of new Responses ids (`redis://host:6379/0`). Unset: counted in this
    /// process (right for one proxy).
    #[arg(long = "redis-url", env = "STRATA_REDIS_URL")]
    pub redis_url: Option<Secret>,
    /// Prefix of strata's Redis keys (several installations can share one Redis).
    #[arg(
        long = "redis-key-prefix",
        env = "STRATA_REDIS_KEY_PREFIX",
        default_value = "strata"
    )]
    pub redis_key_prefix: String,
    /// With Redis: how many requests' worth of each limit counter a replica takes at
    /// once, to admit the next requests without a round trip (at most a sixteenth of
    /// what is left under the limit; given back after a second unused). 0: every
    /// request asks Redis (exact `x-ratelimit-remaining-*`, no room held by one
    /// replica).
    #[arg(
        long = "limit-slice",
        env = "STRATA_PROXY_LIMIT_SLICE",
        default_value_t = crate::limits::DEFAULT_SLICE_REQUESTS
    )]
    pub limit_slice: u32,
    /// Output tokens reserved against limits and budgets for a request that sets no
    /// `max_tokens` (settled to the real count when it ends).
    #[arg(
        long = "default-max-tokens",
        env = "STRATA_PROXY_DEFAULT_MAX_TOKENS",
        default_value_t = 4096
    )]
    pub default_max_tokens: u64,
    /// When the limits store (Redis) fails: `allow` forwards requests unlimited
    /// (counted in metrics), `deny` refuses them with 503.
    #[arg(
        long = "limits-on-store-error",
        env = "STRATA_PROXY_LIMITS_ON_STORE_ERROR",
        value_enum,
        default_value = "allow"
    )]
    pub limits_on_store_error: OnStoreError,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        Self {
            proxy_listen: SocketAddr::from(([127, 0, 0, 1], 8081)),
            max_staleness_secs: 300,
            bedrock_api_key: None,
            short_term_api_keys: false,
            upstream_timeout_secs: 300,
            upstream_idle_timeout_secs: 120,
            usage_flush_secs: 10,
            proxy_max_body_bytes: 16 * 1024 * 1024,
            redis_url: None,
            redis_key_prefix: "strata".into(),
            limit_slice: crate::limits::DEFAULT_SLICE_REQUESTS,
            default_max_tokens: 4096,
            limits_on_store_error: OnStoreError::Allow,
        }
    }
}

/// Everything the proxy needs, wherever it came from.
#[derive(Clone, Debug)]
pub struct ProxySettings {
    pub config: ProxyConfig,
    /// e.g. `http://127.0.0.1:8080`.
    pub control_plane_url: String,
    pub credential: Secret,
    pub key_issuer: String,
    pub audience: String,
    /// Mantle's base URL with `{region}` in it.
    pub mantle_url: String,
}

impl ProxyConfig {
    /// How the proxy signs its calls to Mantle: with the configured long-term Bedrock
    /// API key, else as each project's IAM role (assumed with the credentials of `sdk`,
    /// only loaded in that case), by SigV4 or by short-term API keys minted from it.
    pub async fn upstream_auth(
        &self,
        sdk: impl std::future::Future<Output = strata_aws::SdkConfig>,
        session_name: &str,
    ) -> std::sync::Arc<dyn strata_aws::UpstreamAuth> {
        match &self.bedrock_api_key {
            Some(key) => std::sync::Arc::new(strata_aws::BedrockApiKey::new(key.expose())),
            None if self.short_term_api_keys => {
                std::sync::Arc::new(strata_aws::ShortTermApiKeys::new(
                    &sdk.await,
                    strata_aws::AwsCalls::new(),
                    session_name,
                ))
            }
            None => std::sync::Arc::new(strata_aws::AssumedRoles::new(
                &sdk.await,
                strata_aws::AwsCalls::new(),
                session_name,
            )),
        }
    }
}
