use sea_orm::{ConnectionTrait, Database};
use sea_orm_migration::MigratorTrait;
use strata_migrations::Migrator;
use strata_testkit::TestDb;

/// Every migration can be reverted and re-applied.
#[tokio::test]
async fn migrations_go_down_and_up_again() {
    let db = TestDb::new().await;
    let conn = Database::connect(&db.url)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    Migrator::up(&conn, None)
        .await
        .unwrap_or_else(|e| panic!("up: {e}"));
    let applied = Migrator::get_applied_migrations(&conn)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(applied.len(), Migrator::migrations().len());
    Migrator::down(&conn, None)
        .await
        .unwrap_or_else(|e| panic!("down: {e}"));
    assert!(
        Migrator::get_applied_migrations(&conn)
            .await
            .unwrap_or_default()
            .is_empty()
    );
    assert!(
        conn.execute_unprepared("SELECT 1 FROM projects")
            .await
            .is_err(),
        "down left the projects table"
    );
    Migrator::up(&conn, None)
        .await
        .unwrap_or_else(|e| panic!("up again: {e}"));
    let row = conn
        .query_one_raw(sea_orm::Statement::from_string(
            conn.get_database_backend(),
            "SELECT COUNT(*) AS n FROM models",
        ))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let n: i64 = row
        .and_then(|r| r.try_get("", "n").ok())
        .unwrap_or_default();
    assert!(n >= 8, "catalog seeded again after down/up, got {n}");
}

/// Replicas starting together on one Postgres database migrate one after the other.
#[tokio::test]
async fn concurrent_migrations_on_postgres_do_not_collide() {
    let db = strata_testkit::TestDb::of(strata_testkit::Backend::Postgres).await;
    let runs = (0..4).map(|_| {
        let url = db.url.clone();
        tokio::spawn(async move {
            let conn = Database::connect(&url)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            strata_migrations::up(&conn).await
        })
    });
    for result in futures::future::join_all(runs).await {
        let outcome = result.unwrap_or_else(|e| panic!("{e}"));
        assert!(
            outcome.is_ok(),
            "a concurrent migration failed: {outcome:?}"
        );
    }
    let conn = Database::connect(&db.url)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let applied = Migrator::get_applied_migrations(&conn)
        .await
        .unwrap_or_default();
    assert_eq!(applied.len(), Migrator::migrations().len());
}
