//! Metered usage from the proxy, aggregated per minute, project, key and model (so
//! the write rate does not grow with the request rate), and the batches already
//! applied (a retried batch counts once).

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum UsageMinutes {
    Table,
    ProjectId,
    KeyId,
    Model,
    Minute,
    Requests,
    Errors,
    InputTokens,
    OutputTokens,
    CachedTokens,
    CostMicros,
    LatencyMsSum,
}

#[derive(DeriveIden)]
enum UsageBatches {
    Table,
    Id,
    ReceivedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(UsageMinutes::Table)
                    .col(uuid(UsageMinutes::ProjectId))
                    .col(uuid(UsageMinutes::KeyId))
                    .col(string_len(UsageMinutes::Model, 128))
                    .col(timestamp_with_time_zone(UsageMinutes::Minute))
                    .col(big_integer(UsageMinutes::Requests))
                    .col(big_integer(UsageMinutes::Errors))
                    .col(big_integer(UsageMinutes::InputTokens))
                    .col(big_integer(UsageMinutes::OutputTokens))
                    .col(big_integer(UsageMinutes::CachedTokens))
                    // Micro-dollars at the catalog prices when the usage arrived.
                    .col(big_integer(UsageMinutes::CostMicros))
                    .col(big_integer(UsageMinutes::LatencyMsSum))
                    .primary_key(
                        Index::create()
                            .col(UsageMinutes::ProjectId)
                            .col(UsageMinutes::Minute)
                            .col(UsageMinutes::KeyId)
                            .col(UsageMinutes::Model),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(UsageBatches::Table)
                    .col(uuid(UsageBatches::Id).primary_key())
                    .col(timestamp_with_time_zone(UsageBatches::ReceivedAt))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(UsageBatches::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(UsageMinutes::Table).to_owned())
            .await
    }
}
