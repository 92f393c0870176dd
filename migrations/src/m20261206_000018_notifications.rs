//! Notifications that reach people: destinations (webhooks, Slack), the events to tell
//! them about (one row per event, unique by what it is about, so replicas record it
//! once), and each event's delivery to each destination with its attempts and last
//! error (one row per pair: delivered once per destination).

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum NotificationDestinations {
    Table,
    Id,
    Name,
    Kind,
    Url,
    Secret,
    Events,
    Environment,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Notifications {
    Table,
    Id,
    Kind,
    DedupeKey,
    Environment,
    Summary,
    Payload,
    FannedOut,
    CreatedAt,
}

#[derive(DeriveIden)]
enum NotificationDeliveries {
    Table,
    NotificationId,
    DestinationId,
    Status,
    Attempts,
    NextAttemptAt,
    LeaseUntil,
    LastStatus,
    LastError,
    DeliveredAt,
    UpdatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(NotificationDestinations::Table)
                    .col(uuid(NotificationDestinations::Id).primary_key())
                    .col(string_len(NotificationDestinations::Name, 100).unique_key())
                    .col(string_len(NotificationDestinations::Kind, 16))
                    .col(string_len(NotificationDestinations::Url, 2048))
                    .col(text_null(NotificationDestinations::Secret))
                    .col(json_binary(NotificationDestinations::Events))
                    .col(string_len_null(NotificationDestinations::Environment, 16))
                    .col(timestamp_with_time_zone(
                        NotificationDestinations::CreatedAt,
                    ))
                    .col(timestamp_with_time_zone(
                        NotificationDestinations::UpdatedAt,
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Notifications::Table)
                    .col(uuid(Notifications::Id).primary_key())
                    .col(string_len(Notifications::Kind, 32))
                    .col(string_len(Notifications::DedupeKey, 255).unique_key())
                    .col(string_len_null(Notifications::Environment, 16))
                    .col(text(Notifications::Summary))
                    .col(json_binary(Notifications::Payload))
                    .col(boolean(Notifications::FannedOut).default(false))
                    .col(timestamp_with_time_zone(Notifications::CreatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("notifications_to_fan_out")
                    .table(Notifications::Table)
                    .col(Notifications::FannedOut)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(NotificationDeliveries::Table)
                    .col(uuid(NotificationDeliveries::NotificationId))
                    .col(uuid(NotificationDeliveries::DestinationId))
                    .col(string_len(NotificationDeliveries::Status, 16))
                    .col(integer(NotificationDeliveries::Attempts))
                    .col(timestamp_with_time_zone(
                        NotificationDeliveries::NextAttemptAt,
                    ))
                    .col(timestamp_with_time_zone_null(
                        NotificationDeliveries::LeaseUntil,
                    ))
                    .col(integer_null(NotificationDeliveries::LastStatus))
                    .col(text_null(NotificationDeliveries::LastError))
                    .col(timestamp_with_time_zone_null(
                        NotificationDeliveries::DeliveredAt,
                    ))
                    .col(timestamp_with_time_zone(NotificationDeliveries::UpdatedAt))
                    .primary_key(
                        Index::create()
                            .col(NotificationDeliveries::NotificationId)
                            .col(NotificationDeliveries::DestinationId),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(
                                NotificationDeliveries::Table,
                                NotificationDeliveries::DestinationId,
                            )
                            .to(
                                NotificationDestinations::Table,
                                NotificationDestinations::Id,
                            )
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(
                                NotificationDeliveries::Table,
                                NotificationDeliveries::NotificationId,
                            )
                            .to(Notifications::Table, Notifications::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("notification_deliveries_due")
                    .table(NotificationDeliveries::Table)
                    .col(NotificationDeliveries::Status)
                    .col(NotificationDeliveries::NextAttemptAt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            NotificationDeliveries::Table.into_iden(),
            Notifications::Table.into_iden(),
            NotificationDestinations::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
