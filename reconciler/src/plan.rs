//! What a pass would change, per resource: the answer to `GET …/plan` and
//! `strata reconcile --dry-run`, and the list a real pass executes.

use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ChangeAction {
    Create,
    Update,
    Delete,
}

/// One change to one AWS resource.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Change {
    /// e.g. `mantle_project`, `iam_role`, `iam_role_policy/strata-inference`,
    /// `iam_role_tags`, `resource_tags/arn:aws:s3:::bucket`.
    pub resource: String,
    pub action: ChangeAction,
    pub summary: String,
    /// For documents: what is on AWS now and what it will be.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub before: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after: Option<Value>,
}

impl Change {
    pub fn new(
        resource: impl Into<String>,
        action: ChangeAction,
        summary: impl Into<String>,
    ) -> Self {
        Self {
            resource: resource.into(),
            action,
            summary: summary.into(),
            before: None,
            after: None,
        }
    }

    pub fn with_diff(mut self, before: Option<Value>, after: Option<Value>) -> Self {
        self.before = before;
        self.after = after;
        self
    }
}

/// The changes a pass would make to one project's resources.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Plan {
    pub project_id: Uuid,
    pub generation: i64,
    /// False when strata has no AWS credentials: the plan then assumes nothing
    /// exists yet.
    pub aws_configured: bool,
    pub changes: Vec<Change>,
    /// What stopped the plan early (a conflict, an AWS error), if anything.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blocked: Option<String>,
}
