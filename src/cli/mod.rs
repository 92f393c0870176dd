//! Command-line interface: flags, each also read from a `STRATA_*` variable.
//!
//! Without the `control-plane` feature (on by default) only `proxy` and `health` are
//! built: the proxy's own image (deploy/Dockerfile, `--target proxy`), which carries
//! none of the control plane's code — strata-core, database drivers, IAM
//! administration, the UI — nor the client commands, which validate project files
//! with strata-core's rules.

#[cfg(feature = "control-plane")]
mod apply;
#[cfg(feature = "control-plane")]
mod costs;
mod health;
#[cfg(feature = "control-plane")]
mod keys;
#[cfg(feature = "control-plane")]
mod login;
#[cfg(feature = "control-plane")]
mod migrate;
#[cfg(feature = "control-plane")]
mod output;
#[cfg(feature = "control-plane")]
mod projects;
mod proxy;
#[cfg(feature = "control-plane")]
mod reconcile;
#[cfg(feature = "control-plane")]
mod serve;
#[cfg(feature = "control-plane")]
mod token;

use clap::{Args, Parser, Subcommand, ValueEnum};
#[cfg(feature = "control-plane")]
use strata_core::config::DatabaseConfig;
#[cfg(feature = "control-plane")]
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
    #[cfg(feature = "control-plane")]
    Serve(Box<serve::ServeArgs>),
    /// Apply, revert or list database migrations.
    #[cfg(feature = "control-plane")]
    Migrate(migrate::MigrateArgs),
    /// Mint tokens from strata's local issuer.
    #[cfg(feature = "control-plane")]
    Token(token::TokenArgs),
    /// Run one reconcile pass over every project and exit (`--dry-run`: print the plan).
    #[cfg(feature = "control-plane")]
    Reconcile(reconcile::ReconcileArgs),
    /// Cost by project or tag from a remote strata; `costs refresh`: Cost Explorer
    /// ingestion now, on the server.
    #[cfg(feature = "control-plane")]
    Costs(costs::CostsArgs),
    /// Scoped API keys: create, list and revoke them on a remote strata; sign one or
    /// rotate the signing key on the server.
    #[cfg(feature = "control-plane")]
    Keys(keys::KeysArgs),
    /// Sign in to a remote strata (the identity provider's device flow, or a token).
    #[cfg(feature = "control-plane")]
    Login(login::LoginArgs),
    /// Forget the stored sign-in.
    #[cfg(feature = "control-plane")]
    Logout,
    /// Who the stored sign-in (or STRATA_TOKEN) is, and where.
    #[cfg(feature = "control-plane")]
    Whoami(login::WhoamiArgs),
    /// Compare project files with a remote strata and print what `apply` would change.
    #[cfg(feature = "control-plane")]
    Plan(apply::PlanArgs),
    /// Make a remote strata's projects match the project files (or a saved plan).
    #[cfg(feature = "control-plane")]
    Apply(apply::ApplyArgs),
    /// Read projects on a remote strata.
    #[cfg(feature = "control-plane")]
    Projects(projects::ProjectsArgs),
    /// A project's usage through the proxy: requests, tokens, estimated cost.
    #[cfg(feature = "control-plane")]
    Usage(projects::UsageArgs),
    /// Run the OpenAI-compatible routing proxy, following a control plane.
    Proxy(Box<proxy::ProxyArgs>),
    /// Ask a running strata's /healthz; exit 0 when healthy (the container's healthcheck).
    Health(health::HealthArgs),
}

impl Command {
    /// The long-running servers, whose logs are collected.
    pub fn is_service(&self) -> bool {
        match self {
            #[cfg(feature = "control-plane")]
            Self::Serve(_) => true,
            Self::Proxy(_) => true,
            _ => false,
        }
    }
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
    /// Runs the command; its exit code is 0 unless it says otherwise (`plan
    /// --detailed-exitcode`), and 1 on an error.
    pub async fn run(self) -> anyhow::Result<std::process::ExitCode> {
        let done = |()| std::process::ExitCode::SUCCESS;
        match self.command {
            #[cfg(feature = "control-plane")]
            Command::Plan(args) => apply::plan(args).await,
            #[cfg(feature = "control-plane")]
            Command::Apply(args) => apply::apply(args).await,
            #[cfg(feature = "control-plane")]
            Command::Login(args) => login::login(args).await.map(done),
            #[cfg(feature = "control-plane")]
            Command::Logout => login::logout().await.map(done),
            #[cfg(feature = "control-plane")]
            Command::Whoami(args) => login::whoami(args).await.map(done),
            #[cfg(feature = "control-plane")]
            Command::Projects(args) => projects::run(args).await.map(done),
            #[cfg(feature = "control-plane")]
            Command::Usage(args) => projects::usage(args).await.map(done),
            #[cfg(feature = "control-plane")]
            Command::Serve(args) => serve::run(*args).await.map(done),
            #[cfg(feature = "control-plane")]
            Command::Migrate(args) => migrate::run(args).await.map(done),
            #[cfg(feature = "control-plane")]
            Command::Token(args) => token::run(args).await.map(done),
            #[cfg(feature = "control-plane")]
            Command::Reconcile(args) => reconcile::run(args).await.map(done),
            #[cfg(feature = "control-plane")]
            Command::Costs(args) => costs::run(args).await.map(done),
            #[cfg(feature = "control-plane")]
            Command::Keys(args) => keys::run(args).await.map(done),
            Command::Proxy(args) => proxy::run(*args).await.map(done),
            Command::Health(args) => health::run(args).await.map(done),
        }
    }
}

/// Cancels `token` on SIGTERM or Ctrl-C (the graceful stop of `serve` and `proxy`).
async fn shutdown_signal(token: tokio_util::sync::CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error.cause = %e, "cannot listen for SIGTERM; only Ctrl-C stops the server");
            let _ = ctrl_c.await;
            token.cancel();
            return;
        }
    };
    tokio::select! {
        _ = ctrl_c => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutdown signal received; finishing in-flight requests");
    token.cancel();
}

#[cfg(feature = "control-plane")]
async fn connect(config: &DatabaseConfig) -> anyhow::Result<Store> {
    Store::connect(config).await.map_err(|e| {
        anyhow::anyhow!(
            "cannot connect to the database at {}: {e} (set STRATA_DATABASE_URL; the default is an embedded SQLite file)",
            config.redacted_url()
        )
    })
}

/// A duration flag: a number with s, m, h or d (e.g. 90m, 12h, 30d), in seconds.
#[cfg(feature = "control-plane")]
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
