//! `strata costs refresh`: one cost refresh now (the same rules and call budget as
//! the scheduled one in `strata serve`), then a summary.

use std::sync::Arc;

use anyhow::Context;
use clap::{Args, Subcommand};
use strata_aws::{AwsCalls, AwsClients, AwsSettings};
use strata_core::clock::{Clock, SystemClock};
use strata_core::config::DatabaseConfig;
use strata_core::services::Services;
use strata_costs::CostConfig;

#[derive(Debug, Args)]
pub struct CostsArgs {
    #[command(subcommand)]
    action: CostsAction,
}

#[derive(Debug, Subcommand)]
enum CostsAction {
    /// Fetch from Cost Explorer what is missing or restated, within today's call budget.
    Refresh(RefreshArgs),
}

#[derive(Debug, Args)]
struct RefreshArgs {
    #[command(flatten)]
    database: DatabaseConfig,
    #[command(flatten)]
    costs: CostConfig,
}

pub async fn run(args: CostsArgs) -> anyhow::Result<()> {
    let CostsAction::Refresh(args) = args.action;
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
