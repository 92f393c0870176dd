//! The decision for a request with a verified key: may it use this model?

use strata_contract::ApiKeyClaims;
use strata_contract::{ModelId, ProjectStatus, SnapshotProject};

use crate::Policy;

/// Why a request with a valid signature is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denial {
    /// 401 `invalid_api_key`.
    KeyRevoked,
    /// The snapshot does not have the key's project yet (it was made moments ago): 503.
    UnknownProject,
    /// 403: the project is archived.
    ProjectArchived,
    /// 404 `model_not_found`: outside (project allowed ∩ key scope).
    ModelNotAllowed,
}

/// The models this key may use now: the project's current allowed models, narrowed
/// by the key's scope.
pub fn allowed_models<'a>(claims: &ApiKeyClaims, project: &'a SnapshotProject) -> Vec<&'a ModelId> {
    project
        .allowed_models
        .iter()
        .filter(|m| in_scope(claims, m.as_str()))
        .collect()
}

fn in_scope(claims: &ApiKeyClaims, model: &str) -> bool {
    claims
        .models
        .as_ref()
        .is_none_or(|scope| scope.iter().any(|s| s == model))
}

/// The project a key may act for, checked against the snapshot; with `model`, also
/// that the key may use it.
pub fn authorize<'a>(
    claims: &ApiKeyClaims,
    policy: &'a Policy,
    model: Option<&str>,
) -> Result<&'a SnapshotProject, Denial> {
    let project = policy
        .projects
        .get(&claims.project)
        .ok_or(Denial::UnknownProject)?;
    if project.status == ProjectStatus::Archived {
        return Err(Denial::ProjectArchived);
    }
    if policy.revoked_keys.contains(&claims.sub) {
        return Err(Denial::KeyRevoked);
    }
    if let Some(model) = model
        && !(in_scope(claims, model) && project.allowed_models.iter().any(|m| m.as_str() == model))
    {
        return Err(Denial::ModelNotAllowed);
    }
    Ok(project)
}
