//! Scoped API keys: the secret once, its claims, who may do what, revocation,
//! archiving, rotation and encryption at rest.

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use reqwest::StatusCode;
use sea_orm::EntityTrait;
use serde_json::{Value, json};
use strata_core::clock::SystemClock;
use strata_core::config::{KeysConfig, Secret};
use strata_core::keys::{
    ApiKeyClaims, ApiKeyIssuer, IssuerError, KekError, KeyEncryptionKey, KeyShapeError,
};
use strata_core::store::entities::signing_keys;
use strata_testkit::{TestApp, project_body, test_keys_config};

fn id_of(v: &Value) -> String {
    v["id"].as_str().unwrap_or_default().to_owned()
}

/// Verifies a secret the way the proxy will: the JWT after the prefix, against
/// the published JWKS, with `aud` = the proxy.
async fn verify(app: &TestApp, secret: &str) -> Result<(String, ApiKeyClaims), String> {
    let jwt = secret
        .strip_prefix("sk-strata-")
        .ok_or("no sk-strata- prefix")?;
    let header = jsonwebtoken::decode_header(jwt).map_err(|e| e.to_string())?;
    let kid = header.kid.ok_or("no kid")?;
    let jwks: JwkSet = serde_json::from_value(app.get("/.well-known/jwks.json", "").await.body)
        .map_err(|e| e.to_string())?;
    let jwk = jwks
        .find(&kid)
        .ok_or(format!("kid {kid} not in the JWKS"))?;
    let key = DecodingKey::from_jwk(jwk).map_err(|e| e.to_string())?;
    let mut validation = Validation::new(Algorithm::EdDSA);
    validation.set_audience(&["strata-proxy"]);
    validation.set_issuer(&["strata"]);
    let data =
        jsonwebtoken::decode::<ApiKeyClaims>(jwt, &key, &validation).map_err(|e| e.to_string())?;
    Ok((kid, data.claims))
}

#[tokio::test]
async fn a_developer_gets_a_secret_once_that_verifies_against_the_jwks() {
    let app = TestApp::spawn().await;
    let p = app.create_project(&project_body("keyed")).await;
    let pid = id_of(&p);
    app.add_member(&pid, "alice", "developer").await;
    let alice = app.token("alice", &["developer"]);
    let base = format!("/api/v1/projects/{pid}/keys");

    let r = app
        .post(
            &base,
            &alice,
            &json!({"name": " worker ", "models": ["openai.gpt-oss-20b"], "expires_in": 3600}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.header("cache-control"), Some("no-store"));
    let secret = r.body["secret"].as_str().unwrap_or_default().to_owned();
    let key_id = id_of(&r.body);
    assert_eq!(r.body["name"], "worker");
    assert_eq!(r.body["owner"], "alice");
    assert_eq!(r.body["status"], "active");
    assert_eq!(r.body["models"], json!(["openai.gpt-oss-20b"]));
    assert_eq!(r.body["revoked_at"], Value::Null);

    let (kid, claims) = verify(&app, &secret).await.unwrap();
    assert_eq!(kid, "api-keys-1");
    assert_eq!(claims.sub.to_string(), key_id);
    assert_eq!(claims.project.to_string(), pid);
    assert_eq!(claims.environment, "prod");
    assert_eq!(claims.models, Some(vec!["openai.gpt-oss-20b".to_owned()]));
    assert_eq!(claims.exp - claims.iat, 3600);
    let expires_at =
        chrono::DateTime::parse_from_rfc3339(r.body["expires_at"].as_str().unwrap_or_default())
            .map(|t| t.timestamp())
            .unwrap_or_default();
    assert_eq!(claims.exp, expires_at, "the stored expiry is the token's");

    // A key for another audience, or tampered with, does not verify.
    let mut tampered = secret.clone();
    tampered.pop();
    tampered.push(if secret.ends_with('A') { 'B' } else { 'A' });
    assert!(verify(&app, &tampered).await.is_err());

    // The secret is never shown again: not in the list, the key, or the audit log.
    let list = app.get(&base, &alice).await;
    assert_eq!(list.status, StatusCode::OK);
    assert_eq!(list.body["items"][0]["id"], key_id.as_str());
    let one = app.get(&format!("{base}/{key_id}"), &alice).await;
    assert_eq!(one.body["name"], "worker");
    let audit = app.get("/api/v1/audit?action=key.create", &app.admin).await;
    assert_eq!(audit.body["items"][0]["target_id"], key_id.as_str());
    let jwt_part = secret.rsplit('.').next().unwrap_or_default();
    for shown in [&list.body, &one.body, &audit.body] {
        let text = shown.to_string();
        assert!(
            !text.contains(jwt_part) && !text.contains("secret"),
            "{text}"
        );
    }

    // Signing keys' private parts are encrypted at rest (API keys and strata's tokens).
    for kid in ["api-keys-1", "strata-local-1"] {
        let row = signing_keys::Entity::find_by_id(kid)
            .one(app.state.services.store.db())
            .await
            .ok()
            .flatten()
            .unwrap_or_else(|| panic!("no signing key row {kid}"));
        assert!(
            row.private_key.starts_with("aes256gcm:"),
            "{kid}: {}",
            row.private_key
        );
    }
}

#[tokio::test]
async fn a_key_asks_only_for_what_the_project_and_environment_allow() {
    let app = TestApp::spawn().await;
    let p = app.create_project(&project_body("limits")).await;
    let base = format!("/api/v1/projects/{}/keys", id_of(&p));

    let r = app
        .post(
            &base,
            &app.admin,
            &json!({"name": "k", "models": ["openai.gpt-oss-20b", "meta.llama3-8b"]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    assert_eq!(r.body["error"]["details"][0]["field"], "models[1]");

    // prod allows 90 days at most, and that is the default.
    let r = app
        .post(
            &base,
            &app.admin,
            &json!({"name": "k", "expires_in": 91 * 86_400}),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    assert_eq!(r.body["error"]["details"][0]["field"], "expires_in");
    assert!(r.body.to_string().contains("90 days"), "{}", r.body);
    let r = app.post(&base, &app.admin, &json!({"name": "k"})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(
        r.body["models"],
        Value::Null,
        "no scope: all the project's models"
    );
    let (_, claims) = verify(&app, r.body["secret"].as_str().unwrap_or_default())
        .await
        .unwrap();
    assert_eq!(claims.exp - claims.iat, 90 * 86_400);
    assert_eq!(claims.models, None);

    for (body, field) in [
        (json!({"name": ""}), "name"),
        (json!({"name": "k", "models": []}), "models"),
        (json!({"name": "k", "expires_in": 5}), "expires_in"),
    ] {
        let r = app.post(&base, &app.admin, &body).await;
        assert_eq!(
            r.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body}: {}",
            r.body
        );
        assert_eq!(r.body["error"]["details"][0]["field"], field, "{body}");
    }
    let r = app
        .post(&base, &app.admin, &json!({"name": "k", "secret": "mine"}))
        .await;
    assert!(
        r.status.is_client_error(),
        "unknown fields are refused: {}",
        r.status
    );
    let r = app.get(&format!("{base}/not-a-uuid"), &app.admin).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::NOT_FOUND, "key_not_found")
    );
}

#[tokio::test]
async fn revoking_is_idempotent_and_archiving_revokes_every_key() {
    let app = TestApp::spawn().await;
    let p = app.create_project(&project_body("revocable")).await;
    let pid = id_of(&p);
    let other = app.create_project(&project_body("neighbour")).await;
    app.add_member(&pid, "dev", "developer").await;
    let dev = app.token("dev", &["developer"]);
    let base = format!("/api/v1/projects/{pid}/keys");
    let mut ids = Vec::new();
    for name in ["a", "b", "c"] {
        let r = app.post(&base, &app.admin, &json!({"name": name})).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        ids.push(id_of(&r.body));
    }

    // Another project's path does not reach this project's key.
    let r = app
        .post(
            &format!("/api/v1/projects/{}/keys/{}/revoke", id_of(&other), ids[0]),
            &app.admin,
            &json!({}),
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::NOT_FOUND, "key_not_found")
    );

    // A developer of the project may revoke a key someone else made.
    let r = app
        .post(&format!("{base}/{}/revoke", ids[0]), &dev, &json!({}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["status"], "revoked");
    assert_eq!(r.body["revoked_by"], "dev");
    let first = r.body["revoked_at"].clone();
    let again = app
        .post(&format!("{base}/{}/revoke", ids[0]), &app.admin, &json!({}))
        .await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(
        (&again.body["revoked_at"], &again.body["revoked_by"]),
        (&first, &json!("dev"))
    );
    let audit = app.get("/api/v1/audit?action=key.revoke", &app.admin).await;
    assert_eq!(
        audit.body["items"].as_array().map(Vec::len),
        Some(1),
        "one revoke recorded"
    );

    let r = app
        .post(
            &format!("/api/v1/projects/{pid}/archive"),
            &app.admin,
            &json!({}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let list = app.get(&base, &app.admin).await;
    let states: Vec<(&str, &str)> = list.body["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|k| {
            (
                k["status"].as_str().unwrap_or_default(),
                k["revoked_by"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        states,
        [
            ("revoked", "dev"),
            ("revoked", "admin"),
            ("revoked", "admin")
        ]
    );
    let r = app.post(&base, &app.admin, &json!({"name": "late"})).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::CONFLICT, "project_archived")
    );
}

#[tokio::test]
async fn rotation_keeps_the_old_key_verifying_only_while_it_signed_a_live_key() {
    let app = TestApp::spawn().await;
    let p = app.create_project(&project_body("rotating")).await;
    let base = format!("/api/v1/projects/{}/keys", id_of(&p));
    let old = app
        .post(
            &base,
            &app.admin,
            &json!({"name": "old", "expires_in": 7200}),
        )
        .await;
    let old_secret = old.body["secret"].as_str().unwrap_or_default().to_owned();

    let rotation = app
        .state
        .key_issuer
        .rotate(&app.state.services.store, &SystemClock)
        .await
        .unwrap();
    assert_eq!(rotation.retired.len(), 1);
    assert_eq!(rotation.retired[0].kid, "api-keys-1");
    let old_expiry =
        chrono::DateTime::parse_from_rfc3339(old.body["expires_at"].as_str().unwrap_or_default())
            .map(|t| t.timestamp())
            .ok();
    assert_eq!(
        rotation.retired[0].verifies_until.map(|t| t.timestamp()),
        old_expiry
    );

    let new = app.post(&base, &app.admin, &json!({"name": "new"})).await;
    let (new_kid, _) = verify(&app, new.body["secret"].as_str().unwrap_or_default())
        .await
        .unwrap();
    assert_eq!(
        new_kid, rotation.active_kid,
        "new keys are signed by the new key"
    );
    assert!(
        verify(&app, &old_secret).await.is_ok(),
        "the old key still verifies"
    );
    let retired = signing_keys::Entity::find_by_id("api-keys-1")
        .one(app.state.services.store.db())
        .await
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("retired key row"));
    assert_eq!(
        retired.private_key, "",
        "nothing signs with a retired key again"
    );

    // Once the only key it signed is revoked, the old signing key leaves the JWKS.
    let r = app
        .post(
            &format!("{base}/{}/revoke", id_of(&old.body)),
            &app.admin,
            &json!({}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let jwks = app.get("/.well-known/jwks.json", "").await;
    let kids: Vec<&str> = jwks.body["keys"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|k| k["kid"].as_str())
        .collect();
    assert_eq!(kids, [rotation.active_kid.as_str()]);
    assert_eq!(jwks.body["keys"][0]["kty"], "OKP");
    assert_eq!(jwks.body["keys"][0]["crv"], "Ed25519");
}

#[tokio::test]
async fn the_wrong_key_encryption_key_is_refused_at_start_with_a_reason() {
    let app = TestApp::spawn().await;
    let store = &app.state.services.store;
    let other = test_keys_config();
    // What an operator reads: the error and its causes, as `strata` prints them.
    fn chain(err: &dyn std::error::Error) -> String {
        std::iter::successors(Some(err), |e| e.source())
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(": ")
    }
    let err = ApiKeyIssuer::load(store, &other, &SystemClock)
        .await
        .err()
        .unwrap_or_else(|| panic!("another key encryption key was accepted"));
    assert!(matches!(err, IssuerError::Load(_)), "{err:?}");
    let err = chain(&err);
    assert!(
        err.contains("cannot be decrypted") && err.contains("STRATA_KEY_ENCRYPTION_KEY"),
        "{err}"
    );
    let junk = KeysConfig::with_encryption_key(Secret::new("short"));
    let err = ApiKeyIssuer::load(store, &junk, &SystemClock)
        .await
        .err()
        .unwrap_or_else(|| panic!("a malformed key encryption key was accepted"));
    assert!(
        matches!(&err, IssuerError::Kek(KekError::Shape { origin, source: KeyShapeError::NotBase64 | KeyShapeError::Length(_) })
            if origin == "STRATA_KEY_ENCRYPTION_KEY"),
        "{err:?}"
    );
    assert!(
        chain(&err).contains("STRATA_KEY_ENCRYPTION_KEY"),
        "{}",
        chain(&err)
    );
    assert!(KeyEncryptionKey::from_base64("short").is_err());
}

#[tokio::test]
async fn a_local_issuer_key_stored_in_plain_text_is_encrypted_at_the_next_start() {
    use base64::Engine;
    use ed25519_dalek::pkcs8::EncodePrivateKey;
    use sea_orm::{ActiveModelTrait, Set};
    use strata_core::config::DatabaseConfig;
    use strata_core::store::Store;
    use strata_testkit::TestDb;

    // A database from before encryption at rest: the issuer key as plain base64.
    let db = TestDb::new().await;
    let store = Store::connect(&DatabaseConfig::new(db.url.clone()))
        .await
        .unwrap();
    strata_migrations::up(store.db()).await.unwrap();
    let key = ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]);
    let der = key.to_pkcs8_der().unwrap();
    let engine = base64::engine::general_purpose::STANDARD;
    signing_keys::ActiveModel {
        kid: Set("strata-local-1".into()),
        purpose: Set("local-issuer".into()),
        algorithm: Set("EdDSA".into()),
        public_key: Set(
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key.verifying_key().as_bytes())
        ),
        private_key: Set(engine.encode(der.as_bytes())),
        created_at: Set(chrono::Utc::now()),
        retired_at: Set(None),
    }
    .insert(store.db())
    .await
    .unwrap();

    let app = TestApp::builder().db(db).spawn().await;
    let row = signing_keys::Entity::find_by_id("strata-local-1")
        .one(app.state.services.store.db())
        .await
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("issuer key row"));
    assert!(
        row.private_key.starts_with("aes256gcm:"),
        "{}",
        row.private_key
    );
    // The same key still signs: tokens minted now verify, as before.
    let me = app.get("/api/v1/me", &app.admin).await;
    assert_eq!(me.status, StatusCode::OK, "{}", me.body);
}
