//! Budgets at every level: a team's, an environment's, a cost-tag value's, a key's or
//! a project's spend per day, week or month, each with its threshold alerts.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Budgets {
    Table,
    Id,
    Name,
    Scope,
    Target,
    Period,
    AmountCents,
    Enforcement,
    CreatedAt,
    UpdatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Budgets::Table)
                    .col(uuid(Budgets::Id).primary_key())
                    .col(string_len(Budgets::Name, 100).unique_key())
                    .col(string_len(Budgets::Scope, 16))
                    .col(string_len(Budgets::Target, 512))
                    .col(string_len(Budgets::Period, 8))
                    .col(big_integer(Budgets::AmountCents))
                    .col(string_len(Budgets::Enforcement, 8))
                    .col(timestamp_with_time_zone(Budgets::CreatedAt))
                    .col(timestamp_with_time_zone(Budgets::UpdatedAt))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Budgets::Table).to_owned())
            .await
    }
}
