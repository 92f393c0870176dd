//! Command-line interface: flags, each also read from a `STRATA_*` variable.

mod costs;
mod health;
mod keys;
mod migrate;
mod proxy;
mod reconcile;
mod serve;
mod token;

use clap::{Args, Parser, Subcommand, ValueEnum};
use strata_core::config::DatabaseConfig;
use strata_core::store::Store;
use tracing_subscriber::EnvFilter;

#[derive(Debug, Parser)]
#[command(
    name = "strata",
    version,
    about = "Control plane for LLM workloads on Amazon Bedrock's OpenAI-compatible endpoint"
)]
pub struct Cli {
    #[command(flatten)]
    pub log: LogConfig,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the control plane (REST API, docs, health, metrics).
    Serve(Box<serve::ServeArgs>),
    /// Apply, revert or list database migrations.
    Migrate(migrate::MigrateArgs),
    /// Mint tokens from strata's local issuer.
    Token(token::TokenArgs),
    /// Run one reconcile pass over every project and exit (`--dry-run`: print the plan).
    Reconcile(reconcile::ReconcileArgs),
    /// Cost Explorer ingestion: refresh the stored daily cost by tag now.
    Costs(costs::CostsArgs),
    /// Scoped API keys: create one, rotate the signing key.
    Keys(keys::KeysArgs),
    /// Run the OpenAI-compatible routing proxy, following a control plane.
    Proxy(Box<proxy::ProxyArgs>),
    /// Ask a running strata's /healthz; exit 0 when healthy (the container's healthcheck).
    Health(health::HealthArgs),
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Json,
    Text,
}

#[derive(Debug, Args)]
pub struct LogConfig {
    /// Log line format.
    #[arg(
        long = "log-format",
        env = "STRATA_LOG_FORMAT",
        value_enum,
        default_value = "json",
        global = true
    )]
    pub format: LogFormat,
    /// Log filter (tracing `EnvFilter` syntax), e.g. `info` or `info,strata_core=debug`.
    #[arg(
        long = "log",
        env = "STRATA_LOG",
        default_value = "info",
        global = true
    )]
    pub filter: String,
}

pub fn init_logging(config: &LogConfig) {
    let filter = EnvFilter::try_new(format!(
        "{},sqlx=warn,sea_orm=warn,aws_config=error",
        config.filter
    ))
    .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match config.format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .init(),
        LogFormat::Text => builder.init(),
    }
}

impl Cli {
    pub async fn run(self) -> anyhow::Result<()> {
        match self.command {
            Command::Serve(args) => serve::run(*args).await,
            Command::Migrate(args) => migrate::run(args).await,
            Command::Token(args) => token::run(args).await,
            Command::Reconcile(args) => reconcile::run(args).await,
            Command::Costs(args) => costs::run(args).await,
            Command::Keys(args) => keys::run(args).await,
            Command::Proxy(args) => proxy::run(*args).await,
            Command::Health(args) => health::run(args).await,
        }
    }
}

async fn connect(config: &DatabaseConfig) -> anyhow::Result<Store> {
    Store::connect(config).await.map_err(|e| {
        anyhow::anyhow!(
            "cannot connect to the database at {}: {e} (set STRATA_DATABASE_URL; the default is an embedded SQLite file)",
            config.redacted_url()
        )
    })
}

/// A duration flag: a number with s, m, h or d (e.g. 90m, 12h, 30d), in seconds.
fn parse_duration(flag: &str, text: &str) -> anyhow::Result<i64> {
    use anyhow::{Context, bail};
    let (number, unit) = text.split_at(text.len().saturating_sub(1));
    let n: i64 = number
        .parse()
        .with_context(|| format!("{flag} '{text}': expected e.g. 90m, 12h or 30d"))?;
    let secs = match unit {
        "s" => n.checked_mul(1),
        "m" => n.checked_mul(60),
        "h" => n.checked_mul(3600),
        "d" => n.checked_mul(86_400),
        _ => bail!("{flag} '{text}': the unit must be s, m, h or d"),
    };
    secs.filter(|s| *s > 0)
        .with_context(|| format!("{flag} '{text}': must be positive and not absurdly long"))
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// Every subcommand's flags are unique and well-formed (clap checks at parse time,
    /// so a clash would otherwise surface only when that subcommand runs).
    #[test]
    fn command_line_is_well_formed() {
        super::Cli::command().debug_assert();
    }
}
