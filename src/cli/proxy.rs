//! `strata proxy`: the OpenAI-compatible routing proxy as its own process (stateless;
//! run as many replicas as the traffic needs), following a control plane.

use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use strata_aws::{DEFAULT_MANTLE_URL, UpstreamAuth};
use strata_contract::{DEFAULT_KEY_ISSUER, DEFAULT_PROXY_AUDIENCE, ProxyCredentialConfig};
use strata_proxy::{Proxy, ProxyConfig, ProxySettings};
use tokio_util::sync::CancellationToken;

#[derive(Debug, Args)]
pub struct ProxyArgs {
    #[command(flatten)]
    proxy: ProxyConfig,
    /// The control plane this proxy follows (policy snapshot, signing keys, usage).
    #[arg(
        long = "control-plane-url",
        env = "STRATA_CONTROL_PLANE_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    control_plane_url: String,
    #[command(flatten)]
    credential: ProxyCredentialConfig,
    /// `iss` the API keys carry (as the control plane signs them).
    #[arg(long = "key-issuer", env = "STRATA_KEY_ISSUER", default_value = DEFAULT_KEY_ISSUER)]
    key_issuer: String,
    /// `aud` the API keys carry.
    #[arg(long = "proxy-audience", env = "STRATA_PROXY_AUDIENCE", default_value = DEFAULT_PROXY_AUDIENCE)]
    proxy_audience: String,
    /// Mantle's base URL; `{region}` is replaced by the project's region.
    #[arg(long = "mantle-url", env = "STRATA_MANTLE_URL", default_value = DEFAULT_MANTLE_URL)]
    mantle_url: String,
}

/// How the proxy authenticates to Mantle: a Bedrock API key when configured, else
/// each project's role assumed with the process's own AWS credentials.
pub(super) async fn upstream_auth(config: &ProxyConfig) -> Arc<dyn UpstreamAuth> {
    let sdk = async {
        let sdk = strata_aws::sdk_config_from_env().await;
        if let Some(why) = strata_aws::probe_credentials(&sdk).await {
            tracing::warn!(reason = %why, "the proxy has no AWS credentials: it cannot assume project roles, so chat calls will fail with 502 until it has some (or set STRATA_BEDROCK_API_KEY)");
        }
        sdk
    };
    config.upstream_auth(sdk, "strata-proxy").await
}

/// Builds the proxy; `control_plane_url` is where it follows the control plane.
pub(super) async fn build(
    config: ProxyConfig,
    control_plane_url: String,
    credential: &ProxyCredentialConfig,
    key_issuer: &str,
    audience: &str,
    mantle_url: &str,
) -> anyhow::Result<Arc<Proxy>> {
    let credential = credential.load()?;
    let upstream = upstream_auth(&config).await;
    let control = reqwest::Client::builder()
        .connect_timeout(std::time::Duration::from_secs(5))
        .build()
        .context("building the HTTP client")?;
    let settings = ProxySettings {
        config,
        control_plane_url,
        credential,
        key_issuer: key_issuer.to_owned(),
        audience: audience.to_owned(),
        mantle_url: mantle_url.to_owned(),
    };
    Ok(Arc::new(Proxy::new(settings, control, upstream)?))
}

pub async fn run(args: ProxyArgs) -> anyhow::Result<()> {
    let listen = args.proxy.proxy_listen;
    let proxy = build(
        args.proxy,
        args.control_plane_url.clone(),
        &args.credential,
        &args.key_issuer,
        &args.proxy_audience,
        &args.mantle_url,
    )
    .await?;
    let listener =
        strata_proxy::listen(listen).with_context(|| format!("cannot listen on {listen}"))?;
    let shutdown = CancellationToken::new();
    tokio::spawn(super::shutdown_signal(shutdown.clone()));
    tracing::info!(http.listen = %listen, control_plane.url = %args.control_plane_url, "strata proxy listening");
    strata_proxy::serve(listener, proxy, shutdown).await?;
    tracing::info!("stopped");
    Ok(())
}
