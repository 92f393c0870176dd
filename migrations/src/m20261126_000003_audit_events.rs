//! The audit log.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum AuditEvents {
    Table,
    Id,
    OccurredAt,
    Actor,
    Action,
    TargetType,
    TargetId,
    Before,
    After,
    RequestId,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(AuditEvents::Table)
                    .col(uuid(AuditEvents::Id).primary_key())
                    .col(timestamp_with_time_zone(AuditEvents::OccurredAt))
                    .col(string_len(AuditEvents::Actor, 255))
                    .col(string_len(AuditEvents::Action, 64))
                    .col(string_len(AuditEvents::TargetType, 32))
                    .col(string_len(AuditEvents::TargetId, 512))
                    .col(json_binary_null(AuditEvents::Before))
                    .col(json_binary_null(AuditEvents::After))
                    .col(string_len_null(AuditEvents::RequestId, 128))
                    .to_owned(),
            )
            .await?;
        for (name, cols) in [
            ("audit_events_occurred_at", vec![AuditEvents::OccurredAt]),
            (
                "audit_events_target",
                vec![AuditEvents::TargetType, AuditEvents::TargetId],
            ),
            ("audit_events_actor", vec![AuditEvents::Actor]),
        ] {
            let mut index = Index::create()
                .name(name)
                .table(AuditEvents::Table)
                .to_owned();
            for c in cols {
                index.col(c);
            }
            manager.create_index(index).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(AuditEvents::Table).to_owned())
            .await
    }
}
