//! Leases: a row per piece of work (`project:{id}`, `environment-pass`,
//! `cost-refresh`) naming the replica that holds it until it expires. Claiming is one
//! conditional upsert, the same statement on Postgres and SQLite: it takes a free or
//! expired lease, or extends one this replica already holds; when another live replica
//! holds it, no row changes and the claim fails. A crashed replica's leases expire.

use std::time::Duration;

use sea_orm::sea_query::{Expr, ExprTrait, OnConflict};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, Set};

use super::Services;
use crate::CoreError;
use crate::store::entities::leases;

impl Services {
    /// Takes or extends the lease `name` for `owner` for `ttl`; false when another
    /// live owner holds it.
    pub async fn claim_lease(
        &self,
        name: &str,
        owner: &str,
        ttl: Duration,
    ) -> Result<bool, CoreError> {
        let now = self.clock.now();
        let expires =
            now + chrono::Duration::from_std(ttl).unwrap_or_else(|_| chrono::Duration::seconds(60));
        let row = leases::ActiveModel {
            name: Set(name.to_owned()),
            owner: Set(owner.to_owned()),
            expires_at: Set(expires),
        };
        let on_conflict = OnConflict::column(leases::Column::Name)
            .update_columns([leases::Column::Owner, leases::Column::ExpiresAt])
            .action_and_where(
                Expr::col((leases::Entity, leases::Column::ExpiresAt))
                    .lt(now)
                    .or(Expr::col((leases::Entity, leases::Column::Owner)).eq(owner)),
            )
            .to_owned();
        let tx = self.store.begin_write().await?;
        let changed = leases::Entity::insert(row)
            .on_conflict(on_conflict)
            .exec_without_returning(&*tx)
            .await?;
        tx.commit().await?;
        Ok(changed == 1)
    }

    /// Gives the lease up, if `owner` holds it.
    pub async fn release_lease(&self, name: &str, owner: &str) -> Result<(), CoreError> {
        leases::Entity::delete_many()
            .filter(leases::Column::Name.eq(name))
            .filter(leases::Column::Owner.eq(owner))
            .exec(self.store.db())
            .await?;
        Ok(())
    }
}
