//! What keeps an environment's cost page fast with a thousand projects: a daily
//! rollup of the proxy's metered cost (the page reads days, not minutes), filled from
//! the minutes already stored, and an index that answers "this key, this
//! environment, these days" from the index alone.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DbBackend};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum UsageDaily {
    Table,
    ProjectId,
    Day,
    Requests,
    CostMicros,
}

const COST_INDEX: &str = "cost_daily_by_environment";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(UsageDaily::Table)
                    .col(uuid(UsageDaily::ProjectId))
                    // The UTC day of the metered minutes.
                    .col(date(UsageDaily::Day))
                    .col(big_integer(UsageDaily::Requests))
                    .col(big_integer(UsageDaily::CostMicros))
                    .primary_key(
                        Index::create()
                            .col(UsageDaily::ProjectId)
                            .col(UsageDaily::Day),
                    )
                    .to_owned(),
            )
            .await?;
        let db = manager.get_connection();
        let (backfill, index) = match manager.get_database_backend() {
            DbBackend::Postgres => (
                "INSERT INTO usage_daily (project_id, day, requests, cost_micros) \
                 SELECT project_id, (minute AT TIME ZONE 'UTC')::date, SUM(requests), SUM(cost_micros) \
                 FROM usage_minutes GROUP BY 1, 2",
                format!(
                    "CREATE INDEX {COST_INDEX} ON cost_daily (tag_key, environment, day) \
                     INCLUDE (tag_value, amount_micros, estimated)"
                ),
            ),
            _ => (
                "INSERT INTO usage_daily (project_id, day, requests, cost_micros) \
                 SELECT project_id, substr(minute, 1, 10), SUM(requests), SUM(cost_micros) \
                 FROM usage_minutes GROUP BY 1, 2",
                format!(
                    "CREATE INDEX {COST_INDEX} ON cost_daily \
                     (tag_key, environment, day, tag_value, amount_micros, estimated)"
                ),
            ),
        };
        db.execute_unprepared(backfill).await?;
        db.execute_unprepared(&index).await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name(COST_INDEX)
                    .table(Alias::new("cost_daily"))
                    .to_owned(),
            )
            .await?;
        manager
            .drop_table(Table::drop().table(UsageDaily::Table).to_owned())
            .await
    }
}
