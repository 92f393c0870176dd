//! strata's own token issuer for the embedded default: an Ed25519 key kept in the
//! database (private part encrypted with the key encryption key), so `strata serve`
//! and `strata token mint` share it with no configuration.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::EncodePrivateKey;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use sea_orm::ColumnTrait;
use sea_orm::QueryFilter;
use sea_orm::sea_query::Expr;
use sea_orm::sea_query::OnConflict;
use sea_orm::{EntityTrait, Set};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::CoreError;
use crate::clock::Clock;
use crate::keys::KeyEncryptionKey;
use crate::store::Store;
use crate::store::entities::signing_keys;

/// One key per database; a fixed id makes concurrent first starts converge on it.
const LOCAL_ISSUER_KID: &str = "strata-local-1";
const PURPOSE: &str = "local-issuer";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LocalClaims {
    pub iss: String,
    pub aud: String,
    pub sub: String,
    pub roles: Vec<String>,
    pub iat: i64,
    pub exp: i64,
    pub jti: String,
}

pub struct LocalIssuer {
    issuer: String,
    audience: String,
    encoding: EncodingKey,
    decoding: DecodingKey,
}

impl std::fmt::Debug for LocalIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalIssuer")
            .field("issuer", &self.issuer)
            .field("kid", &LOCAL_ISSUER_KID)
            .finish()
    }
}

impl LocalIssuer {
    /// Loads the issuer key, creating it on first use. Returns whether it was created
    /// now (a first start).
    pub async fn load_or_create(
        store: &Store,
        issuer: &str,
        audience: &str,
        kek: &KeyEncryptionKey,
        clock: &dyn Clock,
    ) -> Result<(Self, bool), CoreError> {
        if let Some(row) = signing_keys::Entity::find_by_id(LOCAL_ISSUER_KID)
            .one(store.db())
            .await?
        {
            let der = Self::private_der(store, &row, kek).await?;
            return Ok((Self::from_parts(&row, &der, issuer, audience)?, false));
        }
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed)
            .map_err(|e| CoreError::internal("generating a signing key", e))?;
        let key = SigningKey::from_bytes(&seed);
        let der = key
            .to_pkcs8_der()
            .map_err(|e| CoreError::internal("encoding a signing key", e))?;
        let row = signing_keys::ActiveModel {
            kid: Set(LOCAL_ISSUER_KID.into()),
            purpose: Set(PURPOSE.into()),
            algorithm: Set("EdDSA".into()),
            public_key: Set(URL_SAFE_NO_PAD.encode(key.verifying_key().as_bytes())),
            private_key: Set(kek
                .seal(LOCAL_ISSUER_KID, der.as_bytes())
                .map_err(|e| CoreError::internal("encrypting the local issuer key", e))?),
            created_at: Set(clock.now()),
            retired_at: Set(None),
        };
        let inserted = signing_keys::Entity::insert(row)
            .on_conflict(
                OnConflict::column(signing_keys::Column::Kid)
                    .do_nothing()
                    .to_owned(),
            )
            .exec_without_returning(store.db())
            .await?;
        let row = signing_keys::Entity::find_by_id(LOCAL_ISSUER_KID)
            .one(store.db())
            .await?
            .ok_or_else(|| CoreError::Internal("local issuer key vanished after insert".into()))?;
        let der = Self::private_der(store, &row, kek).await?;
        Ok((
            Self::from_parts(&row, &der, issuer, audience)?,
            inserted == 1,
        ))
    }

    /// The private key (PKCS#8 DER). A key stored before encryption at rest (plain
    /// base64) is read once and stored again encrypted.
    async fn private_der(
        store: &Store,
        row: &signing_keys::Model,
        kek: &KeyEncryptionKey,
    ) -> Result<Vec<u8>, CoreError> {
        if KeyEncryptionKey::is_sealed(&row.private_key) {
            return kek
                .open(&row.kid, &row.private_key)
                .map_err(CoreError::from);
        }
        let der = STANDARD
            .decode(&row.private_key)
            .map_err(|e| CoreError::internal("decoding the local issuer key", e))?;
        let sealed = kek
            .seal(&row.kid, &der)
            .map_err(|e| CoreError::internal("encrypting the local issuer key", e))?;
        // Conditional on the old value: a replica doing the same at once is harmless.
        signing_keys::Entity::update_many()
            .col_expr(signing_keys::Column::PrivateKey, Expr::value(sealed))
            .filter(signing_keys::Column::Kid.eq(row.kid.as_str()))
            .filter(signing_keys::Column::PrivateKey.eq(row.private_key.as_str()))
            .exec(store.db())
            .await?;
        tracing::info!(key.id = %row.kid, "encrypted the local issuer key at rest");
        Ok(der)
    }

    fn from_parts(
        row: &signing_keys::Model,
        der: &[u8],
        issuer: &str,
        audience: &str,
    ) -> Result<Self, CoreError> {
        let decoding = DecodingKey::from_ed_components(&row.public_key)
            .map_err(|e| CoreError::internal("decoding the local issuer public key", e))?;
        Ok(Self {
            issuer: issuer.into(),
            audience: audience.into(),
            encoding: EncodingKey::from_ed_der(der),
            decoding,
        })
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// Signs a token for `subject` with the given global roles, valid for `ttl_secs`.
    pub fn mint(
        &self,
        subject: &str,
        roles: &[String],
        ttl_secs: i64,
        clock: &dyn Clock,
    ) -> Result<String, CoreError> {
        let now = clock.now().timestamp();
        let claims = LocalClaims {
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            sub: subject.into(),
            roles: roles.to_vec(),
            iat: now,
            exp: now + ttl_secs,
            jti: Uuid::now_v7().to_string(),
        };
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(LOCAL_ISSUER_KID.into());
        jsonwebtoken::encode(&header, &claims, &self.encoding)
            .map_err(|e| CoreError::internal("signing a token", e))
    }

    /// Verifies signature, issuer, audience and expiry.
    pub fn verify(&self, token: &str) -> Result<LocalClaims, jsonwebtoken::errors::Error> {
        let mut v = Validation::new(Algorithm::EdDSA);
        v.set_issuer(&[&self.issuer]);
        v.set_audience(&[&self.audience]);
        v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        v.leeway = 30;
        jsonwebtoken::decode::<LocalClaims>(token, &self.decoding, &v).map(|d| d.claims)
    }
}
