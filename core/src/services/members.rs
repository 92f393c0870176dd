//! Project membership: who may see and work on a project, with which project role.

use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, Set};
use uuid::Uuid;

use super::audit::{Change, record, snapshot};
use super::{Services, corrupt};
use crate::CoreError;
use crate::auth::Actor;
use crate::domain::{Member, ProjectRole, ProjectStatus, Subject};
use crate::store::entities::project_members;

fn to_domain(row: project_members::Model) -> Result<Member, CoreError> {
    Ok(Member {
        project_id: row.project_id,
        subject: Subject::parse(&row.subject).map_err(|e| corrupt("member subject", e))?,
        role: ProjectRole::parse(&row.role).map_err(|e| corrupt("member role", e))?,
        created_at: row.created_at,
        updated_at: row.updated_at,
    })
}

fn member_not_found(project_id: Uuid, subject: &str) -> CoreError {
    CoreError::NotFound {
        kind: "member",
        id: format!("{project_id}/{subject}"),
    }
}

impl Services {
    /// The caller's role in a project, if a member.
    pub async fn membership(
        &self,
        project_id: Uuid,
        subject: &str,
    ) -> Result<Option<ProjectRole>, CoreError> {
        let row = project_members::Entity::find_by_id((project_id, subject.to_owned()))
            .one(self.store.db())
            .await?;
        row.map(|r| ProjectRole::parse(&r.role).map_err(|e| corrupt("member role", e)))
            .transpose()
    }

    pub async fn list_members(&self, project_id: Uuid) -> Result<Vec<Member>, CoreError> {
        project_members::Entity::find()
            .filter(project_members::Column::ProjectId.eq(project_id))
            .order_by_asc(project_members::Column::Subject)
            .all(self.store.db())
            .await?
            .into_iter()
            .map(to_domain)
            .collect()
    }

    pub async fn get_member(&self, project_id: Uuid, subject: &str) -> Result<Member, CoreError> {
        project_members::Entity::find_by_id((project_id, subject.to_owned()))
            .one(self.store.db())
            .await?
            .map(to_domain)
            .transpose()?
            .ok_or_else(|| member_not_found(project_id, subject))
    }

    /// Adds a member or changes its role. Returns the member and whether it is new.
    pub async fn put_member(
        &self,
        actor: &Actor,
        project_id: Uuid,
        subject: &Subject,
        role: ProjectRole,
    ) -> Result<(Member, bool), CoreError> {
        let project = self.get_project(project_id).await?;
        if project.status == ProjectStatus::Archived {
            return Err(CoreError::Conflict {
                code: "project_archived",
                message: format!(
                    "project '{project_id}' is archived; its members can no longer change"
                ),
            });
        }
        let now = self.clock.now();
        let tx = self.store.begin_write().await?;
        let existing = project_members::Entity::find_by_id((project_id, subject.to_string()))
            .one(&*tx)
            .await?;
        let before = existing.clone().map(to_domain).transpose()?;
        if let Some(b) = &before
            && b.role == role
        {
            return Ok((b.clone(), false));
        }
        let saved = match existing {
            Some(row) => {
                let mut active: project_members::ActiveModel = row.into();
                active.role = Set(role.as_str().into());
                active.updated_at = Set(now);
                active.update(&*tx).await?
            }
            None => {
                project_members::ActiveModel {
                    project_id: Set(project_id),
                    subject: Set(subject.to_string()),
                    role: Set(role.as_str().into()),
                    created_at: Set(now),
                    updated_at: Set(now),
                }
                .insert(&*tx)
                .await?
            }
        };
        let member = to_domain(saved)?;
        let change = Change {
            action: "member.put",
            target_type: "member",
            target_id: format!("{project_id}/{subject}"),
            before: before.as_ref().and_then(snapshot),
            after: snapshot(&member),
        };
        record(&*tx, actor, now, change).await?;
        tx.commit().await?;
        Ok((member, before.is_none()))
    }

    pub async fn delete_member(
        &self,
        actor: &Actor,
        project_id: Uuid,
        subject: &str,
    ) -> Result<(), CoreError> {
        let tx = self.store.begin_write().await?;
        let existing = project_members::Entity::find_by_id((project_id, subject.to_owned()))
            .one(&*tx)
            .await?
            .ok_or_else(|| member_not_found(project_id, subject))?;
        let before = to_domain(existing)?;
        project_members::Entity::delete_by_id((project_id, subject.to_owned()))
            .exec(&*tx)
            .await?;
        let change = Change {
            action: "member.delete",
            target_type: "member",
            target_id: format!("{project_id}/{subject}"),
            before: snapshot(&before),
            after: None,
        };
        record(&*tx, actor, self.clock.now(), change).await?;
        tx.commit().await?;
        Ok(())
    }
}
