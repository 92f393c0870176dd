//! What `strata apply` would change: the projects and budgets in the files against
//! those on strata, field by field, and the calls that make them equal. A plan can be
//! saved (`plan --out`) and applied later; it carries each project's `ETag` and each
//! budget as it was, so one edited in between fails the apply before anything is
//! written.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use strata_core::domain::{ProjectDraft, ProjectRole};

use super::files::{BudgetSpec, FileError, ProjectSpec};

/// A project on strata, as `GET /projects` and `/members` answered.
#[derive(Debug, Clone)]
pub struct Current {
    pub project: Value,
    pub etag: String,
    pub members: BTreeMap<String, ProjectRole>,
}

impl Current {
    pub fn key(&self) -> String {
        format!(
            "{}/{}",
            self.project["environment"].as_str().unwrap_or_default(),
            self.project["name"].as_str().unwrap_or_default()
        )
    }

    fn id(&self) -> String {
        self.project["id"].as_str().unwrap_or_default().to_owned()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FieldChange {
    pub field: String,
    pub before: Value,
    pub after: Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemberChange {
    pub subject: String,
    /// `None`: not a member before.
    pub before: Option<ProjectRole>,
    /// `None`: removed.
    pub after: Option<ProjectRole>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Change {
    Create {
        project: String,
        body: Value,
        members: Vec<MemberChange>,
        idempotency_key: String,
    },
    Update {
        project: String,
        id: String,
        etag: String,
        fields: Vec<FieldChange>,
        /// The merge patch; empty when only members change.
        patch: Value,
        members: Vec<MemberChange>,
    },
    Archive {
        project: String,
        id: String,
        etag: String,
    },
    CreateBudget {
        budget: String,
        /// What it covers, for people: `team payments`, `project prod/search`.
        covers: String,
        body: Value,
        /// The project (`environment/name`) this apply creates first, whose id becomes
        /// the body's `target`.
        project: Option<String>,
    },
    UpdateBudget {
        budget: String,
        id: String,
        /// The budget as the plan saw it.
        before: Value,
        fields: Vec<FieldChange>,
        patch: Value,
    },
    DeleteBudget {
        budget: String,
        id: String,
        before: Value,
    },
}

impl Change {
    /// How messages name what the change is to: `prod/checkout-api`, `budget x`.
    pub fn label(&self) -> String {
        match self {
            Self::Create { project, .. }
            | Self::Update { project, .. }
            | Self::Archive { project, .. } => project.clone(),
            Self::CreateBudget { budget, .. }
            | Self::UpdateBudget { budget, .. }
            | Self::DeleteBudget { budget, .. } => format!("budget {budget}"),
        }
    }
}

/// A budget's fields that a change keeps (`PATCH` takes the last three).
const BUDGET_KEPT: [&str; 5] = ["scope", "target", "period", "amount_usd", "enforcement"];
const BUDGET_PATCHED: [&str; 3] = ["period", "amount_usd", "enforcement"];

/// The fields of a budget on strata that a plan compares and keeps.
pub fn budget_state(budget: &Value) -> Value {
    Value::Object(
        BUDGET_KEPT
            .iter()
            .map(|f| ((*f).to_owned(), budget[*f].clone()))
            .collect(),
    )
}

/// Whether strata's `now` is still the budget a plan saw.
pub fn budget_unchanged(before: &Value, now: &Value) -> bool {
    BUDGET_KEPT.iter().all(|f| same(f, &before[*f], &now[*f]))
}

/// The changes that make strata's budgets match the files'. `projects`: strata's
/// active projects' ids by `environment/name`; `creating`: those this plan creates.
/// With `prune`, budgets no file declares are deleted.
pub fn diff_budgets(
    specs: &[BudgetSpec],
    current: &[Value],
    projects: &BTreeMap<String, String>,
    creating: &BTreeSet<String>,
    prune: bool,
) -> Result<Vec<Change>, Vec<FileError>> {
    let by_name: BTreeMap<&str, &Value> = current
        .iter()
        .filter_map(|b| b["name"].as_str().map(|n| (n, b)))
        .collect();
    let mut changes = Vec::new();
    let mut errors = Vec::new();
    for spec in specs {
        let name = spec.budget.name.trim().to_owned();
        let mut body = match serde_json::to_value(&spec.budget) {
            Ok(body) => body,
            Err(e) => {
                errors.push(spec.error("", e.to_string()));
                continue;
            }
        };
        body["name"] = json!(name);
        body["target"] = json!(spec.budget.target.trim());
        // A project named in the file: its id, or created by this apply first.
        let mut pending = None;
        if let Some(key) = &spec.project {
            match projects.get(key) {
                Some(id) => body["target"] = json!(id),
                None if creating.contains(key) => pending = Some(key.clone()),
                None => {
                    errors.push(spec.error(
                        "target",
                        format!("no active project {key} on strata or in the files"),
                    ));
                    continue;
                }
            }
        }
        let create = Change::CreateBudget {
            budget: name.clone(),
            covers: format!("{} {}", spec.budget.scope, spec.budget.target.trim()),
            body: body.clone(),
            project: pending.clone(),
        };
        let Some(existing) = by_name.get(name.as_str()) else {
            changes.push(create);
            continue;
        };
        let id = existing["id"].as_str().unwrap_or_default().to_owned();
        let moved = pending.is_some()
            || ["scope", "target"]
                .iter()
                .any(|f| !same(f, &existing[*f], &body[*f]));
        if moved {
            // A budget's scope and target are what it is: a new one replaces it.
            changes.push(Change::DeleteBudget {
                budget: name.clone(),
                id,
                before: budget_state(existing),
            });
            changes.push(create);
            continue;
        }
        let mut fields = Vec::new();
        let mut patch = Map::new();
        for field in BUDGET_PATCHED {
            if !same(field, &existing[field], &body[field]) {
                patch.insert(field.into(), body[field].clone());
                fields.push(FieldChange {
                    field: field.into(),
                    before: existing[field].clone(),
                    after: body[field].clone(),
                });
            }
        }
        if !fields.is_empty() {
            changes.push(Change::UpdateBudget {
                budget: name,
                id,
                before: budget_state(existing),
                fields,
                patch: Value::Object(patch),
            });
        }
    }
    if prune {
        let declared: BTreeSet<&str> = specs.iter().map(|s| s.budget.name.trim()).collect();
        for (name, existing) in &by_name {
            if !declared.contains(name) {
                changes.push(Change::DeleteBudget {
                    budget: (*name).to_owned(),
                    id: existing["id"].as_str().unwrap_or_default().to_owned(),
                    before: budget_state(existing),
                });
            }
        }
    }
    if errors.is_empty() {
        Ok(changes)
    } else {
        Err(errors)
    }
}

/// The changes, for one strata.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// The strata it was made against: a saved plan applies there only.
    pub url: String,
    pub changes: Vec<Change>,
}

/// Fields a file sets, as the API's project JSON names them, with the file's
/// defaults applied (a field left out means its default, not "keep").
fn desired_fields(draft: &ProjectDraft) -> Vec<(&'static str, Value)> {
    vec![
        ("display_name", json!(draft.display_name)),
        ("team", json!(draft.team.as_str())),
        ("region", json!(draft.region)),
        ("allowed_models", json!(draft.allowed_models)),
        ("tags", json!(draft.tags)),
        ("data_retention", json!(draft.data_retention)),
        ("monthly_budget_usd", json!(draft.monthly_budget)),
        ("rate_limits", json!(draft.rate_limits)),
        ("resources", json!(draft.resources)),
    ]
}

/// Lists that are sets to strata, compared regardless of order.
const UNORDERED: &[&str] = &["allowed_models", "resources"];

fn same(field: &str, a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) if UNORDERED.contains(&field) => {
            let set = |v: &Vec<Value>| v.iter().map(Value::to_string).collect::<BTreeSet<_>>();
            set(x) == set(y)
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| same(field, v, w)))
        }
        _ => a == b,
    }
}

/// The create body of a file's project.
fn create_body(spec: &ProjectSpec) -> Value {
    let mut body = Map::new();
    body.insert("name".into(), json!(spec.draft.name.as_str()));
    body.insert("environment".into(), json!(spec.draft.environment));
    for (field, value) in desired_fields(&spec.draft) {
        body.insert(field.into(), value);
    }
    Value::Object(body)
}

/// What changes `current` into `spec`: the fields that differ and their merge patch.
fn field_changes(spec: &ProjectSpec, current: &Value) -> (Vec<FieldChange>, Value) {
    let mut changes = Vec::new();
    let mut patch = Map::new();
    for (field, after) in desired_fields(&spec.draft) {
        let before = current.get(field).cloned().unwrap_or(Value::Null);
        if same(field, &before, &after) {
            continue;
        }
        if field == "tags" {
            // A merge patch merges tags key by key: send the changed ones, null the rest.
            let (old, new) = (
                before.as_object().cloned().unwrap_or_default(),
                after.as_object().cloned().unwrap_or_default(),
            );
            let mut tags = Map::new();
            for key in old.keys().chain(new.keys()).collect::<BTreeSet<_>>() {
                let (b, a) = (
                    old.get(key).cloned().unwrap_or(Value::Null),
                    new.get(key).cloned().unwrap_or(Value::Null),
                );
                if b != a {
                    tags.insert(key.clone(), a.clone());
                    changes.push(FieldChange {
                        field: format!("tags.{key}"),
                        before: b,
                        after: a,
                    });
                }
            }
            patch.insert("tags".into(), Value::Object(tags));
            continue;
        }
        patch.insert(field.into(), after.clone());
        changes.push(FieldChange {
            field: field.into(),
            before,
            after,
        });
    }
    (changes, Value::Object(patch))
}

fn member_changes(
    wanted: Option<&BTreeMap<String, ProjectRole>>,
    current: &BTreeMap<String, ProjectRole>,
) -> Vec<MemberChange> {
    let Some(wanted) = wanted else {
        return Vec::new();
    };
    let subjects: BTreeSet<&String> = wanted.keys().chain(current.keys()).collect();
    subjects
        .into_iter()
        .filter_map(|s| {
            let (before, after) = (current.get(s).copied(), wanted.get(s).copied());
            (before != after).then(|| MemberChange {
                subject: s.clone(),
                before,
                after,
            })
        })
        .collect()
}

/// A create retried after a lost answer is replayed by strata, not made twice.
fn idempotency_key(url: &str, body: &Value) -> String {
    let digest = Sha256::digest(format!("{url}\n{body}").as_bytes());
    let hex: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
    format!("strata-apply-{hex}")
}

/// The changes that make strata's active projects match `specs`. With `prune`, active
/// projects in the files' environments that no file declares are archived.
pub fn diff(url: &str, specs: &[ProjectSpec], current: &[Current], prune: bool) -> Plan {
    let by_key: BTreeMap<String, &Current> = current.iter().map(|c| (c.key(), c)).collect();
    let mut changes = Vec::new();
    for spec in specs {
        let key = spec.key();
        match by_key.get(&key) {
            None => {
                let body = create_body(spec);
                changes.push(Change::Create {
                    project: key,
                    idempotency_key: idempotency_key(url, &body),
                    body,
                    members: member_changes(spec.members.as_ref(), &BTreeMap::new()),
                });
            }
            Some(existing) => {
                let (fields, patch) = field_changes(spec, &existing.project);
                let members = member_changes(spec.members.as_ref(), &existing.members);
                if !fields.is_empty() || !members.is_empty() {
                    changes.push(Change::Update {
                        project: key,
                        id: existing.id(),
                        etag: existing.etag.clone(),
                        fields,
                        patch,
                        members,
                    });
                }
            }
        }
    }
    if prune {
        let declared: BTreeSet<String> = specs.iter().map(ProjectSpec::key).collect();
        let environments: BTreeSet<&str> =
            specs.iter().map(|s| s.draft.environment.as_str()).collect();
        for existing in current {
            let env = existing.project["environment"].as_str().unwrap_or_default();
            if environments.contains(env) && !declared.contains(&existing.key()) {
                changes.push(Change::Archive {
                    project: existing.key(),
                    id: existing.id(),
                    etag: existing.etag.clone(),
                });
            }
        }
    }
    Plan {
        url: url.to_owned(),
        changes,
    }
}

fn show(value: &Value) -> String {
    match value {
        Value::Null => "(none)".into(),
        other => other.to_string(),
    }
}

fn role(role: Option<ProjectRole>) -> &'static str {
    role.map_or("(none)", ProjectRole::as_str)
}

/// The plan for people, in `terraform plan`'s manner.
pub fn render(plan: &Plan) -> String {
    let mut out = String::new();
    if plan.changes.is_empty() {
        out.push_str("No changes: the projects and budgets on strata match the files.\n");
        return out;
    }
    let (mut create, mut change, mut archive, mut delete) = (0, 0, 0, 0);
    for c in &plan.changes {
        match c {
            Change::Create {
                project,
                body,
                members,
                ..
            } => {
                create += 1;
                let _ = writeln!(out, "+ create {project}");
                // Fields left at their empty default are not worth a line.
                let empty = |v: &Value| match v {
                    Value::Null => true,
                    Value::Array(a) => a.is_empty(),
                    Value::Object(o) => o.values().all(Value::is_null),
                    _ => false,
                };
                for (field, value) in body.as_object().into_iter().flatten() {
                    if !matches!(field.as_str(), "name" | "environment") && !empty(value) {
                        let _ = writeln!(out, "    {field}: {}", show(value));
                    }
                }
                for m in members {
                    let _ = writeln!(out, "    + member {} ({})", m.subject, role(m.after));
                }
            }
            Change::Update {
                project,
                fields,
                members,
                ..
            } => {
                change += 1;
                let _ = writeln!(out, "~ change {project}");
                for f in fields {
                    let _ = writeln!(
                        out,
                        "    {}: {} -> {}",
                        f.field,
                        show(&f.before),
                        show(&f.after)
                    );
                }
                for m in members {
                    let sign = match (m.before, m.after) {
                        (None, _) => '+',
                        (_, None) => '-',
                        _ => '~',
                    };
                    let _ = writeln!(
                        out,
                        "    {sign} member {}: {} -> {}",
                        m.subject,
                        role(m.before),
                        role(m.after)
                    );
                }
            }
            Change::Archive { project, .. } => {
                archive += 1;
                let _ = writeln!(out, "- archive {project}");
            }
            Change::CreateBudget {
                budget,
                covers,
                body,
                ..
            } => {
                create += 1;
                let _ = writeln!(out, "+ create budget {budget}");
                let _ = writeln!(
                    out,
                    "    {covers}, per {}: ${:.2} ({})",
                    body["period"].as_str().unwrap_or_default(),
                    body["amount_usd"].as_f64().unwrap_or_default(),
                    body["enforcement"].as_str().unwrap_or_default()
                );
            }
            Change::UpdateBudget { budget, fields, .. } => {
                change += 1;
                let _ = writeln!(out, "~ change budget {budget}");
                for f in fields {
                    let _ = writeln!(
                        out,
                        "    {}: {} -> {}",
                        f.field,
                        show(&f.before),
                        show(&f.after)
                    );
                }
            }
            Change::DeleteBudget { budget, .. } => {
                delete += 1;
                let _ = writeln!(out, "- delete budget {budget}");
            }
        }
    }
    let _ = write!(
        out,
        "\nPlan: {create} to create, {change} to change, {archive} to archive"
    );
    if delete > 0 {
        let _ = write!(out, ", {delete} to delete");
    }
    out.push_str(".\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::files::{Declared, parse_file};
    use std::path::Path;

    fn specs(text: &str) -> Vec<ProjectSpec> {
        declared(text).projects
    }

    fn declared(text: &str) -> Declared {
        let (mut declared, mut errors) = (Declared::default(), Vec::new());
        parse_file(Path::new("p.yaml"), 0, text, &mut declared, &mut errors);
        assert!(errors.is_empty(), "{errors:?}");
        declared
    }

    const BUDGETS: &str = "\
budgets:
  - {name: team-weekly, scope: team, target: payments, period: week, amount_usd: 250, enforcement: hard}
  - {name: env-daily, scope: environment, target: prod, period: day, amount_usd: 100}
  - {name: search-monthly, scope: project, target: prod/search, period: month, amount_usd: 40}
  - {name: fresh-daily, scope: project, target: prod/fresh, period: day, amount_usd: 5}
";

    fn budget_on_strata(
        name: &str,
        scope: &str,
        target: &str,
        period: &str,
        amount: f64,
        enforcement: &str,
    ) -> Value {
        json!({"id": format!("b-{name}"), "name": name, "scope": scope, "target": target,
               "period": period, "amount_usd": amount, "enforcement": enforcement,
               "spent_usd": 1.5, "percent_used": 10.0})
    }

    #[test]
    fn budgets_are_created_changed_replaced_and_pruned_by_name() {
        let specs = declared(BUDGETS).budgets;
        let current = [
            budget_on_strata("team-weekly", "team", "payments", "week", 250.0, "soft"),
            budget_on_strata("env-daily", "environment", "prod", "day", 100.0, "soft"),
            budget_on_strata("search-monthly", "project", "p-old", "month", 40.0, "soft"),
            budget_on_strata("finance-made", "tag", "CostCenter=1", "month", 9.0, "soft"),
        ];
        let projects = BTreeMap::from([("prod/search".to_owned(), "p-1".to_owned())]);
        let creating = BTreeSet::from(["prod/fresh".to_owned()]);
        let changes = diff_budgets(&specs, &current, &projects, &creating, false)
            .unwrap_or_else(|e| panic!("{e:?}"));
        let plan = Plan {
            url: "http://s".into(),
            changes: changes.clone(),
        };
        insta::assert_snapshot!(render(&plan));
        let [
            Change::UpdateBudget { patch, before, .. },
            Change::DeleteBudget { id: old, .. },
            Change::CreateBudget {
                body: replaced,
                project: None,
                ..
            },
            Change::CreateBudget {
                body: fresh,
                project: Some(pending),
                ..
            },
        ] = changes.as_slice()
        else {
            panic!("{changes:?}");
        };
        assert_eq!(patch, &json!({"enforcement": "hard"}));
        assert!(budget_unchanged(before, &current[0]));
        assert!(!budget_unchanged(before, &current[1]));
        assert_eq!(
            (old.as_str(), &replaced["target"]),
            ("b-search-monthly", &json!("p-1"))
        );
        assert_eq!(
            (pending.as_str(), &fresh["scope"]),
            ("prod/fresh", &json!("project"))
        );
        // Pruned: only with the flag; a project neither on strata nor in the files is an error.
        let pruned = diff_budgets(&specs, &current, &projects, &creating, true).unwrap_or_default();
        assert!(
            matches!(pruned.last(), Some(Change::DeleteBudget { budget, .. }) if budget == "finance-made")
        );
        let errors = diff_budgets(&specs, &current, &projects, &BTreeSet::new(), false)
            .err()
            .unwrap_or_default();
        assert_eq!(errors.len(), 1);
        assert!(
            errors[0]
                .to_string()
                .starts_with("p.yaml:5: target: no active project prod/fresh"),
            "{}",
            errors[0]
        );
    }

    const FILE: &str = "\
name: search
environment: prod
team: discovery
region: us-east-1
allowed_models: [openai.gpt-oss-120b, openai.gpt-oss-20b]
tags: {CostCenter: cc-2, Owner: search}
monthly_budget_usd: 500
members:
  alice@example.com: owner
  bob@example.com: developer
";

    fn on_strata() -> Current {
        Current {
            project: json!({
                "id": "p-1", "name": "search", "environment": "prod", "team": "discovery",
                "display_name": "search", "region": "us-east-1",
                "allowed_models": ["openai.gpt-oss-20b", "openai.gpt-oss-120b"],
                "tags": {"CostCenter": "cc-1", "Legacy": "yes"}, "data_retention": "zdr",
                "monthly_budget_usd": 500.0, "rate_limits": {"rpm": null, "tpm": null},
                "resources": []
            }),
            etag: "\"7\"".into(),
            members: BTreeMap::from([
                ("alice@example.com".into(), ProjectRole::Owner),
                ("carol@example.com".into(), ProjectRole::Viewer),
            ]),
        }
    }

    #[test]
    fn only_what_differs_is_changed_tags_key_by_key() {
        let plan = diff("http://s", &specs(FILE), &[on_strata()], false);
        let [
            Change::Update {
                fields,
                patch,
                members,
                etag,
                ..
            },
        ] = plan.changes.as_slice()
        else {
            panic!("{plan:?}");
        };
        assert_eq!(etag, "\"7\"");
        let names: Vec<&str> = fields.iter().map(|f| f.field.as_str()).collect();
        assert_eq!(names, ["tags.CostCenter", "tags.Legacy", "tags.Owner"]);
        assert_eq!(
            patch,
            &json!({"tags": {"CostCenter": "cc-2", "Legacy": null, "Owner": "search"}})
        );
        let subjects: Vec<(&str, Option<ProjectRole>)> = members
            .iter()
            .map(|m| (m.subject.as_str(), m.after))
            .collect();
        assert_eq!(
            subjects,
            [
                ("bob@example.com", Some(ProjectRole::Developer)),
                ("carol@example.com", None)
            ]
        );
        insta::assert_snapshot!(render(&plan));
    }

    #[test]
    fn creates_are_idempotent_and_prune_archives_only_in_the_files_environments() {
        let mut other_env = on_strata();
        other_env.project["environment"] = json!("dev");
        other_env.project["name"] = json!("elsewhere");
        let mut stray = on_strata();
        stray.project["name"] = json!("stray");
        let file = FILE.replace("name: search", "name: fresh");
        let plan = diff(
            "http://s",
            &specs(&file),
            &[other_env.clone(), stray.clone()],
            true,
        );
        let actions: Vec<(&str, &str)> = plan
            .changes
            .iter()
            .map(|c| match c {
                Change::Create { project, .. } => ("create", project.as_str()),
                Change::Update { project, .. } => ("change", project.as_str()),
                Change::Archive { project, .. } => ("archive", project.as_str()),
                other => panic!("no budgets here: {other:?}"),
            })
            .collect();
        assert_eq!(
            actions,
            [("create", "prod/fresh"), ("archive", "prod/stray")]
        );
        let again = diff("http://s", &specs(&file), &[other_env, stray], false);
        assert_eq!(again.changes.len(), 1, "no archive without --prune");
        assert_eq!(plan.changes[0], again.changes[0], "same idempotency key");
    }

    #[test]
    fn an_equal_project_needs_nothing() {
        let mut current = on_strata();
        current.project["tags"] = json!({"CostCenter": "cc-2", "Owner": "search"});
        current.members.remove("carol@example.com");
        current
            .members
            .insert("bob@example.com".into(), ProjectRole::Developer);
        let plan = diff("http://s", &specs(FILE), &[current.clone()], false);
        assert_eq!(plan.changes, []);
        assert!(render(&plan).starts_with("No changes"));
        // Without `members:` the file leaves members alone.
        let unmanaged = FILE.split("members:").next().unwrap_or_default();
        current
            .members
            .insert("zed@example.com".into(), ProjectRole::Viewer);
        assert_eq!(
            diff("http://s", &specs(unmanaged), &[current], false).changes,
            []
        );
    }
}
