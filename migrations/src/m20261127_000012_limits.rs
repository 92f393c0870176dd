//! Per-key rate limits (kept with the key's metadata; the key's JWT carries them to
//! the proxy) and the budget threshold events (50 / 80 / 100 % of a project's monthly
//! budget), recorded once per project, month and threshold.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum ApiKeys {
    Table,
    Rpm,
    Tpm,
}

#[derive(DeriveIden)]
enum BudgetEvents {
    Table,
    ProjectId,
    Month,
    ThresholdPercent,
    SpentMicros,
    BudgetMicros,
    RecordedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // SQLite takes one column per ALTER TABLE.
        for column in [ApiKeys::Rpm, ApiKeys::Tpm] {
            manager
                .alter_table(
                    Table::alter()
                        .table(ApiKeys::Table)
                        .add_column(big_integer_null(column))
                        .to_owned(),
                )
                .await?;
        }
        manager
            .create_table(
                Table::create()
                    .table(BudgetEvents::Table)
                    .col(uuid(BudgetEvents::ProjectId))
                    // The UTC month, as its first day.
                    .col(date(BudgetEvents::Month))
                    .col(small_integer(BudgetEvents::ThresholdPercent))
                    // Metered month-to-date spend when the threshold was crossed.
                    .col(big_integer(BudgetEvents::SpentMicros))
                    .col(big_integer(BudgetEvents::BudgetMicros))
                    .col(timestamp_with_time_zone(BudgetEvents::RecordedAt))
                    .primary_key(
                        Index::create()
                            .col(BudgetEvents::ProjectId)
                            .col(BudgetEvents::Month)
                            .col(BudgetEvents::ThresholdPercent),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(BudgetEvents::Table).to_owned())
            .await?;
        for column in [ApiKeys::Rpm, ApiKeys::Tpm] {
            manager
                .alter_table(
                    Table::alter()
                        .table(ApiKeys::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
