//! Leases: a row per piece of work (`project:{id}`, `environment-pass`) naming the
//! replica that holds it until it expires. Claiming is one conditional upsert, the
//! same statement on Postgres and SQLite: it takes a free or expired lease, or
//! extends one this replica already holds; when another live replica holds it, no
//! row changes and the claim fails. A crashed replica's leases simply expire.

use std::time::Duration;

use sea_orm::sea_query::{Expr, ExprTrait, OnConflict};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, Set};
use strata_core::store::entities::leases;

use crate::Reconciler;

pub async fn claim(r: &Reconciler, name: &str, ttl: Duration) -> Result<bool, String> {
    let now = r.clock.now();
    let expires =
        now + chrono::Duration::from_std(ttl).unwrap_or_else(|_| chrono::Duration::seconds(60));
    let row = leases::ActiveModel {
        name: Set(name.to_owned()),
        owner: Set(r.owner.clone()),
        expires_at: Set(expires),
    };
    let on_conflict = OnConflict::column(leases::Column::Name)
        .update_columns([leases::Column::Owner, leases::Column::ExpiresAt])
        .action_and_where(
            Expr::col((leases::Entity, leases::Column::ExpiresAt))
                .lt(now)
                .or(Expr::col((leases::Entity, leases::Column::Owner)).eq(r.owner.clone())),
        )
        .to_owned();
    let tx = r.store.begin_write().await.map_err(|e| e.to_string())?;
    let changed = leases::Entity::insert(row)
        .on_conflict(on_conflict)
        .exec_without_returning(&*tx)
        .await
        .map_err(|e| e.to_string())?;
    tx.commit().await.map_err(|e| e.to_string())?;
    Ok(changed == 1)
}

pub async fn release(r: &Reconciler, name: &str) -> Result<(), String> {
    leases::Entity::delete_many()
        .filter(leases::Column::Name.eq(name))
        .filter(leases::Column::Owner.eq(r.owner.clone()))
        .exec(r.store.db())
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}
