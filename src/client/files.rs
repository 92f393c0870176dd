//! Project files: YAML holding one project (the API's create body, plus `members`), or
//! `projects:` with a list of them and/or `budgets:` with a list of budgets (the
//! budgets API's create body; a project's budget names its project as
//! `environment/name`). Every problem is reported with its file, line and field, all
//! of them at once, before anything is sent.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use marked_yaml::{LoaderOptions, Node};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use strata_core::FieldError;
use strata_core::domain::{
    BudgetScope, Environment, NewBudget, NewProject, ProjectDraft, ProjectRole, ProjectSlug,
    RetentionMode, Subject,
};

/// One project as a file declares it, validated.
#[derive(Debug, Clone)]
pub struct ProjectSpec {
    pub file: PathBuf,
    pub line: usize,
    pub draft: ProjectDraft,
    /// `None`: the file does not manage members (those on strata are left alone).
    pub members: Option<BTreeMap<String, ProjectRole>>,
    /// For locating problems found later (the catalog check).
    node: Node,
}

impl ProjectSpec {
    /// `prod/checkout-api`: how plans and errors name a project.
    pub fn key(&self) -> String {
        format!(
            "{}/{}",
            self.draft.environment.as_str(),
            self.draft.name.as_str()
        )
    }

    /// A problem with `field` of this project, located in its file.
    pub fn error(&self, field: &str, message: impl Into<String>) -> FileError {
        FileError {
            file: self.file.clone(),
            line: locate(&self.node, field).unwrap_or(self.line),
            field: field.to_owned(),
            message: message.into(),
        }
    }
}

/// One budget as a file declares it, validated.
#[derive(Debug, Clone)]
pub struct BudgetSpec {
    pub file: PathBuf,
    pub line: usize,
    /// As written: a project's budget may name its project `environment/name`.
    pub budget: NewBudget,
    /// That `environment/name`, to be resolved to the project's id.
    pub project: Option<String>,
    node: Node,
}

impl BudgetSpec {
    pub fn error(&self, field: &str, message: impl Into<String>) -> FileError {
        FileError {
            file: self.file.clone(),
            line: locate(&self.node, field).unwrap_or(self.line),
            field: field.to_owned(),
            message: message.into(),
        }
    }
}

/// Everything the files declare.
#[derive(Debug, Clone, Default)]
pub struct Declared {
    pub projects: Vec<ProjectSpec>,
    pub budgets: Vec<BudgetSpec>,
}

/// A problem in a project file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileError {
    pub file: PathBuf,
    pub line: usize,
    /// The field's path, e.g. `allowed_models[1]`; empty for the file as a whole.
    pub field: String,
    pub message: String,
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: ", self.file.display(), self.line)?;
        if !self.field.is_empty() {
            write!(f, "{}: ", self.field)?;
        }
        f.write_str(&self.message)
    }
}

/// The YAML files named: files as given, directories searched for `*.yaml` / `*.yml`
/// (sorted, so plans list projects in a stable order).
pub fn collect(paths: &[PathBuf]) -> Result<Vec<PathBuf>, FileError> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            walk(path, &mut files)?;
        } else if path.exists() {
            files.push(path.clone());
        } else {
            return Err(whole_file(path, "no such file or directory"));
        }
    }
    if files.is_empty() {
        let named = paths
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>();
        return Err(whole_file(
            Path::new(&named.join(", ")),
            "no .yaml or .yml files here",
        ));
    }
    Ok(files)
}

fn walk(dir: &Path, files: &mut Vec<PathBuf>) -> Result<(), FileError> {
    let entries = std::fs::read_dir(dir).map_err(|e| whole_file(dir, &e.to_string()))?;
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    for path in paths {
        let hidden = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with('.'));
        if hidden {
            continue;
        }
        if path.is_dir() {
            walk(&path, files)?;
        } else if matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml")
        ) {
            files.push(path);
        }
    }
    Ok(())
}

fn whole_file(path: &Path, message: &str) -> FileError {
    FileError {
        file: path.to_owned(),
        line: 1,
        field: String::new(),
        message: message.to_owned(),
    }
}

/// Reads and validates every project and budget in `files`; all problems, or none.
pub fn load(files: &[PathBuf]) -> Result<Declared, Vec<FileError>> {
    let mut declared = Declared::default();
    let mut errors = Vec::new();
    for (index, file) in files.iter().enumerate() {
        match std::fs::read_to_string(file) {
            Ok(text) => parse_file(file, index, &text, &mut declared, &mut errors),
            Err(e) => errors.push(whole_file(file, &format!("cannot read: {e}"))),
        }
    }
    let mut seen: BTreeMap<String, &ProjectSpec> = BTreeMap::new();
    for spec in &declared.projects {
        if let Some(first) = seen.insert(spec.key(), spec) {
            errors.push(spec.error(
                "name",
                format!(
                    "{} is declared twice (also at {}:{})",
                    spec.key(),
                    first.file.display(),
                    first.line
                ),
            ));
        }
    }
    let mut budgets: BTreeMap<&str, &BudgetSpec> = BTreeMap::new();
    for spec in &declared.budgets {
        if let Some(first) = budgets.insert(spec.budget.name.trim(), spec) {
            errors.push(spec.error(
                "name",
                format!(
                    "budget '{}' is declared twice (also at {}:{})",
                    spec.budget.name.trim(),
                    first.file.display(),
                    first.line
                ),
            ));
        }
    }
    if errors.is_empty() {
        Ok(declared)
    } else {
        Err(errors)
    }
}

/// Parses one file's text (`index` tells its markers apart from other files').
pub fn parse_file(
    file: &Path,
    index: usize,
    text: &str,
    declared: &mut Declared,
    errors: &mut Vec<FileError>,
) {
    for document in documents(text) {
        parse_document(file, index, &document, declared, errors);
    }
}

/// The file's YAML documents (split at `---`), each padded with the blank lines before
/// it so that lines count from the top of the file. The YAML loader reads one document
/// only: without the split, projects after a `---` would be silently left out.
fn documents(text: &str) -> Vec<String> {
    let mut documents = vec![String::new()];
    for (n, line) in text.lines().enumerate() {
        let separator = line.trim_end() == "---" || line.starts_with("--- #");
        if separator || line.trim_end() == "..." {
            documents.push("\n".repeat(n + 1));
            continue;
        }
        if let Some(current) = documents.last_mut() {
            current.push_str(line);
            current.push('\n');
        }
    }
    documents
        .into_iter()
        .filter(|d| {
            d.lines()
                .any(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        })
        .collect()
}

fn parse_document(
    file: &Path,
    index: usize,
    text: &str,
    declared: &mut Declared,
    errors: &mut Vec<FileError>,
) {
    // `prevent_coercion` keeps quoted scalars text ("1234" stays a string).
    let options = LoaderOptions::default()
        .error_on_duplicate_keys(true)
        .prevent_coercion(true);
    let root = match marked_yaml::parse_yaml_with_options(index, text, options) {
        Ok(root) => root,
        Err(e) => {
            errors.push(load_error(file, &e));
            return;
        }
    };
    let Some(mapping) = root.as_mapping() else {
        errors.push(whole_file(
            file,
            "expected a project, or `projects:` / `budgets:` with a list",
        ));
        return;
    };
    let lists = ["projects", "budgets"];
    if !lists.iter().any(|l| mapping.get_node(l).is_some()) {
        specs_from(file, &root, errors, &mut declared.projects);
        return;
    }
    for (key, _) in mapping.iter() {
        if !lists.contains(&key.as_str()) {
            errors.push(FileError {
                file: file.to_owned(),
                line: start_line(key.span()),
                field: key.as_str().to_owned(),
                message: "a file with `projects:` or `budgets:` holds nothing else".into(),
            });
        }
    }
    for name in lists {
        let Some(list) = mapping.get_node(name) else {
            continue;
        };
        match list.as_sequence() {
            Some(items) => {
                for item in items.iter() {
                    if name == "projects" {
                        specs_from(file, item, errors, &mut declared.projects);
                    } else {
                        budget_from(file, item, errors, &mut declared.budgets);
                    }
                }
            }
            None => errors.push(FileError {
                file: file.to_owned(),
                line: start_line(list.span()),
                field: name.into(),
                message: format!("must be a list of {name}"),
            }),
        }
    }
}

/// `value` as `T`, or the path of the field that does not fit and why.
fn deserialize_at<T: DeserializeOwned>(value: Value) -> Result<T, (String, String)> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let mut field = e.path().to_string();
        let message = e.inner().to_string();
        // The path of an unknown field may stop at its parent.
        if let Some(unknown) = unknown_field(&message)
            && !field.ends_with(unknown)
        {
            field = if field == "." || field.is_empty() {
                unknown.to_owned()
            } else {
                format!("{field}.{unknown}")
            };
        }
        if field == "." {
            field.clear();
        }
        (field, message)
    })
}

fn budget_from(file: &Path, node: &Node, errors: &mut Vec<FileError>, out: &mut Vec<BudgetSpec>) {
    let line = start_line(node.span());
    let at = |field: &str, message: String| FileError {
        file: file.to_owned(),
        line: locate(node, field).unwrap_or(line),
        field: field.to_owned(),
        message,
    };
    let budget: NewBudget = match deserialize_at(to_json(node)) {
        Ok(b) => b,
        Err((field, message)) => {
            errors.push(at(&field, message));
            return;
        }
    };
    // A project's budget in a file names its project; strata's API takes the id.
    let target = budget.target.trim();
    let project = (budget.scope == BudgetScope::Project && uuid::Uuid::parse_str(target).is_err())
        .then(|| target.to_owned());
    if let Some(key) = &project {
        let named = key.split_once('/').is_some_and(|(env, name)| {
            Environment::parse(env).is_ok() && ProjectSlug::parse(name).is_ok()
        });
        if !named {
            errors.push(at(
                "target",
                format!("'{key}' is not a project: name it `environment/name` (or give its id)"),
            ));
            return;
        }
    }
    let checked = NewBudget {
        target: if project.is_some() {
            uuid::Uuid::nil().to_string()
        } else {
            budget.target.clone()
        },
        ..budget.clone()
    };
    match checked.validate() {
        Ok(()) => out.push(BudgetSpec {
            file: file.to_owned(),
            line,
            budget,
            project,
            node: node.clone(),
        }),
        Err(problems) => errors.extend(
            problems
                .into_iter()
                .map(|FieldError { field, message }| at(&field, message)),
        ),
    }
}

fn specs_from(file: &Path, node: &Node, errors: &mut Vec<FileError>, specs: &mut Vec<ProjectSpec>) {
    let line = start_line(node.span());
    let at = |field: &str, message: String| FileError {
        file: file.to_owned(),
        line: locate(node, field).unwrap_or(line),
        field: field.to_owned(),
        message,
    };
    let Value::Object(mut fields) = to_json(node) else {
        errors.push(at("", "a project must be a mapping of its fields".into()));
        return;
    };
    let members = fields.remove("members").map(|m| parse_members(&m));
    let members = match members {
        None => None,
        Some(Ok(m)) => Some(m),
        Some(Err(problems)) => {
            errors.extend(problems.into_iter().map(|(field, why)| at(&field, why)));
            None
        }
    };
    let project: NewProject = match deserialize_at(Value::Object(fields)) {
        Ok(p) => p,
        Err((field, message)) => {
            errors.push(at(&field, message));
            return;
        }
    };
    match project.validate() {
        Ok(draft) => specs.push(ProjectSpec {
            file: file.to_owned(),
            line,
            draft,
            members,
            node: node.clone(),
        }),
        Err(problems) => errors.extend(
            problems
                .into_iter()
                .map(|FieldError { field, message }| at(&field, message)),
        ),
    }
}

fn parse_members(value: &Value) -> Result<BTreeMap<String, ProjectRole>, Vec<(String, String)>> {
    let Some(entries) = value.as_object() else {
        return Err(vec![(
            "members".into(),
            "must map each subject to a role, e.g. `alice@example.com: owner`".into(),
        )]);
    };
    let mut members = BTreeMap::new();
    let mut problems = Vec::new();
    for (subject, role) in entries {
        let field = format!("members.{subject}");
        if let Err(e) = Subject::parse(subject) {
            problems.push((field.clone(), e.to_string()));
        }
        match role.as_str().map(ProjectRole::parse) {
            Some(Ok(role)) => {
                members.insert(subject.clone(), role);
            }
            _ => problems.push((field, "must be owner, developer or viewer".into())),
        }
    }
    if problems.is_empty() {
        Ok(members)
    } else {
        Err(problems)
    }
}

/// Checks each project's models against strata's catalog (`GET /api/v1/models`) as
/// strata will: known, offered in the project's region, callable under its data
/// retention. Found here, a problem stops the apply before its first write.
pub fn check_catalog(specs: &[ProjectSpec], catalog: &[Value]) -> Vec<FileError> {
    let by_id: BTreeMap<&str, &Value> = catalog
        .iter()
        .filter_map(|m| m["id"].as_str().map(|id| (id, m)))
        .collect();
    let listed = |model: &Value, field: &str, wanted: &str| {
        model[field]
            .as_array()
            .is_some_and(|items| items.iter().any(|i| i == wanted))
    };
    let mut errors = Vec::new();
    for spec in specs {
        let region = spec.draft.region.as_str();
        let mode = spec.draft.data_retention.mantle_mode();
        for (i, id) in spec.draft.allowed_models.iter().enumerate() {
            let field = format!("allowed_models[{i}]");
            match by_id.get(id.as_str()) {
                None => errors.push(spec.error(
                    &field,
                    format!("unknown model '{id}'; `GET /api/v1/models` lists the catalog"),
                )),
                Some(m) if !listed(m, "regions", region) => {
                    errors.push(spec.error(&field, format!("'{id}' is not offered in {region}")))
                }
                Some(m)
                    if mode != RetentionMode::Inherit
                        && !listed(m, "retention_modes", mode.as_str()) =>
                {
                    errors.push(spec.error(
                        &field,
                        format!(
                            "'{id}' may not be called under data retention '{}' (Mantle mode '{}')",
                            spec.draft.data_retention, mode
                        ),
                    ));
                }
                Some(_) => {}
            }
        }
    }
    errors
}

/// The field serde names in "unknown field `x`, expected …".
fn unknown_field(message: &str) -> Option<&str> {
    message
        .strip_prefix("unknown field `")
        .and_then(|rest| rest.split_once('`'))
        .map(|(name, _)| name)
}

fn load_error(file: &Path, error: &marked_yaml::LoadError) -> FileError {
    use marked_yaml::LoadError as E;
    let (marker, message) = match error {
        E::TopLevelMustBeMapping(m) => (
            Some(m),
            "expected a project, or `projects:` with a list".to_owned(),
        ),
        E::TopLevelMustBeSequence(m) => (Some(m), "expected a list".to_owned()),
        E::UnexpectedAnchor(m) => (Some(m), "anchors and aliases are not supported".to_owned()),
        E::MappingKeyMustBeScalar(m) => (Some(m), "keys must be plain text".to_owned()),
        E::UnexpectedTag(m) => (Some(m), "YAML tags (`!x`) are not supported".to_owned()),
        E::ScanError(m, e) => (Some(m), format!("not valid YAML: {}", e.info())),
        E::DuplicateKey(inner) => (
            inner.key.span().start(),
            format!(
                "`{}` appears twice (first on line {})",
                inner.key.as_str(),
                start_line(inner.prev_key.span())
            ),
        ),
    };
    FileError {
        file: file.to_owned(),
        line: marker.map_or(1, marked_yaml::Marker::line),
        field: String::new(),
        message,
    }
}

fn start_line(span: &marked_yaml::Span) -> usize {
    span.start().map_or(1, marked_yaml::Marker::line)
}

/// The line of `field` (`a.b[2].c`) under `node`, or of the deepest part of it that
/// exists. A key may hold dots itself (`members.alice@example.com`): the longest key
/// present wins.
fn locate(node: &Node, field: &str) -> Option<usize> {
    let segments = segments(field);
    let mut current = node;
    let mut line = None;
    let mut i = 0;
    while i < segments.len() {
        match segments[i] {
            Segment::Key(_) => {
                let mapping = current.as_mapping()?;
                let (taken, (k, v)) = (i..segments.len())
                    .rev()
                    .filter_map(|j| {
                        let keys: Option<Vec<&str>> = segments[i..=j]
                            .iter()
                            .map(|s| match s {
                                Segment::Key(k) => Some(*k),
                                Segment::Index(_) => None,
                            })
                            .collect();
                        let key = keys?.join(".");
                        mapping
                            .iter()
                            .find(|(k, _)| k.as_str() == key)
                            .map(|found| (j + 1 - i, found))
                    })
                    .next()?;
                line = Some(start_line(k.span()));
                current = v;
                i += taken;
            }
            Segment::Index(n) => {
                let item = current.as_sequence()?.get(n)?;
                line = Some(start_line(item.span()));
                current = item;
                i += 1;
            }
        }
    }
    line
}

#[derive(Clone, Copy)]
enum Segment<'a> {
    Key(&'a str),
    Index(usize),
}

fn segments(field: &str) -> Vec<Segment<'_>> {
    let mut out = Vec::new();
    for part in field.split('.').filter(|p| !p.is_empty()) {
        let (key, rest) = part.split_once('[').map_or((part, ""), |(k, r)| (k, r));
        if !key.is_empty() {
            out.push(Segment::Key(key));
        }
        for index in rest.split('[') {
            if let Ok(i) = index.trim_end_matches(']').parse() {
                out.push(Segment::Index(i));
            }
        }
    }
    out
}

/// YAML as JSON: quoted scalars stay text; plain ones become null, booleans and
/// numbers as YAML 1.2's core schema reads them.
fn to_json(node: &Node) -> Value {
    match node {
        Node::Scalar(s) => {
            let text = s.as_str();
            if !s.may_coerce() {
                return Value::String(text.to_owned());
            }
            match text {
                "" | "~" | "null" | "Null" | "NULL" => Value::Null,
                "true" | "True" | "TRUE" => Value::Bool(true),
                "false" | "False" | "FALSE" => Value::Bool(false),
                _ => number(text).unwrap_or_else(|| Value::String(text.to_owned())),
            }
        }
        Node::Sequence(items) => Value::Array(items.iter().map(to_json).collect()),
        Node::Mapping(entries) => Value::Object(
            entries
                .iter()
                .map(|(k, v)| (k.as_str().to_owned(), to_json(v)))
                .collect::<Map<_, _>>(),
        ),
    }
}

fn number(text: &str) -> Option<Value> {
    if let Ok(i) = text.parse::<i64>() {
        return Some(Value::from(i));
    }
    let numeric = text
        .chars()
        .all(|c| c.is_ascii_digit() || matches!(c, '+' | '-' | '.' | 'e' | 'E'));
    if !numeric {
        return None;
    }
    text.parse::<f64>()
        .ok()
        .and_then(serde_json::Number::from_f64)
        .map(Value::Number)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> (Vec<ProjectSpec>, Vec<String>) {
        let (declared, errors) = parse_all(text);
        (declared.projects, errors)
    }

    fn parse_all(text: &str) -> (Declared, Vec<String>) {
        let mut declared = Declared::default();
        let mut errors = Vec::new();
        parse_file(Path::new("p.yaml"), 0, text, &mut declared, &mut errors);
        (declared, errors.iter().map(ToString::to_string).collect())
    }

    #[test]
    fn budgets_beside_projects_and_where_their_problems_are() {
        let text = "\
projects:
  - name: checkout-api
    environment: prod
    team: payments
    region: us-east-1
    allowed_models: [openai.gpt-oss-20b]
budgets:
  - name: payments-weekly
    scope: team
    target: payments
    period: week
    amount_usd: 250
    enforcement: hard
  - name: checkout-daily
    scope: project
    target: prod/checkout-api
    period: day
    amount_usd: 20
";
        let (declared, errors) = parse_all(text);
        assert_eq!(errors, Vec::<String>::new());
        assert_eq!(declared.projects.len(), 1);
        let budgets: Vec<(&str, Option<&str>)> = declared
            .budgets
            .iter()
            .map(|b| (b.budget.name.as_str(), b.project.as_deref()))
            .collect();
        assert_eq!(
            budgets,
            [
                ("payments-weekly", None),
                ("checkout-daily", Some("prod/checkout-api"))
            ]
        );
        let bad = "\
budgets:
  - name: a
    scope: team
    target: payments
    period: fortnight
    amount_usd: 1
  - name: b
    scope: project
    target: checkout-api
    period: day
    amount_usd: 1
  - name: c
    scope: tag
    target: CostCenter=1
    period: day
    amount_usd: 0
";
        let (_, errors) = parse_all(bad);
        assert_eq!(errors.len(), 3, "{errors:?}");
        assert!(
            errors[0].starts_with("p.yaml:5: period: unknown variant `fortnight`"),
            "{errors:?}"
        );
        assert!(
            errors[1].starts_with("p.yaml:9: target: 'checkout-api' is not a project"),
            "{errors:?}"
        );
        assert!(
            errors[2].starts_with("p.yaml:16: amount_usd: must be at least 0.01"),
            "{errors:?}"
        );
        let (_, errors) = parse_all("budgets: {name: x}\nowner: me\n");
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(
            errors[0].starts_with(
                "p.yaml:2: owner: a file with `projects:` or `budgets:` holds nothing else"
            ),
            "{errors:?}"
        );
        assert!(
            errors[1].starts_with("p.yaml:1: budgets: must be a list of budgets"),
            "{errors:?}"
        );
    }

    const ONE: &str = "\
name: checkout-api
environment: prod
team: payments
region: us-east-1
allowed_models:
  - openai.gpt-oss-120b
tags:
  CostCenter: \"1234\"
monthly_budget_usd: 500
members:
  alice@example.com: owner
";

    #[test]
    fn one_project_per_file_with_members() {
        let (specs, errors) = parse(ONE);
        assert_eq!(errors, Vec::<String>::new());
        let spec = &specs[0];
        assert_eq!(spec.key(), "prod/checkout-api");
        assert_eq!(
            spec.draft.tags.get("CostCenter").map(String::as_str),
            Some("1234")
        );
        assert_eq!(
            spec.members
                .as_ref()
                .and_then(|m| m.get("alice@example.com")),
            Some(&ProjectRole::Owner)
        );
        assert_eq!(spec.draft.display_name, "checkout-api", "defaults applied");
    }

    #[test]
    fn a_list_of_projects_and_where_each_problem_is() {
        let text = "\
projects:
  - name: ok-one
    environment: dev
    team: ml
    region: us-east-1
    allowed_models: [openai.gpt-oss-20b]
  - name: bad-one
    environment: dev
    team: ml
    region: us-east-1
    allowed_models:
      - openai.gpt-oss-20b
      - NotAModel
    rate_limits:
      rpm: 0
";
        let (specs, errors) = parse(text);
        assert_eq!(specs.len(), 1);
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(
            errors[0].starts_with("p.yaml:13: allowed_models[1]: "),
            "{errors:?}"
        );
        assert!(
            errors[1].starts_with("p.yaml:15: rate_limits.rpm: "),
            "{errors:?}"
        );
    }

    #[test]
    fn type_errors_unknown_fields_and_bad_yaml_are_located() {
        let (_, errors) = parse("name: x1\nenvironment: moon\n");
        assert!(
            errors[0].starts_with("p.yaml:2: environment: "),
            "{errors:?}"
        );
        let (_, errors) = parse(&format!("{ONE}colour: blue\n"));
        assert!(
            errors[0].starts_with("p.yaml:12: colour: unknown field `colour`"),
            "{errors:?}"
        );
        let (_, errors) = parse("name: a\nname: b\n");
        assert!(
            errors[0].contains("p.yaml:2: `name` appears twice"),
            "{errors:?}"
        );
        let (_, errors) = parse("name: [unclosed\n");
        assert!(errors[0].contains("not valid YAML"), "{errors:?}");
        let (_, errors) =
            parse(&ONE.replace("alice@example.com: owner", "alice@example.com: boss"));
        assert!(
            errors[0].starts_with("p.yaml:11: members.alice@example.com: must be owner"),
            "{errors:?}"
        );
    }

    #[test]
    fn every_document_of_a_file_counts_and_lines_stay_the_files() {
        let second = ONE
            .replace("checkout-api", "search")
            .replace("members:\n  alice@example.com: owner\n", "");
        let text = format!("---\n# first\n{ONE}---\n{second}...\n");
        let (specs, errors) = parse(&text);
        assert_eq!(errors, Vec::<String>::new());
        let keys: Vec<String> = specs.iter().map(ProjectSpec::key).collect();
        assert_eq!(keys, ["prod/checkout-api", "prod/search"]);
        let (_, errors) = parse(&format!(
            "{ONE}---\n{}",
            second.replace("us-east-1", "mars-1")
        ));
        assert!(errors[0].starts_with("p.yaml:16: region: "), "{errors:?}");
    }

    #[test]
    fn quoted_scalars_stay_text() {
        let (_, errors) = parse(&ONE.replace("CostCenter: \"1234\"", "CostCenter: 1234"));
        assert!(
            errors[0].starts_with("p.yaml:8: tags.CostCenter: "),
            "{errors:?}"
        );
    }
}
