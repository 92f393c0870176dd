//! What the reconciler reports about a project, shaped like Kubernetes status
//! conditions: one entry per aspect, with the time it last changed.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
pub enum ConditionType {
    MantleProjectReady,
    IamRoleReady,
    TagsReady,
    Ready,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum ConditionStatus {
    True,
    False,
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Condition {
    #[serde(rename = "type")]
    pub kind: ConditionType,
    pub status: ConditionStatus,
    /// A CamelCase word a program can match on, e.g. `RoleConflict`.
    pub reason: String,
    pub message: String,
    pub last_transition_time: DateTime<Utc>,
    /// The project generation this condition was computed for.
    pub observed_generation: i64,
}

/// Replaces the condition of the same type; keeps `last_transition_time` when the
/// status did not change, so the time says when it last flipped.
pub fn set_condition(conditions: &mut Vec<Condition>, mut next: Condition) {
    match conditions.iter_mut().find(|c| c.kind == next.kind) {
        Some(current) => {
            if current.status == next.status {
                next.last_transition_time = current.last_transition_time;
            }
            *current = next;
        }
        None => conditions.push(next),
    }
    conditions.sort_by_key(|c| c.kind);
}

/// What strata created for the project on AWS, once it has.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ProjectAws {
    pub mantle_project_id: Option<String>,
    pub mantle_project_arn: Option<String>,
    pub role_arn: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cond(status: ConditionStatus, at: i64) -> Condition {
        Condition {
            kind: ConditionType::Ready,
            status,
            reason: "R".into(),
            message: String::new(),
            last_transition_time: DateTime::from_timestamp(at, 0).unwrap_or_default(),
            observed_generation: 1,
        }
    }

    #[test]
    fn transition_time_moves_only_on_a_status_change() {
        let mut all = vec![cond(ConditionStatus::False, 1)];
        set_condition(&mut all, cond(ConditionStatus::False, 2));
        assert_eq!(all[0].last_transition_time.timestamp(), 1);
        set_condition(&mut all, cond(ConditionStatus::True, 3));
        assert_eq!(all[0].last_transition_time.timestamp(), 3);
        assert_eq!(all.len(), 1);
    }
}
