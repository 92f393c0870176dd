//! A validation problem tied to the input field it concerns.

use serde::Serialize;
use utoipa::ToSchema;

/// One problem with one input field, so a client can show it next to the field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct FieldError {
    /// JSON path of the offending field, e.g. `tags.CostCenter` or `allowed_models[1]`.
    pub field: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}
