//! A counter that every budget write bumps, so the policy snapshot's version changes
//! when a budget is created, changed or deleted (a count or a sum of the rows could
//! come out the same after a delete and a create).

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum ChangeCounters {
    Table,
    Name,
    Value,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(ChangeCounters::Table)
                    .col(string_len(ChangeCounters::Name, 32).primary_key())
                    .col(big_integer(ChangeCounters::Value))
                    .to_owned(),
            )
            .await?;
        manager
            .exec_stmt(
                Query::insert()
                    .into_table(ChangeCounters::Table)
                    .columns([ChangeCounters::Name, ChangeCounters::Value])
                    .values_panic(["budgets".into(), 0i64.into()])
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(ChangeCounters::Table).to_owned())
            .await
    }
}
