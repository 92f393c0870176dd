//! Persistence: the connection pool, the sea-orm entities and the error
//! classification the services rely on (outage vs bug vs constraint).

pub mod copy;
pub mod entities;

use std::sync::Arc;
use std::time::Duration;

use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DatabaseTransaction, DbBackend,
    DbErr, RuntimeErr, SqlErr, TransactionTrait,
};
use tokio::sync::{Mutex, OwnedMutexGuard};

use crate::config::DatabaseConfig;

/// SQLite: the WAL's size, in 4 KiB pages, past which a commit copies it into the
/// database (SQLite's default is 1,000).
const WAL_AUTOCHECKPOINT_PAGES: u32 = 10_000;

/// The database handle shared by every service.
#[derive(Clone, Debug)]
pub struct Store {
    db: DatabaseConnection,
    /// SQLite has one writer at a time and fails, rather than waits, when a read
    /// transaction upgrades to a write under contention; serializing write
    /// transactions in-process avoids that. `None` on Postgres.
    sqlite_writer: Option<Arc<Mutex<()>>>,
    /// sea-orm's own pool, for what sea-orm does not offer (`COPY`). `None` on SQLite.
    postgres: Option<sea_orm::sqlx::PgPool>,
}

/// A write transaction; on SQLite it also holds the process-wide writer lock.
pub struct WriteTx {
    pub tx: DatabaseTransaction,
    _guard: Option<OwnedMutexGuard<()>>,
}

impl WriteTx {
    pub async fn commit(self) -> Result<(), DbErr> {
        self.tx.commit().await
    }
}

impl std::ops::Deref for WriteTx {
    type Target = DatabaseTransaction;
    fn deref(&self) -> &DatabaseTransaction {
        &self.tx
    }
}

impl Store {
    pub async fn connect(config: &DatabaseConfig) -> Result<Self, DbErr> {
        let mut options = ConnectOptions::new(config.url.expose().to_owned());
        options
            .max_connections(config.pool_size())
            .min_connections(1)
            .connect_timeout(Duration::from_secs(config.connect_timeout_secs))
            .acquire_timeout(Duration::from_secs(config.acquire_timeout_secs))
            .sqlx_logging(false)
            .map_sqlx_sqlite_opts(|opts| {
                opts.journal_mode(sea_orm::sqlx::sqlite::SqliteJournalMode::Wal)
                    .synchronous(sea_orm::sqlx::sqlite::SqliteSynchronous::Normal)
                    .busy_timeout(Duration::from_secs(10))
                    .foreign_keys(true)
                    // A checkpoint copies each page once however often the WAL holds it:
                    // at 40 MB rather than 4 MB, the responses' key index (a random page
                    // per insert) is copied far less often, and the writer waits less.
                    .pragma("wal_autocheckpoint", WAL_AUTOCHECKPOINT_PAGES.to_string())
            });
        let db = Database::connect(options).await?;
        Ok(Self::from_connection(db))
    }

    pub fn from_connection(db: DatabaseConnection) -> Self {
        let backend = db.get_database_backend();
        let sqlite_writer = (backend == DbBackend::Sqlite).then(|| Arc::new(Mutex::new(())));
        let postgres =
            (backend == DbBackend::Postgres).then(|| db.get_postgres_connection_pool().clone());
        Self {
            db,
            sqlite_writer,
            postgres,
        }
    }

    pub fn db(&self) -> &DatabaseConnection {
        &self.db
    }

    pub async fn begin_write(&self) -> Result<WriteTx, DbErr> {
        let guard = match &self.sqlite_writer {
            Some(lock) => Some(lock.clone().lock_owned().await),
            None => None,
        };
        // IMMEDIATE takes SQLite's write lock at BEGIN, so a writer in another process
        // (a CLI command beside `strata serve`) waits for it (busy timeout) instead of
        // failing later with SQLITE_BUSY_SNAPSHOT when its read snapshot went stale.
        // Postgres ignores the option.
        let options = sea_orm::TransactionOptions {
            sqlite_transaction_mode: Some(sea_orm::SqliteTransactionMode::Immediate),
            ..Default::default()
        };
        let tx = self.db.begin_with_options(options).await?;
        Ok(WriteTx { tx, _guard: guard })
    }

    /// Runs `statement`, a `COPY … FROM STDIN`, with `data` on Postgres (in a transaction
    /// of its own: all rows or none); the number of rows copied.
    pub async fn copy_in(&self, statement: &str, data: Vec<u8>) -> Result<u64, DbErr> {
        use sea_orm::sqlx::postgres::PgPoolCopyExt;
        let pool = self
            .postgres
            .as_ref()
            .ok_or_else(|| DbErr::Custom("COPY needs Postgres".into()))?;
        let exec = |e| DbErr::Exec(RuntimeErr::SqlxError(Arc::new(e)));
        let mut copy = pool.copy_in_raw(statement).await.map_err(exec)?;
        if let Err(e) = copy.send(data).await {
            // Without an abort the connection would go back to the pool mid-copy.
            let _ = copy.abort("the data could not be sent").await;
            return Err(exec(e));
        }
        copy.finish().await.map_err(exec)
    }

    /// A round trip to the database, for readiness checks.
    pub async fn ping(&self) -> Result<(), DbErr> {
        self.db.execute_unprepared("SELECT 1").await.map(|_| ())
    }

    pub async fn close(self) -> Result<(), DbErr> {
        self.db.close().await
    }
}

/// True when the error means "the database cannot be reached right now" (the
/// request may succeed later), as opposed to a bug or a constraint violation.
pub fn is_unavailable(err: &DbErr) -> bool {
    use sea_orm::sqlx::Error as Sqlx;
    match err {
        DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => true,
        DbErr::Exec(RuntimeErr::SqlxError(e)) | DbErr::Query(RuntimeErr::SqlxError(e)) => {
            match e.as_ref() {
                Sqlx::Io(_)
                | Sqlx::PoolTimedOut
                | Sqlx::PoolClosed
                | Sqlx::Tls(_)
                | Sqlx::Protocol(_)
                | Sqlx::WorkerCrashed => true,
                Sqlx::Database(db) => {
                    let code = db.code().unwrap_or_default();
                    // Postgres: 08xxx connection exceptions, 57P0x shutdown; SQLite: 5 BUSY, 6 LOCKED.
                    code.starts_with("08") || code.starts_with("57P") || code == "5" || code == "6"
                }
                _ => false,
            }
        }
        _ => false,
    }
}

pub fn is_unique_violation(err: &DbErr) -> bool {
    matches!(err.sql_err(), Some(SqlErr::UniqueConstraintViolation(_)))
}

#[cfg(test)]
mod tests {
    use sea_orm::Statement;

    use super::*;

    #[tokio::test]
    async fn sqlite_copies_its_wal_into_the_database_past_the_larger_size() {
        let dir = std::env::temp_dir().join(format!("strata-store-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.join("strata.db").display());
        let store = Store::connect(&DatabaseConfig::new(url)).await.unwrap();
        let row = store
            .db()
            .query_one_raw(Statement::from_string(
                DbBackend::Sqlite,
                "PRAGMA wal_autocheckpoint",
            ))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            row.try_get_by_index::<i64>(0).unwrap(),
            i64::from(WAL_AUTOCHECKPOINT_PAGES)
        );
        store.close().await.unwrap();
        std::fs::remove_dir_all(dir).unwrap();
    }
}
