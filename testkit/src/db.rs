//! One database per test.

use sea_orm::{ConnectionTrait, Database};
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

impl Backend {
    /// From `STRATA_TEST_BACKEND` (`postgres` or `sqlite`; default `sqlite`).
    pub fn from_env() -> Self {
        match std::env::var("STRATA_TEST_BACKEND").as_deref() {
            Ok("postgres") => Backend::Postgres,
            Ok("sqlite") | Err(_) => Backend::Sqlite,
            Ok(other) => {
                panic!("STRATA_TEST_BACKEND must be 'postgres' or 'sqlite', not '{other}'")
            }
        }
    }
}

/// The Postgres server tests create their databases on.
pub fn postgres_admin_url() -> String {
    std::env::var("STRATA_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

pub struct TestDb {
    pub backend: Backend,
    pub url: String,
    _dir: Option<tempfile::TempDir>,
}

impl TestDb {
    pub async fn new() -> Self {
        Self::of(Backend::from_env()).await
    }

    pub async fn of(backend: Backend) -> Self {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
                let url = format!(
                    "sqlite://{}?mode=rwc",
                    dir.path().join("strata.db").display()
                );
                Self {
                    backend,
                    url,
                    _dir: Some(dir),
                }
            }
            Backend::Postgres => {
                let admin = postgres_admin_url();
                let conn = Database::connect(&admin).await.unwrap_or_else(|e| {
                    panic!(
                        "cannot reach Postgres at {admin}: {e}\n\
                         Start it (`pg_ctlcluster 15 main start`) or point STRATA_TEST_DATABASE_URL at a server \
                         where this user may CREATE DATABASE; scripts/test does this for you."
                    )
                });
                let name = format!("strata_test_{}", Uuid::new_v4().simple());
                conn.execute_unprepared(&format!("CREATE DATABASE {name}"))
                    .await
                    .unwrap_or_else(|e| panic!("CREATE DATABASE: {e}"));
                let _ = conn.close().await;
                let (base, _) = admin.rsplit_once('/').unwrap_or((&admin, ""));
                Self {
                    backend,
                    url: format!("{base}/{name}"),
                    _dir: None,
                }
            }
        }
    }
}
