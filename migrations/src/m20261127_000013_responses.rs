//! Which project created each Responses API id (tenant isolation across proxy
//! replicas), and whether a background response has been metered yet (any proxy may
//! claim an unmetered one for a while, poll Mantle and meter it once).

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Responses {
    Table,
    Id,
    ProjectId,
    KeyId,
    Model,
    Background,
    CreatedAt,
    Status,
    MeteredAt,
    ClaimedBy,
    ClaimedUntil,
}

const PENDING_INDEX: &str = "responses_pending";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Responses::Table)
                    // Mantle's `resp_…` id.
                    .col(string_len(Responses::Id, 256).primary_key())
                    .col(uuid(Responses::ProjectId))
                    .col(uuid(Responses::KeyId))
                    .col(string_len(Responses::Model, 128))
                    .col(boolean(Responses::Background))
                    .col(timestamp_with_time_zone(Responses::CreatedAt))
                    // Mantle's last known status (queued, in_progress, completed, …).
                    .col(string_len(Responses::Status, 32))
                    // Set once the response's usage is metered (at once for plain and
                    // streamed ones; when it finishes for background ones).
                    .col(timestamp_with_time_zone_null(Responses::MeteredAt))
                    .col(string_len_null(Responses::ClaimedBy, 128))
                    .col(timestamp_with_time_zone_null(Responses::ClaimedUntil))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name(PENDING_INDEX)
                    .table(Responses::Table)
                    .col(Responses::MeteredAt)
                    .col(Responses::ClaimedUntil)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Responses::Table).to_owned())
            .await
    }
}
