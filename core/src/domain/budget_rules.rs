//! Budgets at every level: on a project, a team, an environment, a cost-tag value or
//! a key, per day, week or month, alerting at 50, 80 and 100 %.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::{BudgetEnforcement, BudgetPeriod, BudgetScope, Environment, TeamName};
use crate::FieldError;

/// The body of `POST /api/v1/budgets`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewBudget {
    /// Unique, 1 to 100 characters, e.g. `ml-team-weekly`.
    pub name: String,
    pub scope: BudgetScope,
    /// The project or key id, the team slug, the environment, or `Key=Value` of a cost tag.
    #[schema(example = "ml")]
    pub target: String,
    pub period: BudgetPeriod,
    /// US dollars per period, at least 0.01 (kept in whole cents).
    #[schema(example = 250.0)]
    pub amount_usd: f64,
    /// `soft` (the default): alerts only. `hard`: alerts, and the proxy refuses a
    /// request that could take the period's spend past the amount.
    #[serde(default)]
    pub enforcement: BudgetEnforcement,
}

impl NewBudget {
    pub fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut errors = Vec::new();
        let name = self.name.trim();
        if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
            errors.push(FieldError::new(
                "name",
                "must be 1 to 100 characters, no control characters",
            ));
        }
        let target = self.target.trim();
        let target_ok = match self.scope {
            BudgetScope::Project | BudgetScope::Key => Uuid::parse_str(target).is_ok(),
            BudgetScope::Team => TeamName::parse(target).is_ok(),
            BudgetScope::Environment => Environment::parse(target).is_ok(),
            BudgetScope::Tag => target.split_once('=').is_some_and(|(k, v)| {
                !k.is_empty() && !v.is_empty() && !target.chars().any(char::is_control)
            }),
        };
        if !target_ok {
            let what = match self.scope {
                BudgetScope::Project => "a project id",
                BudgetScope::Key => "a key id",
                BudgetScope::Team => "a team slug",
                BudgetScope::Environment => "dev, staging or prod",
                BudgetScope::Tag => "Key=Value of a cost tag",
            };
            errors.push(FieldError::new(
                "target",
                format!("must be {what} for scope {}", self.scope),
            ));
        }
        if !valid_amount(self.amount_usd) {
            errors.push(FieldError::new("amount_usd", AMOUNT_RULE));
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }
}

/// The body of `PATCH /api/v1/budgets/{id}`: the fields to change (a budget's scope
/// and target are what it is; a different one is a new budget).
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BudgetPatch {
    pub period: Option<BudgetPeriod>,
    /// US dollars per period, at least 0.01.
    pub amount_usd: Option<f64>,
    pub enforcement: Option<BudgetEnforcement>,
}

impl BudgetPatch {
    pub fn validate(&self) -> Result<(), Vec<FieldError>> {
        match self.amount_usd {
            Some(amount) if !valid_amount(amount) => {
                Err(vec![FieldError::new("amount_usd", AMOUNT_RULE)])
            }
            _ => Ok(()),
        }
    }
}

const AMOUNT_RULE: &str = "must be at least 0.01 and at most 1e9 (whole cents)";

fn valid_amount(amount: f64) -> bool {
    amount.is_finite() && (0.01..=1e9).contains(&amount)
}

/// A budget with its current period's spend.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct BudgetView {
    pub id: Uuid,
    pub name: String,
    pub scope: BudgetScope,
    pub target: String,
    pub period: BudgetPeriod,
    pub amount_usd: f64,
    pub enforcement: BudgetEnforcement,
    /// The current period, `[start, end)`.
    pub period_start: NaiveDate,
    pub period_end: NaiveDate,
    /// Metered spend in the period so far.
    pub spent_usd: f64,
    pub percent_used: f64,
    pub created_at: DateTime<Utc>,
}
