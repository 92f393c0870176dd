//! The signing keys of API keys: one active key signs; a rotated-out key keeps
//! verifying (it stays in the JWKS) while a live key it signed has not expired.

use std::sync::Mutex;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::EncodePrivateKey;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use sea_orm::sea_query::{Expr, ExprTrait, OnConflict, Query};
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set,
};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::{API_KEY_PREFIX, ApiKeyClaims, KekError, KeyEncryptionKey};
use crate::CoreError;
use crate::clock::Clock;
use crate::config::KeysConfig;
use crate::domain::Environment;
use crate::store::Store;
use crate::store::entities::{api_keys, signing_keys};

const PURPOSE: &str = "api-keys";
/// The first key has a fixed id so replicas starting together converge on one.
const FIRST_KID: &str = "api-keys-1";

/// One public key in the JWKS (RFC 8037 OKP, Ed25519).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Jwk {
    pub kty: &'static str,
    pub crv: &'static str,
    pub alg: &'static str,
    #[serde(rename = "use")]
    pub use_: &'static str,
    pub kid: String,
    /// base64url of the 32-byte public key.
    pub x: String,
}

/// `/.well-known/jwks.json`: the keys that verify API keys today.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Jwks {
    pub keys: Vec<Jwk>,
}

/// A signing key taken out of service by a rotation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RetiredKey {
    pub kid: String,
    /// It stays in the JWKS until then (the last expiry of a live key it signed);
    /// `None`: it signed no live key and is gone from the JWKS now.
    pub verifies_until: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rotation {
    pub active_kid: String,
    pub retired: Vec<RetiredKey>,
}

/// Signs API keys with the active signing key.
pub struct ApiKeyIssuer {
    kek: KeyEncryptionKey,
    config: KeysConfig,
    /// The active key, decrypted once; re-read when a rotation changed it.
    cache: Mutex<Option<(String, EncodingKey)>>,
}

impl std::fmt::Debug for ApiKeyIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiKeyIssuer")
            .field("issuer", &self.config.key_issuer)
            .field("audience", &self.config.proxy_audience)
            .finish_non_exhaustive()
    }
}

fn new_key(
    kid: &str,
    kek: &KeyEncryptionKey,
    now: DateTime<Utc>,
) -> Result<signing_keys::ActiveModel, CoreError> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| CoreError::internal("generating a signing key", e))?;
    let key = SigningKey::from_bytes(&seed);
    let der = key
        .to_pkcs8_der()
        .map_err(|e| CoreError::internal("encoding a signing key", e))?;
    let sealed = kek
        .seal(kid, der.as_bytes())
        .map_err(|e| CoreError::internal("encrypting a signing key", e))?;
    Ok(signing_keys::ActiveModel {
        kid: Set(kid.into()),
        purpose: Set(PURPOSE.into()),
        algorithm: Set("EdDSA".into()),
        public_key: Set(URL_SAFE_NO_PAD.encode(key.verifying_key().as_bytes())),
        private_key: Set(sealed),
        created_at: Set(now),
        retired_at: Set(None),
    })
}

/// Why the API-key signer cannot start.
#[derive(Debug, thiserror::Error)]
pub enum IssuerError {
    #[error(transparent)]
    Kek(#[from] KekError),
    #[error("cannot prepare the API key signing key")]
    Prepare(#[source] CoreError),
    #[error("cannot load the API key signing key")]
    Load(#[source] CoreError),
}

impl ApiKeyIssuer {
    /// Loads the key encryption key and makes sure an active signing key exists.
    pub async fn load(
        store: &Store,
        config: &KeysConfig,
        clock: &dyn Clock,
    ) -> Result<Self, IssuerError> {
        let kek = KeyEncryptionKey::from_config(config)?;
        Self::with_encryption_key(store, kek, config, clock).await
    }

    /// As [`Self::load`], with the key encryption key already loaded.
    pub async fn with_encryption_key(
        store: &Store,
        kek: KeyEncryptionKey,
        config: &KeysConfig,
        clock: &dyn Clock,
    ) -> Result<Self, IssuerError> {
        let issuer = Self {
            kek,
            config: config.clone(),
            cache: Mutex::new(None),
        };
        issuer
            .ensure_active(store, clock)
            .await
            .map_err(IssuerError::Prepare)?;
        // Fail at start, not at the first key, when the configured key cannot open it.
        issuer.active(store.db()).await.map_err(IssuerError::Load)?;
        Ok(issuer)
    }

    pub fn issuer(&self) -> &str {
        &self.config.key_issuer
    }

    pub fn audience(&self) -> &str {
        &self.config.proxy_audience
    }

    /// The longest a key may live in `environment`, in seconds.
    pub fn max_lifetime_secs(&self, environment: Environment) -> i64 {
        self.config.max_lifetime_secs(environment)
    }

    async fn ensure_active(&self, store: &Store, clock: &dyn Clock) -> Result<(), CoreError> {
        let active = signing_keys::Entity::find()
            .filter(signing_keys::Column::Purpose.eq(PURPOSE))
            .filter(signing_keys::Column::RetiredAt.is_null())
            .one(store.db())
            .await?;
        if active.is_some() {
            return Ok(());
        }
        let row = new_key(FIRST_KID, &self.kek, clock.now())?;
        signing_keys::Entity::insert(row)
            .on_conflict(
                OnConflict::column(signing_keys::Column::Kid)
                    .do_nothing()
                    .to_owned(),
            )
            .exec_without_returning(store.db())
            .await?;
        Ok(())
    }

    /// The active signing key: the newest one not retired.
    pub(crate) async fn active(
        &self,
        db: &impl ConnectionTrait,
    ) -> Result<(String, EncodingKey), CoreError> {
        let kid: Option<String> = signing_keys::Entity::find()
            .select_only()
            .column(signing_keys::Column::Kid)
            .filter(signing_keys::Column::Purpose.eq(PURPOSE))
            .filter(signing_keys::Column::RetiredAt.is_null())
            .order_by_desc(signing_keys::Column::CreatedAt)
            .order_by_desc(signing_keys::Column::Kid)
            .into_tuple()
            .one(db)
            .await?;
        let kid = kid.ok_or_else(|| {
            CoreError::Internal("no active API key signing key (run `strata keys rotate`)".into())
        })?;
        if let Ok(cache) = self.cache.lock()
            && let Some((cached, key)) = cache.as_ref()
            && *cached == kid
        {
            return Ok((kid, key.clone()));
        }
        let row = signing_keys::Entity::find_by_id(kid.clone())
            .one(db)
            .await?
            .ok_or_else(|| CoreError::Internal(format!("signing key '{kid}' vanished")))?;
        let der = self.kek.open(&kid, &row.private_key)?;
        let key = EncodingKey::from_ed_der(&der);
        if let Ok(mut cache) = self.cache.lock() {
            *cache = Some((kid.clone(), key.clone()));
        }
        Ok((kid, key))
    }

    /// Signs `claims` with the key `kid`; the secret the developer gets.
    pub(crate) fn sign(
        kid: &str,
        key: &EncodingKey,
        claims: &ApiKeyClaims,
    ) -> Result<String, CoreError> {
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(kid.into());
        let jwt = jsonwebtoken::encode(&header, claims, key)
            .map_err(|e| CoreError::internal("signing an API key", e))?;
        Ok(format!("{API_KEY_PREFIX}{jwt}"))
    }

    /// Makes a new active key and retires the others. A retired key's private part
    /// is erased (nothing signs with it again); its public part stays in the JWKS
    /// while a live key it signed has not expired.
    pub async fn rotate(&self, store: &Store, clock: &dyn Clock) -> Result<Rotation, CoreError> {
        let now = clock.now();
        let kid = format!("api-keys-{}", Uuid::now_v7().simple());
        let tx = store.begin_write().await?;
        let previous: Vec<String> = signing_keys::Entity::find()
            .select_only()
            .column(signing_keys::Column::Kid)
            .filter(signing_keys::Column::Purpose.eq(PURPOSE))
            .filter(signing_keys::Column::RetiredAt.is_null())
            .into_tuple()
            .all(&*tx)
            .await?;
        signing_keys::Entity::insert(new_key(&kid, &self.kek, now)?)
            .exec_without_returning(&*tx)
            .await?;
        signing_keys::Entity::update_many()
            .col_expr(signing_keys::Column::RetiredAt, Expr::value(now))
            .col_expr(signing_keys::Column::PrivateKey, Expr::value(""))
            .filter(signing_keys::Column::Kid.is_in(previous.clone()))
            .exec(&*tx)
            .await?;
        let mut retired = Vec::with_capacity(previous.len());
        for old in previous {
            let verifies_until: Option<DateTime<Utc>> = api_keys::Entity::find()
                .select_only()
                .column_as(api_keys::Column::ExpiresAt.max(), "until")
                .filter(api_keys::Column::SigningKid.eq(old.as_str()))
                .filter(api_keys::Column::RevokedAt.is_null())
                .filter(api_keys::Column::ExpiresAt.gt(now))
                .into_tuple::<Option<DateTime<Utc>>>()
                .one(&*tx)
                .await?
                .flatten();
            retired.push(RetiredKey {
                kid: old,
                verifies_until,
            });
        }
        tx.commit().await?;
        Ok(Rotation {
            active_kid: kid,
            retired,
        })
    }
}

/// The public keys that verify API keys now: the active ones, and retired ones that
/// signed a key that is neither revoked nor expired.
pub async fn jwks(db: &impl ConnectionTrait, now: DateTime<Utc>) -> Result<Jwks, CoreError> {
    let still_signing = Query::select()
        .column(api_keys::Column::SigningKid)
        .from(api_keys::Entity)
        .and_where(Expr::col(api_keys::Column::RevokedAt).is_null())
        .and_where(Expr::col(api_keys::Column::ExpiresAt).gt(now))
        .to_owned();
    let rows = signing_keys::Entity::find()
        .filter(signing_keys::Column::Purpose.eq(PURPOSE))
        .filter(
            sea_orm::Condition::any()
                .add(signing_keys::Column::RetiredAt.is_null())
                .add(signing_keys::Column::Kid.in_subquery(still_signing)),
        )
        .order_by_desc(signing_keys::Column::CreatedAt)
        .all(db)
        .await?;
    Ok(Jwks {
        keys: rows
            .into_iter()
            .map(|r| Jwk {
                kty: "OKP",
                crv: "Ed25519",
                alg: "EdDSA",
                use_: "sig",
                kid: r.kid,
                x: r.public_key,
            })
            .collect(),
    })
}
