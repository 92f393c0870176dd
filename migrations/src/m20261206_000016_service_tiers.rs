//! Usage by service tier: Mantle bills a request by the tier it was served in
//! (`priority`, `default`, `flex`, `reserved`), so per-minute usage is kept per tier
//! too — the tier joins the primary key, which needs the table rebuilt (SQLite cannot
//! change a primary key); stored minutes become `default`. Catalog models gain the
//! factor each tier costs of the standard prices (none: every tier at the standard
//! prices).

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;
use sea_orm_migration::sea_orm::ConnectionTrait;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Models {
    Table,
    ServiceTierPriceFactors,
}

#[derive(DeriveIden, Clone, Copy)]
enum UsageMinutes {
    Table,
    ProjectId,
    KeyId,
    Model,
    Minute,
    ServiceTier,
    Requests,
    Errors,
    InputTokens,
    OutputTokens,
    CachedTokens,
    CacheWriteTokens,
    CostMicros,
    LatencyMsSum,
}

/// The table being built; renamed to `usage_minutes` once filled.
const REBUILT: &str = "usage_minutes_rebuilt";

const COUNTS: &str = "requests, errors, input_tokens, output_tokens, cached_tokens, \
                      cache_write_tokens, cost_micros, latency_ms_sum";

/// `usage_minutes` as `table`, with or without the tier in the key.
fn minutes_table(table: &str, tiered: bool) -> TableCreateStatement {
    let mut key = Index::create();
    key.col(UsageMinutes::ProjectId)
        .col(UsageMinutes::Minute)
        .col(UsageMinutes::KeyId)
        .col(UsageMinutes::Model);
    let mut create = Table::create();
    create
        .table(Alias::new(table))
        .col(uuid(UsageMinutes::ProjectId))
        .col(uuid(UsageMinutes::KeyId))
        .col(string_len(UsageMinutes::Model, 128))
        .col(timestamp_with_time_zone(UsageMinutes::Minute));
    if tiered {
        create.col(string_len(UsageMinutes::ServiceTier, 16).default("default"));
        key.col(UsageMinutes::ServiceTier);
    }
    for count in [
        UsageMinutes::Requests,
        UsageMinutes::Errors,
        UsageMinutes::InputTokens,
        UsageMinutes::OutputTokens,
        UsageMinutes::CachedTokens,
        UsageMinutes::CacheWriteTokens,
        UsageMinutes::CostMicros,
        UsageMinutes::LatencyMsSum,
    ] {
        create.col(big_integer(count).default(0));
    }
    create.primary_key(&mut key).to_owned()
}

/// Fills the rebuilt table with `select`, then puts it in the old one's place — in one
/// call, so that on SQLite every step runs on the same pooled connection (another one
/// may still see the old table when the rename comes).
async fn replace_minutes(
    manager: &SchemaManager<'_>,
    tiered: bool,
    select: &str,
) -> Result<(), DbErr> {
    let backend = manager.get_database_backend();
    let create = backend.build(&minutes_table(REBUILT, tiered)).to_string();
    let tier = if tiered { ", service_tier" } else { "" };
    let drop = backend
        .build(&Table::drop().table(UsageMinutes::Table).to_owned())
        .to_string();
    let rename = backend
        .build(
            &Table::rename()
                .table(Alias::new(REBUILT), UsageMinutes::Table)
                .to_owned(),
        )
        .to_string();
    manager
        .get_connection()
        .execute_unprepared(&format!(
            "{create}; INSERT INTO {REBUILT} (project_id, key_id, model, minute{tier}, {COUNTS}) \
             {select}; {drop}; {rename}"
        ))
        .await
        .map(|_| ())
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Models::Table)
                    .add_column(json_binary(Models::ServiceTierPriceFactors).default("{}"))
                    .to_owned(),
            )
            .await?;
        replace_minutes(
            manager,
            true,
            &format!(
                "SELECT project_id, key_id, model, minute, 'default', {COUNTS} FROM usage_minutes"
            ),
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // The tiers of a minute are added up again.
        let sums = COUNTS
            .split(',')
            .map(|c| format!("SUM({})", c.trim()))
            .collect::<Vec<_>>()
            .join(", ");
        replace_minutes(
            manager,
            false,
            &format!(
                "SELECT project_id, key_id, model, minute, {sums} FROM usage_minutes \
                 GROUP BY project_id, key_id, model, minute"
            ),
        )
        .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Models::Table)
                    .drop_column(Models::ServiceTierPriceFactors)
                    .to_owned(),
            )
            .await
    }
}
