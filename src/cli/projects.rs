//! `strata projects list|get` and `strata usage`: reading projects over the REST API.

use clap::{Args, Subcommand};
use serde_json::Value;

use super::output::{OutputArg, cell, print};
use crate::client::credentials::Target;
use crate::client::encode;

#[derive(Debug, Args)]
pub struct ProjectsArgs {
    #[command(subcommand)]
    action: ProjectsAction,
}

#[derive(Debug, Subcommand)]
enum ProjectsAction {
    /// The projects you may see.
    List(ListArgs),
    /// One project: `NAME`, `ENV/NAME` or its id.
    Get(GetArgs),
}

#[derive(Debug, Args)]
struct ListArgs {
    #[command(flatten)]
    target: Target,
    #[command(flatten)]
    output: OutputArg,
    /// Only this environment's (dev, staging, prod).
    #[arg(long = "env")]
    env: Option<String>,
    /// Only this team's.
    #[arg(long)]
    team: Option<String>,
    /// Archived ones too.
    #[arg(long)]
    all: bool,
}

#[derive(Debug, Args)]
struct GetArgs {
    #[command(flatten)]
    target: Target,
    #[command(flatten)]
    output: OutputArg,
    project: String,
}

pub async fn run(args: ProjectsArgs) -> anyhow::Result<()> {
    match args.action {
        ProjectsAction::List(args) => list(args).await,
        ProjectsAction::Get(args) => get(args).await,
    }
}

async fn list(args: ListArgs) -> anyhow::Result<()> {
    let client = args.target.client().await?;
    let mut query = Vec::new();
    if !args.all {
        query.push("status=active".to_owned());
    }
    if let Some(env) = &args.env {
        query.push(format!("environment={}", encode(env)));
    }
    if let Some(team) = &args.team {
        query.push(format!("team={}", encode(team)));
    }
    let projects = client
        .list_all(&format!("/projects?{}", query.join("&")))
        .await?;
    let rows = projects
        .iter()
        .map(|p| {
            vec![
                cell(&p["name"]),
                cell(&p["environment"]),
                cell(&p["team"]),
                cell(&p["region"]),
                cell(&p["status"]),
                ready(p),
                cell(&p["allowed_models"]),
            ]
        })
        .collect();
    print(
        args.output.output,
        &Value::Array(projects),
        &["NAME", "ENV", "TEAM", "REGION", "STATUS", "READY", "MODELS"],
        rows,
    );
    Ok(())
}

/// The reconciler's `Ready` condition: `True`, `False` (with its reason) or `-`.
fn ready(project: &Value) -> String {
    project["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == "Ready")
        .map_or("-".into(), |c| match c["status"].as_str() {
            Some("True") => "True".into(),
            Some(other) => format!("{other} ({})", cell(&c["reason"])),
            None => "-".into(),
        })
}

async fn get(args: GetArgs) -> anyhow::Result<()> {
    let client = args.target.client().await?;
    let project = client.find_project(&args.project).await?;
    let fields = [
        "id",
        "name",
        "display_name",
        "environment",
        "team",
        "region",
        "status",
        "allowed_models",
        "data_retention",
        "monthly_budget_usd",
        "rate_limits",
        "tags",
        "generation",
        "observed_generation",
    ];
    let mut rows: Vec<Vec<String>> = fields
        .iter()
        .map(|f| vec![(*f).to_owned(), cell(&project[*f])])
        .collect();
    rows.push(vec!["ready".into(), ready(&project)]);
    rows.push(vec![
        "mantle_project_id".into(),
        cell(&project["aws"]["mantle_project_id"]),
    ]);
    print(args.output.output, &project, &["FIELD", "VALUE"], rows);
    Ok(())
}

#[derive(Debug, Args)]
pub struct UsageArgs {
    #[command(flatten)]
    target: Target,
    #[command(flatten)]
    output: OutputArg,
    /// `NAME`, `ENV/NAME` or the project's id.
    #[arg(long)]
    project: String,
    /// `model` (default), `key`, `day` or `service_tier`.
    #[arg(long = "group-by")]
    group_by: Option<String>,
    /// Start (RFC 3339); default: the start of this month.
    #[arg(long)]
    from: Option<String>,
    /// End (RFC 3339, exclusive); default: now.
    #[arg(long)]
    to: Option<String>,
}

pub async fn usage(args: UsageArgs) -> anyhow::Result<()> {
    let client = args.target.client().await?;
    let project = client.find_project(&args.project).await?;
    let id = project["id"].as_str().unwrap_or_default();
    let mut query = Vec::new();
    for (name, value) in [
        ("group_by", &args.group_by),
        ("from", &args.from),
        ("to", &args.to),
    ] {
        if let Some(v) = value {
            query.push(format!("{name}={}", encode(v)));
        }
    }
    let report = client
        .get(&format!("/projects/{id}/usage?{}", query.join("&")))
        .await?
        .body;
    let row = |r: &Value| {
        vec![
            cell(&r["group"]),
            cell(&r["requests"]),
            cell(&r["errors"]),
            cell(&r["input_tokens"]),
            cell(&r["output_tokens"]),
            cell(&r["cached_tokens"]),
            format!("{:.4}", r["cost_usd"].as_f64().unwrap_or_default()),
        ]
    };
    let mut rows: Vec<Vec<String>> = report["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(row)
        .collect();
    let mut total = row(&report["total"]);
    total[0] = "TOTAL".into();
    rows.push(total);
    print(
        args.output.output,
        &report,
        &[
            "GROUP", "REQUESTS", "ERRORS", "INPUT", "OUTPUT", "CACHED", "COST_USD",
        ],
        rows,
    );
    Ok(())
}
