//! Cost Explorer's month-end forecast per environment, as the last refresh got it; a
//! refused forecast is kept with its reason, so pages can say why they project
//! linearly instead.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum CostForecasts {
    Table,
    Environment,
    PeriodStart,
    PeriodEnd,
    AmountMicros,
    Unit,
    Error,
    FetchedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(CostForecasts::Table)
                    .col(string_len(CostForecasts::Environment, 256).primary_key())
                    // The forecast covers [period_start, period_end).
                    .col(date(CostForecasts::PeriodStart))
                    .col(date(CostForecasts::PeriodEnd))
                    // Absent when Cost Explorer refused (see `error`).
                    .col(big_integer_null(CostForecasts::AmountMicros))
                    .col(string_len_null(CostForecasts::Unit, 16))
                    .col(string_len_null(CostForecasts::Error, 512))
                    .col(timestamp_with_time_zone(CostForecasts::FetchedAt))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(CostForecasts::Table).to_owned())
            .await
    }
}
