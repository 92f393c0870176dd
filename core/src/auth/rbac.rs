//! The RBAC table (`policies/rbac.toml`) and the decisions made from it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::Principal;
use crate::domain::ProjectRole;

/// The built-in table, so `strata serve` needs no configuration.
const BUILT_IN: &str = include_str!("../../../policies/rbac.toml");

macro_rules! actions {
    ($($variant:ident => $text:literal),+ $(,)?) => {
        /// Something a caller may be allowed to do.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Action { $($variant),+ }

        impl Action {
            pub const ALL: &'static [Action] = &[$(Action::$variant),+];
            pub fn as_str(self) -> &'static str {
                match self { $(Action::$variant => $text),+ }
            }
            fn parse(s: &str) -> Option<Action> {
                match s { $($text => Some(Action::$variant),)+ _ => None }
            }
        }
    };
}

actions! {
    ProjectsCreate => "projects:create",
    ProjectsRead => "projects:read",
    ProjectsUpdate => "projects:update",
    ProjectsArchive => "projects:archive",
    MembersRead => "members:read",
    MembersWrite => "members:write",
    ModelsRead => "models:read",
    ModelsWrite => "models:write",
    AuditRead => "audit:read",
    CostsRead => "costs:read",
    KeysRead => "keys:read",
    KeysCreate => "keys:create",
    KeysRevoke => "keys:revoke",
    NotificationsRead => "notifications:read",
    NotificationsWrite => "notifications:write",
    BudgetsRead => "budgets:read",
    BudgetsWrite => "budgets:write",
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RoleFile {
    #[serde(default)]
    #[allow(dead_code)]
    description: String,
    #[serde(default)]
    all: Vec<String>,
    #[serde(default)]
    member: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProjectRoleFile {
    #[serde(default)]
    grants: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    roles: BTreeMap<String, RoleFile>,
    #[serde(default)]
    project_roles: BTreeMap<String, ProjectRoleFile>,
    #[serde(default)]
    groups: BTreeMap<String, Vec<String>>,
}

#[derive(Debug, Clone, Default)]
struct Role {
    all: BTreeSet<Action>,
    member: BTreeSet<Action>,
}

/// The outcome of an authorization check on one project.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allow,
    /// The caller may see the project but not do this.
    Forbidden,
    /// The caller may not even learn the project exists.
    NotFound,
}

/// Which projects a caller may list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListScope {
    All,
    MemberOf(String),
    Nothing,
}

#[derive(Debug, Clone)]
pub struct RbacPolicy {
    roles: BTreeMap<String, Role>,
    project_roles: BTreeMap<ProjectRole, BTreeSet<Action>>,
    groups: BTreeMap<String, Vec<String>>,
}

/// Why the RBAC table cannot be used; strata refuses to start with it.
#[derive(Debug, thiserror::Error)]
pub enum RbacError {
    #[error("cannot read the RBAC file {}", .path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the RBAC file {} is invalid", .path.display())]
    InFile {
        path: PathBuf,
        #[source]
        source: Box<RbacError>,
    },
    #[error("invalid RBAC table")]
    Syntax(#[source] toml::de::Error),
    #[error("{context}: unknown action '{action}' (known: {known})")]
    UnknownAction {
        context: String,
        action: String,
        known: String,
    },
    #[error("project_roles.{name}: {message}")]
    UnknownProjectRole { name: String, message: String },
    #[error("groups.{group}: unknown role '{role}'")]
    UnknownRole { group: String, role: String },
}

fn parse_actions(list: &[String], context: &str) -> Result<BTreeSet<Action>, RbacError> {
    list.iter()
        .map(|a| {
            Action::parse(a).ok_or_else(|| {
                let known: Vec<_> = Action::ALL.iter().map(|a| a.as_str()).collect();
                RbacError::UnknownAction {
                    context: context.to_owned(),
                    action: a.clone(),
                    known: known.join(", "),
                }
            })
        })
        .collect()
}

impl RbacPolicy {
    pub fn built_in() -> Result<Self, RbacError> {
        Self::parse(BUILT_IN)
    }

    pub fn load(path: Option<&Path>) -> Result<Self, RbacError> {
        match path {
            None => Self::built_in(),
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|source| RbacError::Read {
                    path: p.to_owned(),
                    source,
                })?;
                Self::parse(&text).map_err(|e| RbacError::InFile {
                    path: p.to_owned(),
                    source: Box::new(e),
                })
            }
        }
    }

    pub fn parse(text: &str) -> Result<Self, RbacError> {
        let file: PolicyFile = toml::from_str(text).map_err(RbacError::Syntax)?;
        let mut roles = BTreeMap::new();
        for (name, role) in &file.roles {
            let all = parse_actions(&role.all, &format!("roles.{name}.all"))?;
            let member = parse_actions(&role.member, &format!("roles.{name}.member"))?;
            roles.insert(name.clone(), Role { all, member });
        }
        let mut project_roles = BTreeMap::new();
        for (name, pr) in &file.project_roles {
            let role =
                ProjectRole::parse(name).map_err(|message| RbacError::UnknownProjectRole {
                    name: name.clone(),
                    message,
                })?;
            project_roles.insert(
                role,
                parse_actions(&pr.grants, &format!("project_roles.{name}.grants"))?,
            );
        }
        for (group, mapped) in &file.groups {
            if let Some(unknown) = mapped.iter().find(|r| !roles.contains_key(*r)) {
                return Err(RbacError::UnknownRole {
                    group: group.clone(),
                    role: unknown.clone(),
                });
            }
        }
        Ok(Self {
            roles,
            project_roles,
            groups: file.groups,
        })
    }

    pub fn has_role(&self, role: &str) -> bool {
        self.roles.contains_key(role)
    }

    pub fn role_names(&self) -> impl Iterator<Item = &str> {
        self.roles.keys().map(String::as_str)
    }

    /// Roles granted by a list of IdP groups.
    pub fn roles_for_groups<'a>(&self, groups: impl IntoIterator<Item = &'a str>) -> Vec<String> {
        let mut out = BTreeSet::new();
        for g in groups {
            if let Some(roles) = self.groups.get(g) {
                out.extend(roles.iter().cloned());
            }
        }
        out.into_iter().collect()
    }

    fn roles_of<'a>(&'a self, p: &'a Principal) -> impl Iterator<Item = &'a Role> {
        p.roles.iter().filter_map(|r| self.roles.get(r))
    }

    /// Allowed on every resource (global actions such as `models:write`).
    pub fn allows(&self, p: &Principal, action: Action) -> bool {
        self.roles_of(p).any(|r| r.all.contains(&action))
    }

    fn allows_as_member(&self, p: &Principal, action: Action, membership: ProjectRole) -> bool {
        self.roles_of(p).any(|r| r.member.contains(&action))
            || self
                .project_roles
                .get(&membership)
                .is_some_and(|g| g.contains(&action))
    }

    /// Decides an action on one project, given the caller's membership in it.
    pub fn decide(
        &self,
        p: &Principal,
        action: Action,
        membership: Option<ProjectRole>,
    ) -> Decision {
        let can =
            |a| self.allows(p, a) || membership.is_some_and(|m| self.allows_as_member(p, a, m));
        if !can(Action::ProjectsRead) {
            Decision::NotFound
        } else if can(action) {
            Decision::Allow
        } else {
            Decision::Forbidden
        }
    }

    pub fn list_scope(&self, p: &Principal) -> ListScope {
        if self.allows(p, Action::ProjectsRead) {
            ListScope::All
        } else if self
            .roles_of(p)
            .any(|r| r.member.contains(&Action::ProjectsRead))
        {
            ListScope::MemberOf(p.subject.clone())
        } else {
            ListScope::Nothing
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who(role: &str) -> Principal {
        Principal {
            subject: "s".into(),
            roles: vec![role.into()],
        }
    }

    #[test]
    fn built_in_table_parses_and_decides() {
        let rbac = RbacPolicy::built_in().unwrap_or_else(|e| panic!("{e}"));
        use Decision::*;
        let admin = who("platform-admin");
        let dev = who("developer");
        let fin = who("finance");
        assert_eq!(rbac.decide(&admin, Action::ProjectsUpdate, None), Allow);
        assert_eq!(rbac.decide(&dev, Action::ProjectsRead, None), NotFound);
        assert_eq!(
            rbac.decide(&dev, Action::ProjectsRead, Some(ProjectRole::Viewer)),
            Allow
        );
        assert_eq!(
            rbac.decide(&dev, Action::ProjectsUpdate, Some(ProjectRole::Owner)),
            Forbidden
        );
        assert_eq!(
            rbac.decide(&dev, Action::MembersWrite, Some(ProjectRole::Owner)),
            Allow
        );
        assert_eq!(
            rbac.decide(&dev, Action::MembersWrite, Some(ProjectRole::Developer)),
            Forbidden
        );
        assert_eq!(rbac.decide(&fin, Action::ProjectsRead, None), Allow);
        assert_eq!(rbac.decide(&fin, Action::MembersRead, None), Forbidden);
        assert_eq!(
            rbac.decide(&who("nobody"), Action::ProjectsRead, None),
            NotFound
        );
        assert_eq!(rbac.list_scope(&dev), ListScope::MemberOf("s".into()));
        assert_eq!(rbac.list_scope(&fin), ListScope::All);
        assert_eq!(
            rbac.roles_for_groups(["strata-finance", "other"]),
            vec!["finance".to_string()]
        );
    }

    #[test]
    fn typos_are_rejected() {
        let err = RbacPolicy::parse("[roles.x]\nall = [\"projects:reed\"]\n").err();
        assert!(
            matches!(&err, Some(RbacError::UnknownAction { context, action, .. })
                if context == "roles.x.all" && action == "projects:reed"),
            "{err:?}"
        );
        let err = RbacPolicy::parse("[roles.x]\n[groups]\ng = [\"y\"]\n").err();
        assert!(
            matches!(&err, Some(RbacError::UnknownRole { group, role }) if group == "g" && role == "y"),
            "{err:?}"
        );
    }
}
