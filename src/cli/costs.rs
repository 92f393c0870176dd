//! `strata costs`: cost by project or tag from a remote strata; `strata costs refresh`:
//! one cost refresh now on the server (the same rules and call budget as the scheduled
//! one in `strata serve`), then a summary.

use std::sync::Arc;

use anyhow::Context;
use clap::{Args, Subcommand};
use strata_aws::{AwsCalls, AwsClients, AwsSettings};
use strata_core::clock::{Clock, SystemClock};
use strata_core::config::DatabaseConfig;
use strata_core::services::Services;
use strata_costs::CostConfig;

use super::output::{Output, OutputArg, cell, print};
use crate::client::credentials::Target;
use crate::client::encode;

/// Without a subcommand: cost by project (or tag) from a remote strata's store.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct CostsArgs {
    #[command(subcommand)]
    action: Option<CostsAction>,
    #[command(flatten)]
    show: ShowArgs,
}

#[derive(Debug, Subcommand)]
enum CostsAction {
    /// On the server, with its database: fetch from Cost Explorer what is missing or
    /// restated, within today's call budget.
    Refresh(RefreshArgs),
}

#[derive(Debug, Args)]
struct ShowArgs {
    #[command(flatten)]
    target: Target,
    #[command(flatten)]
    output: OutputArg,
    /// One environment (dev, staging, prod); default: every environment.
    #[arg(long = "env")]
    env: Option<String>,
    /// `project` (default), `environment` or `tag:<key>`.
    #[arg(long = "group-by")]
    group_by: Option<String>,
    /// First day (YYYY-MM-DD); default: the first of this month.
    #[arg(long)]
    from: Option<String>,
    /// Last day, exclusive (YYYY-MM-DD); default: tomorrow.
    #[arg(long)]
    to: Option<String>,
}

async fn show(args: ShowArgs) -> anyhow::Result<()> {
    let client = args.target.client().await?;
    let mut query = Vec::new();
    for (name, value) in [
        ("environment", &args.env),
        ("group_by", &args.group_by),
        ("from", &args.from),
        ("to", &args.to),
    ] {
        if let Some(v) = value {
            query.push(format!("{name}={}", encode(v)));
        }
    }
    let report = client
        .get(&format!("/costs?{}", query.join("&")))
        .await?
        .body;
    let mut rows: Vec<Vec<String>> = report["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|g| {
            let name = if g["untagged"] == true {
                "(untagged)".to_owned()
            } else if g["project_name"].is_string() {
                cell(&g["project_name"])
            } else {
                cell(&g["value"])
            };
            vec![
                name,
                format!("{:.2}", g["amount_usd"].as_f64().unwrap_or_default()),
            ]
        })
        .collect();
    rows.push(vec![
        "TOTAL".into(),
        format!("{:.2}", report["total_usd"].as_f64().unwrap_or_default()),
    ]);
    print(
        args.output.output,
        &report,
        &[
            &report["group_by"]
                .as_str()
                .unwrap_or("group")
                .to_uppercase(),
            "USD",
        ],
        rows,
    );
    if args.output.output == Output::Table {
        eprintln!(
            "{} to {} (exclusive){}",
            cell(&report["from"]),
            cell(&report["to"]),
            if report["estimated"] == true {
                "; recent days may still be restated by Cost Explorer"
            } else {
                ""
            }
        );
    }
    Ok(())
}

#[derive(Debug, Args)]
struct RefreshArgs {
    #[command(flatten)]
    database: DatabaseConfig,
    #[command(flatten)]
    costs: CostConfig,
}

pub async fn run(args: CostsArgs) -> anyhow::Result<()> {
    match args.action {
        Some(CostsAction::Refresh(args)) => refresh(args).await,
        None => show(args.show).await,
    }
}

async fn refresh(args: RefreshArgs) -> anyhow::Result<()> {
    let store = super::connect(&args.database).await?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let aws = AwsClients::from_env(
        &AwsSettings {
            mantle_url: strata_aws::DEFAULT_MANTLE_URL.into(),
        },
        AwsCalls::new(),
    )
    .await;
    if let Some(why) = &aws.unavailable {
        anyhow::bail!("AWS is not configured ({why}); Cost Explorer cannot be asked");
    }
    let services = Services::new(store, clock);
    let report = strata_costs::refresh(&services, aws.cost_usage.as_ref(), &args.costs.settings())
        .await
        .context("refreshing costs")?;
    println!(
        "{} Cost Explorer call(s); {} day × group figure(s) stored; refreshed: {}",
        report.calls,
        report.rows,
        if report.refreshed.is_empty() {
            "nothing".to_owned()
        } else {
            report.refreshed.join(", ")
        }
    );
    if !report.forecasts.is_empty() {
        println!(
            "month-end forecast asked for: {}",
            report.forecasts.join(", ")
        );
    }
    if report.budget_exhausted {
        println!(
            "Today's call budget ({} calls, STRATA_COST_DAILY_CALL_BUDGET) is spent; the rest waits for tomorrow.",
            args.costs.daily_call_budget
        );
    }
    if report.unattributed_rows > 0 {
        println!(
            "{} row(s), ${:.2}, name an environment or project strata does not know: stored as reported, counted as unattributed",
            report.unattributed_rows,
            report.unattributed_micros as f64 / 1e6
        );
    }
    for row in &report.skipped {
        eprintln!("left out: {row}");
    }
    for (key, why) in &report.failed {
        eprintln!("{key}: {why}");
    }
    if !report.failed.is_empty() {
        anyhow::bail!(
            "Cost Explorer refused {} of the queries",
            report.failed.len()
        );
    }
    Ok(())
}
