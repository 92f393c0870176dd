//! `strata plan` and `strata apply`: projects and budgets as code, against a remote
//! strata.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Args;
use serde_json::json;
use strata_core::domain::ProjectRole;

use crate::client::credentials::Target;
use crate::client::files::{self, BudgetSpec, FileError, ProjectSpec};
use crate::client::plan::{self, Change, Current, MemberChange, Plan};
use crate::client::{ApiClient, ClientError, Headers, encode};

#[derive(Debug, Args)]
pub struct PlanArgs {
    #[command(flatten)]
    target: Target,
    /// Project files or directories of them (YAML); repeat for more.
    #[arg(short = 'f', long = "file", required = true)]
    files: Vec<PathBuf>,
    /// Also archive the active projects of the files' environments that no file declares.
    #[arg(long)]
    prune: bool,
    /// Also delete the budgets that no file declares (those made on the pages or
    /// through the API included).
    #[arg(long = "prune-budgets")]
    prune_budgets: bool,
    /// Exit 0 when there is nothing to change, 2 when there is, 1 on an error.
    #[arg(long = "detailed-exitcode")]
    detailed_exitcode: bool,
    /// Save the plan (JSON) for `strata apply --plan FILE`.
    #[arg(long = "out")]
    out: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    #[command(flatten)]
    target: Target,
    /// Project files or directories of them (YAML); repeat for more.
    #[arg(
        short = 'f',
        long = "file",
        required_unless_present = "plan",
        conflicts_with = "plan"
    )]
    files: Vec<PathBuf>,
    /// Also archive the active projects of the files' environments that no file declares.
    #[arg(long, conflicts_with = "plan")]
    prune: bool,
    /// Also delete the budgets that no file declares (those made on the pages or
    /// through the API included).
    #[arg(long = "prune-budgets", conflicts_with = "plan")]
    prune_budgets: bool,
    /// Apply a plan saved by `strata plan --out`, exactly: a project changed since
    /// then stops the apply before anything is written.
    #[arg(long = "plan")]
    plan: Option<PathBuf>,
}

pub async fn plan(args: PlanArgs) -> anyhow::Result<ExitCode> {
    let client = args.target.client().await?;
    let prune = Prune {
        projects: args.prune,
        budgets: args.prune_budgets,
    };
    let plan = make_plan(&client, &args.files, prune).await?;
    print!("{}", plan::render(&plan));
    if let Some(out) = &args.out {
        let text = serde_json::to_string_pretty(&plan).context("cannot encode the plan")?;
        std::fs::write(out, text).with_context(|| format!("cannot write {}", out.display()))?;
        eprintln!(
            "Saved the plan to {}: `strata apply --plan {}` applies it.",
            out.display(),
            out.display()
        );
    }
    Ok(if args.detailed_exitcode && !plan.changes.is_empty() {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}

pub async fn apply(args: ApplyArgs) -> anyhow::Result<ExitCode> {
    let client = args.target.client().await?;
    let plan = match &args.plan {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            let plan: Plan = serde_json::from_str(&text).with_context(|| {
                format!(
                    "{} is not a plan saved by `strata plan --out`",
                    path.display()
                )
            })?;
            if plan.url.trim_end_matches('/') != client.url() {
                bail!(
                    "{} was made against {}, not {}: nothing was applied",
                    path.display(),
                    plan.url,
                    client.url()
                );
            }
            plan
        }
        None => {
            let prune = Prune {
                projects: args.prune,
                budgets: args.prune_budgets,
            };
            make_plan(&client, &args.files, prune).await?
        }
    };
    print!("{}", plan::render(&plan));
    if plan.changes.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    preflight(&client, &plan).await?;
    for (done, change) in plan.changes.iter().enumerate() {
        if let Err(e) = execute(&client, change).await {
            let rest: Vec<String> = plan.changes[done..].iter().map(Change::label).collect();
            let applied: Vec<String> = plan.changes[..done].iter().map(Change::label).collect();
            bail!(
                "{}: {e:#}\napplied: {}\nnot applied: {} (run `strata plan` again to see what is left)",
                change.label(),
                if applied.is_empty() {
                    "nothing".into()
                } else {
                    applied.join(", ")
                },
                rest.join(", ")
            );
        }
        eprintln!("{}: done", change.label());
    }
    println!("Apply complete: {} change(s) made.", plan.changes.len());
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Clone, Copy)]
struct Prune {
    projects: bool,
    budgets: bool,
}

/// Reads and checks the files, then compares them with strata.
async fn make_plan(client: &ApiClient, paths: &[PathBuf], prune: Prune) -> anyhow::Result<Plan> {
    let files = files::collect(paths).map_err(|e| file_errors(vec![e]))?;
    let declared = files::load(&files).map_err(file_errors)?;
    let catalog = client.list_all("/models").await?;
    let problems = files::check_catalog(&declared.projects, &catalog);
    if !problems.is_empty() {
        return Err(file_errors(problems));
    }
    let current = current_projects(client, &declared.projects, prune.projects).await?;
    let mut plan = plan::diff(client.url(), &declared.projects, &current, prune.projects);
    if !declared.budgets.is_empty() || prune.budgets {
        let creating: BTreeSet<String> = plan
            .changes
            .iter()
            .filter_map(|c| match c {
                Change::Create { project, .. } => Some(project.clone()),
                _ => None,
            })
            .collect();
        let projects = project_ids(client, &declared.budgets).await?;
        let budgets = client.list_all("/budgets").await?;
        let changes = plan::diff_budgets(
            &declared.budgets,
            &budgets,
            &projects,
            &creating,
            prune.budgets,
        )
        .map_err(file_errors)?;
        plan.changes.extend(changes);
    }
    Ok(plan)
}

/// The ids of the active projects that budgets name (`environment/name`).
async fn project_ids(
    client: &ApiClient,
    budgets: &[BudgetSpec],
) -> anyhow::Result<BTreeMap<String, String>> {
    let environments: BTreeSet<&str> = budgets
        .iter()
        .filter_map(|b| b.project.as_deref()?.split_once('/').map(|(env, _)| env))
        .collect();
    let mut ids = BTreeMap::new();
    for env in environments {
        for p in client
            .list_all(&format!("/projects?environment={env}&status=active"))
            .await?
        {
            if let (Some(name), Some(id)) = (p["name"].as_str(), p["id"].as_str()) {
                ids.insert(format!("{env}/{name}"), id.to_owned());
            }
        }
    }
    Ok(ids)
}

fn file_errors(errors: Vec<FileError>) -> anyhow::Error {
    let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
    anyhow::anyhow!(
        "{} problem(s) in the project files; nothing was applied:\n{}",
        lines.len(),
        lines.join("\n")
    )
}

/// strata's active projects that the files declare (and, for `prune`, the others in
/// the files' environments), each with its `ETag` and, when a file manages them, its
/// members.
async fn current_projects(
    client: &ApiClient,
    specs: &[ProjectSpec],
    prune: bool,
) -> anyhow::Result<Vec<Current>> {
    let declared: BTreeMap<String, &ProjectSpec> = specs.iter().map(|s| (s.key(), s)).collect();
    let environments: std::collections::BTreeSet<&str> =
        specs.iter().map(|s| s.draft.environment.as_str()).collect();
    let mut current = Vec::new();
    for env in environments {
        for listed in client
            .list_all(&format!("/projects?environment={env}&status=active"))
            .await?
        {
            let key = format!("{env}/{}", listed["name"].as_str().unwrap_or_default());
            let spec = declared.get(&key);
            if spec.is_none() && !prune {
                continue;
            }
            let id = listed["id"].as_str().unwrap_or_default();
            let read = client.get(&format!("/projects/{id}")).await?;
            let etag = read
                .etag
                .with_context(|| format!("strata sent no ETag for {key}"))?;
            let members = match spec {
                Some(s) if s.members.is_some() => members_of(client, id).await?,
                _ => BTreeMap::new(),
            };
            current.push(Current {
                project: read.body,
                etag,
                members,
            });
        }
    }
    Ok(current)
}

async fn members_of(client: &ApiClient, id: &str) -> anyhow::Result<BTreeMap<String, ProjectRole>> {
    let mut members = BTreeMap::new();
    for m in client.list_all(&format!("/projects/{id}/members")).await? {
        let role = m["role"]
            .as_str()
            .and_then(|r| ProjectRole::parse(r).ok())
            .with_context(|| format!("strata sent a member without a known role: {m}"))?;
        members.insert(m["subject"].as_str().unwrap_or_default().to_owned(), role);
    }
    Ok(members)
}

/// Before the first write: every project the plan changes is still as the plan saw it
/// (same `ETag`), and every name it creates is still free.
async fn preflight(client: &ApiClient, plan: &Plan) -> anyhow::Result<()> {
    let mut stale = Vec::new();
    // Each environment's active names, read once however many creates it has.
    let mut names: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let touches_budgets = plan.changes.iter().any(|c| {
        matches!(
            c,
            Change::CreateBudget { .. } | Change::UpdateBudget { .. } | Change::DeleteBudget { .. }
        )
    });
    let budgets = if touches_budgets {
        client.list_all("/budgets").await?
    } else {
        Vec::new()
    };
    for change in &plan.changes {
        match change {
            Change::CreateBudget { budget, .. } => {
                if budgets.iter().any(|b| b["name"] == budget.as_str()) {
                    stale.push(format!("budget {budget} was created since the plan"));
                }
            }
            Change::UpdateBudget {
                budget, id, before, ..
            }
            | Change::DeleteBudget { budget, id, before } => {
                let now = budgets.iter().find(|b| b["id"] == id.as_str());
                if !now.is_some_and(|now| plan::budget_unchanged(before, now)) {
                    stale.push(format!("budget {budget} changed since the plan"));
                }
            }
            Change::Update {
                project, id, etag, ..
            }
            | Change::Archive { project, id, etag } => {
                let now = client.get(&format!("/projects/{id}")).await?;
                let archived = now.body["status"] == "archived";
                if now.etag.as_deref() != Some(etag.as_str()) || archived {
                    stale.push(format!(
                        "{project} changed since the plan (ETag {etag}, now {})",
                        now.etag.as_deref().unwrap_or("none")
                    ));
                }
            }
            Change::Create { project, body, .. } => {
                let (env, name) = (
                    body["environment"].as_str().unwrap_or_default(),
                    body["name"].as_str().unwrap_or_default(),
                );
                if !names.contains_key(env) {
                    let listed = client
                        .list_all(&format!("/projects?environment={env}&status=active"))
                        .await?;
                    let listed = listed
                        .iter()
                        .filter_map(|p| p["name"].as_str().map(str::to_owned))
                        .collect();
                    names.insert(env.to_owned(), listed);
                }
                let taken = names.get(env).is_some_and(|n| n.iter().any(|n| n == name));
                if taken {
                    stale.push(format!("{project} was created since the plan"));
                }
            }
        }
    }
    if stale.is_empty() {
        return Ok(());
    }
    bail!(
        "nothing was applied: {}; run `strata plan` again",
        stale.join("; ")
    )
}

async fn execute(client: &ApiClient, change: &Change) -> Result<(), ClientError> {
    match change {
        Change::Create {
            body,
            members,
            idempotency_key,
            ..
        } => {
            let created = client
                .post(
                    "/projects",
                    body,
                    Headers {
                        idempotency_key: Some(idempotency_key),
                        ..Headers::default()
                    },
                )
                .await?;
            let id = created.body["id"].as_str().unwrap_or_default();
            set_members(client, id, members).await
        }
        Change::Update {
            id,
            etag,
            patch,
            members,
            ..
        } => {
            if patch.as_object().is_some_and(|p| !p.is_empty()) {
                client
                    .patch(
                        &format!("/projects/{id}"),
                        patch,
                        Headers {
                            if_match: Some(etag),
                            ..Headers::default()
                        },
                    )
                    .await?;
            }
            set_members(client, id, members).await
        }
        Change::Archive { id, .. } => client
            .post(
                &format!("/projects/{id}/archive"),
                &json!({}),
                Headers::default(),
            )
            .await
            .map(|_| ()),
        Change::CreateBudget { body, project, .. } => {
            let mut body = body.clone();
            if let Some(key) = project {
                // Created earlier in this apply: its id is known only now.
                let (env, name) = key.split_once('/').unwrap_or_default();
                let listed = client
                    .list_all(&format!("/projects?environment={env}&status=active"))
                    .await?;
                if let Some(id) = listed.iter().find(|p| p["name"] == name) {
                    body["target"] = id["id"].clone();
                }
            }
            client
                .post("/budgets", &body, Headers::default())
                .await
                .map(|_| ())
        }
        Change::UpdateBudget { id, patch, .. } => client
            .patch(&format!("/budgets/{id}"), patch, Headers::default())
            .await
            .map(|_| ()),
        Change::DeleteBudget { id, .. } => {
            client.delete(&format!("/budgets/{id}")).await.map(|_| ())
        }
    }
}

async fn set_members(
    client: &ApiClient,
    id: &str,
    members: &[MemberChange],
) -> Result<(), ClientError> {
    for m in members {
        let path = format!("/projects/{id}/members/{}", encode(&m.subject));
        match m.after {
            Some(role) => {
                client.put(&path, &json!({"role": role.as_str()})).await?;
            }
            None => {
                client.delete(&path).await?;
            }
        }
    }
    Ok(())
}
