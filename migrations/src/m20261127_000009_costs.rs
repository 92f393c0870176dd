//! Cost Explorer actuals per day, environment and tag (untagged cost kept under an
//! empty value), what range of days each tag key has been fetched for, and every
//! billed Cost Explorer call (the daily call budget is counted from these).

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum CostDaily {
    Table,
    Day,
    Environment,
    TagKey,
    TagValue,
    AmountMicros,
    Unit,
    Estimated,
    FetchedAt,
}

#[derive(DeriveIden)]
enum CostCoverage {
    Table,
    TagKey,
    FetchedFrom,
    FetchedTo,
    RefreshedAt,
}

#[derive(DeriveIden)]
enum CostExplorerCalls {
    Table,
    Id,
    At,
    Operation,
    Ok,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(CostDaily::Table)
                    .col(date(CostDaily::Day))
                    // `strata:environment`'s value; empty for cost without it.
                    .col(string_len(CostDaily::Environment, 256))
                    .col(string_len(CostDaily::TagKey, 128))
                    // Empty: cost that carries no such tag ("untagged").
                    .col(string_len(CostDaily::TagValue, 256))
                    .col(big_integer(CostDaily::AmountMicros))
                    .col(string_len(CostDaily::Unit, 16))
                    .col(boolean(CostDaily::Estimated))
                    .col(timestamp_with_time_zone(CostDaily::FetchedAt))
                    .primary_key(
                        Index::create()
                            .col(CostDaily::TagKey)
                            .col(CostDaily::Day)
                            .col(CostDaily::Environment)
                            .col(CostDaily::TagValue),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(CostCoverage::Table)
                    .col(string_len(CostCoverage::TagKey, 128).primary_key())
                    .col(date(CostCoverage::FetchedFrom))
                    // Exclusive.
                    .col(date(CostCoverage::FetchedTo))
                    .col(timestamp_with_time_zone(CostCoverage::RefreshedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(CostExplorerCalls::Table)
                    .col(uuid(CostExplorerCalls::Id).primary_key())
                    .col(timestamp_with_time_zone(CostExplorerCalls::At))
                    .col(string_len(CostExplorerCalls::Operation, 64))
                    .col(boolean(CostExplorerCalls::Ok))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("cost_explorer_calls_at")
                    .table(CostExplorerCalls::Table)
                    .col(CostExplorerCalls::At)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            CostExplorerCalls::Table.into_iden(),
            CostCoverage::Table.into_iden(),
            CostDaily::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
