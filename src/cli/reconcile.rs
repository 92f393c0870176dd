//! `strata reconcile`: one pass over every project, then exit; `--dry-run` prints
//! the plan instead of making changes.

use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use clap::Args;
use strata_aws::{AwsCalls, AwsClients, AwsSettings};
use strata_core::clock::{Clock, SystemClock};
use strata_core::config::DatabaseConfig;
use strata_core::services::Services;
use strata_reconciler::{ChangeAction, Reconciler, ReconcilerConfig};

#[derive(Debug, Args)]
pub struct ReconcileArgs {
    /// Show what a pass would change, per project and resource, without changing it.
    #[arg(long)]
    dry_run: bool,
    /// Only this project (id).
    #[arg(long)]
    project: Option<uuid::Uuid>,
    #[command(flatten)]
    database: DatabaseConfig,
    #[command(flatten)]
    reconciler: ReconcilerConfig,
}

/// Builds the reconciler with the standard AWS configuration chain.
pub async fn reconciler(
    store: strata_core::store::Store,
    config: ReconcilerConfig,
    clock: Arc<dyn Clock>,
) -> Reconciler {
    let settings = AwsSettings {
        mantle_url: config.mantle_url.clone(),
    };
    let aws = AwsClients::from_env(&settings, AwsCalls::new()).await;
    Reconciler::new(store, aws, config, clock)
}

fn verb(action: ChangeAction) -> &'static str {
    match action {
        ChangeAction::Create => "create",
        ChangeAction::Update => "update",
        ChangeAction::Delete => "delete",
    }
}

pub async fn run(args: ReconcileArgs) -> anyhow::Result<()> {
    let store = super::connect(&args.database).await?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let reconciler = reconciler(store.clone(), args.reconciler, clock.clone()).await;
    if let Some(why) = &reconciler.aws().unavailable {
        eprintln!("AWS is not configured ({why}).");
        if !args.dry_run {
            anyhow::bail!(
                "nothing to do without AWS credentials; `strata reconcile --dry-run` shows the plan"
            );
        }
        eprintln!("The plan assumes an empty account.");
    }
    let started = Instant::now();
    let before = reconciler.aws().calls.snapshot();
    let exit_failed = if args.dry_run {
        let services = Services::new(store, clock);
        let ids = match args.project {
            Some(id) => vec![id],
            None => services
                .live_project_ids()
                .await
                .context("listing projects")?,
        };
        let mut blocked = 0;
        for id in ids {
            let project = services
                .get_project(id)
                .await
                .context("loading the project")?;
            let plan = reconciler.plan(&project).await;
            println!(
                "project {} ({}, {}), generation {}:",
                project.name, project.environment, id, plan.generation
            );
            if plan.changes.is_empty() && plan.blocked.is_none() {
                println!("  in sync: no changes");
            }
            for c in &plan.changes {
                println!("  {:<6} {:<40} {}", verb(c.action), c.resource, c.summary);
                if let (Some(b), Some(a)) = (&c.before, &c.after) {
                    println!("         before: {b}\n         after:  {a}");
                } else if let Some(a) = &c.after {
                    println!("         {a}");
                }
            }
            if let Some(why) = &plan.blocked {
                blocked += 1;
                println!("  blocked: {why}");
            }
        }
        blocked > 0
    } else {
        let summary = match args.project {
            Some(id) => reconciler.run_for(&[id]).await,
            None => reconciler.run_once().await,
        }?;
        for (id, c) in &summary.changes {
            println!(
                "{id}  {:<6} {:<40} {}",
                verb(c.action),
                c.resource,
                c.summary
            );
        }
        for (id, why) in &summary.failed {
            println!("{id}  FAILED {why}");
        }
        println!(
            "{} project(s): {} in sync, {} failed, {} skipped (held by another replica); {} change(s)",
            summary.projects,
            summary.ready,
            summary.failed.len(),
            summary.skipped,
            summary.changes.len()
        );
        !summary.failed.is_empty()
    };
    let calls = reconciler.aws().calls.snapshot().since(&before);
    println!(
        "AWS calls: {} ({} mutating, {} read) in {:.1} s",
        calls.total(),
        calls.mutating(),
        calls.reads(),
        started.elapsed().as_secs_f64()
    );
    if exit_failed {
        std::process::exit(2);
    }
    Ok(())
}
