//! `strata`: one binary, one subcommand per role. Each subcommand is a thin shell
//! over the library crates.

mod cli;
#[cfg(feature = "control-plane")]
mod client;

use clap::Parser;

/// mimalloc: the proxy allocates per request from both runtime threads, where glibc's
/// malloc showed up as lock contention in profiles (BENCHMARKS.md). Built without
/// transparent huge pages (they added ~9 MiB idle and ~30 MiB under 1,000 streams). `--no-default-features` keeps
/// glibc's malloc, for heap profilers that hook it (heaptrack).
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    cli::init_logging(&cli.log);
    let service = cli.command.is_service();
    match cli.run().await {
        Ok(code) => code,
        Err(err) => {
            // A service's end is also a log event; a command's error is for its user.
            if service {
                tracing::error!(error.cause = %format!("{err:#}"), "strata stopped with an error");
            }
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
