use sea_orm::entity::prelude::*;
use sha2::{Digest, Sha256};

/// A Responses API id and the project that created it; for background responses,
/// whether they have been metered and which proxy is following them.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "responses")]
pub struct Model {
    /// `key_of(id)`: a 16-byte key is cheaper to insert at random than the id.
    #[sea_orm(primary_key, auto_increment = false)]
    pub key: Uuid,
    pub id: String,
    pub project_id: Uuid,
    pub key_id: Uuid,
    pub model: String,
    pub background: bool,
    pub created_at: DateTimeUtc,
    pub status: String,
    pub metered_at: Option<DateTimeUtc>,
    pub claimed_by: Option<String>,
    pub claimed_until: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

/// The primary key of a response id: the first 16 bytes of its SHA-256 (the
/// migration that introduced it computes the same, in SQL on Postgres).
pub fn key_of(id: &str) -> Uuid {
    let digest = Sha256::digest(id.as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    Uuid::from_bytes(bytes)
}
