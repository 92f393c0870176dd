//! `strata health`: asks a running strata's `/healthz` and exits 0 when it answers 200
//! — the container image's HEALTHCHECK, which has no shell or curl.

use std::time::Duration;

use clap::Args;

#[derive(Debug, Args)]
pub struct HealthArgs {
    /// The health endpoint to ask (the proxy's is on its own port, e.g.
    /// http://127.0.0.1:8081/healthz).
    #[arg(
        long,
        env = "STRATA_HEALTH_URL",
        default_value = "http://127.0.0.1:8080/healthz"
    )]
    url: String,
    /// Seconds to wait for the answer.
    #[arg(long, default_value_t = 3)]
    timeout: u64,
}

pub async fn run(args: HealthArgs) -> anyhow::Result<()> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(args.timeout))
        .build()?;
    let response = client
        .get(&args.url)
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("{} did not answer: {}", args.url, e.without_url()))?;
    anyhow::ensure!(
        response.status().is_success(),
        "{} answered HTTP {}",
        args.url,
        response.status().as_u16()
    );
    println!("ok");
    Ok(())
}
