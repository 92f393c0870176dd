//! `policies/mantle-routes.toml`: each call the proxy forwards to Mantle and the IAM
//! actions AWS checks for it. The inference policy is rendered from this table, so a
//! route the proxy serves can never lack its grant without a test failing.

use std::sync::LazyLock;

use serde::Deserialize;

const ROUTES_TOML: &str = include_str!("../../../policies/mantle-routes.toml");

/// One proxied call: method, Mantle path (with `{id}` for a response id) and the IAM
/// actions it needs on the project's Mantle ARN.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MantleRoute {
    pub method: String,
    pub path: String,
    pub actions: Vec<String>,
}

/// The whole table.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MantleRoutes {
    /// Actions that carry `bedrock-mantle:Model`, limited to the project's models.
    pub model_scoped_actions: Vec<String>,
    #[serde(rename = "route")]
    pub routes: Vec<MantleRoute>,
}

/// Why the built-in table of Mantle routes is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RoutesError {
    #[error("policies/mantle-routes.toml is invalid")]
    Syntax(#[source] toml::de::Error),
    #[error("policies/mantle-routes.toml: {method} {path} names no IAM action")]
    NoAction { method: String, path: String },
    #[error(
        "policies/mantle-routes.toml: {method} {path} names '{action}', not a bedrock-mantle action"
    )]
    ForeignAction {
        method: String,
        path: String,
        action: String,
    },
}

static ROUTES: LazyLock<Result<MantleRoutes, RoutesError>> = LazyLock::new(|| parse(ROUTES_TOML));

fn parse(text: &str) -> Result<MantleRoutes, RoutesError> {
    let table: MantleRoutes = toml::from_str(text).map_err(RoutesError::Syntax)?;
    for route in &table.routes {
        if route.actions.is_empty() {
            return Err(RoutesError::NoAction {
                method: route.method.clone(),
                path: route.path.clone(),
            });
        }
        if let Some(bad) = route
            .actions
            .iter()
            .find(|a| !a.starts_with("bedrock-mantle:"))
        {
            return Err(RoutesError::ForeignAction {
                method: route.method.clone(),
                path: route.path.clone(),
                action: bad.clone(),
            });
        }
    }
    Ok(table)
}

/// The table built into the binary.
pub fn mantle_routes() -> Result<&'static MantleRoutes, RoutesError> {
    ROUTES.as_ref().map_err(Clone::clone)
}

impl MantleRoutes {
    /// The actions a route needs; `None` for a route the table does not list.
    pub fn actions_for(&self, method: &str, path: &str) -> Option<&[String]> {
        self.routes
            .iter()
            .find(|r| r.method.eq_ignore_ascii_case(method) && r.path == path)
            .map(|r| r.actions.as_slice())
    }

    /// Every action of the table, sorted, once each, split into those limited to the
    /// project's models and the rest.
    pub fn grants(&self) -> (Vec<String>, Vec<String>) {
        let mut all: Vec<String> = self
            .routes
            .iter()
            .flat_map(|r| r.actions.iter().cloned())
            .collect();
        all.sort();
        all.dedup();
        all.into_iter()
            .partition(|a| self.model_scoped_actions.contains(a))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_table_parses_and_covers_every_responses_call() {
        let routes = mantle_routes().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            routes.actions_for("POST", "/v1/chat/completions"),
            Some(&["bedrock-mantle:CreateInference".to_owned()][..])
        );
        assert_eq!(
            routes.actions_for("get", "/v1/responses/{id}"),
            Some(&["bedrock-mantle:GetInference".to_owned()][..])
        );
        let (scoped, rest) = routes.grants();
        assert_eq!(scoped, ["bedrock-mantle:CreateInference"]);
        assert_eq!(
            rest,
            [
                "bedrock-mantle:CancelInference",
                "bedrock-mantle:DeleteInference",
                "bedrock-mantle:GetInference"
            ]
        );
    }

    #[test]
    fn a_route_without_actions_or_with_a_foreign_action_is_refused() {
        let empty = "model_scoped_actions = []\n[[route]]\nmethod = \"GET\"\npath = \"/v1/x\"\nactions = []\n";
        assert!(matches!(parse(empty), Err(RoutesError::NoAction { path, .. }) if path == "/v1/x"));
        let foreign = "model_scoped_actions = []\n[[route]]\nmethod = \"GET\"\npath = \"/v1/x\"\nactions = [\"bedrock:InvokeModel\"]\n";
        assert!(matches!(
            parse(foreign),
            Err(RoutesError::ForeignAction { action, .. }) if action == "bedrock:InvokeModel"
        ));
        assert!(matches!(parse("[[route"), Err(RoutesError::Syntax(_))));
    }
}
