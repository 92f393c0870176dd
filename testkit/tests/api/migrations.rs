use sea_orm::{ConnectionTrait, Database};
use sea_orm_migration::MigratorTrait;
use strata_migrations::Migrator;
use strata_testkit::TestDb;

/// Reverts migration `name` and every one after it; returns how many went down.
async fn down_to_before(conn: &sea_orm::DatabaseConnection, name: &str) -> u32 {
    let names: Vec<String> = Migrator::migrations()
        .iter()
        .map(|m| m.name().to_owned())
        .collect();
    let at = names
        .iter()
        .position(|n| n == name)
        .unwrap_or_else(|| panic!("no migration {name} in {names:?}"));
    let steps = (names.len() - at) as u32;
    Migrator::down(conn, Some(steps))
        .await
        .unwrap_or_else(|e| panic!("down: {e}"));
    steps
}

/// Every migration can be reverted and re-applied.
#[tokio::test]
async fn migrations_go_down_and_up_again() {
    let db = TestDb::new().await;
    let conn = Database::connect(&db.url).await.unwrap();
    Migrator::up(&conn, None)
        .await
        .unwrap_or_else(|e| panic!("up: {e}"));
    let applied = Migrator::get_applied_migrations(&conn).await.unwrap();
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
        .unwrap();
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
            let conn = Database::connect(&url).await.unwrap();
            strata_migrations::up(&conn).await
        })
    });
    for result in futures::future::join_all(runs).await {
        let outcome = result.unwrap();
        assert!(
            outcome.is_ok(),
            "a concurrent migration failed: {outcome:?}"
        );
    }
    let conn = Database::connect(&db.url).await.unwrap();
    let applied = Migrator::get_applied_migrations(&conn)
        .await
        .unwrap_or_default();
    assert_eq!(applied.len(), Migrator::migrations().len());
}

/// Two processes on one SQLite file (two stores with their own pools): a write
/// transaction that read first must not fail with SQLITE_BUSY_SNAPSHOT because the other
/// process wrote in between — `begin_write` takes the write lock at BEGIN, so the other
/// writer waits instead. (`strata keys rotate` beside `strata serve` hit this.) On
/// Postgres both simply succeed.
#[tokio::test]
async fn a_write_transaction_in_another_process_waits_instead_of_failing() {
    use sea_orm::Statement;
    use strata_core::config::DatabaseConfig;
    use strata_core::store::Store;
    let db = TestDb::new().await;
    let open = || async {
        Store::connect(&DatabaseConfig::new(db.url.clone()))
            .await
            .unwrap()
    };
    let (a, b) = (open().await, open().await);
    strata_migrations::up(a.db()).await.unwrap();
    let tx = b.begin_write().await.unwrap();
    let backend = a.db().get_database_backend();
    tx.query_one_raw(Statement::from_string(
        backend,
        "SELECT COUNT(*) FROM audit_events",
    ))
    .await
    .unwrap_or_else(|e| panic!("read: {e}"));
    // The other process writes meanwhile (it waits for `tx` on SQLite).
    let other = tokio::spawn(async move {
        a.db()
            .execute_unprepared("UPDATE models SET revision = revision + 1")
            .await
            .map(|_| ())
    });
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    tx.execute_unprepared("UPDATE models SET revision = revision + 1")
        .await
        .unwrap_or_else(|e| panic!("the write after a read failed: {e}"));
    tx.commit().await.unwrap();
    other
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("the other process's write failed: {e}"));
}

/// The daily usage rollup is filled from the minutes already stored when it arrives.
#[tokio::test]
async fn the_daily_usage_rollup_is_backfilled_from_stored_minutes() {
    use chrono::TimeZone;
    use sea_orm::{EntityTrait, QueryOrder, Set};
    use strata_core::store::entities::{usage_daily, usage_minutes};
    let db = TestDb::new().await;
    let conn = Database::connect(&db.url).await.unwrap();
    Migrator::up(&conn, None)
        .await
        .unwrap_or_else(|e| panic!("up: {e}"));
    // Revert the rollup (and what came after it), store minutes as the proxy's usage
    // did before it, re-apply.
    down_to_before(&conn, "m20261127_000011_cost_page_speed").await;
    let project = uuid::Uuid::now_v7();
    let at = |d: u32, h: u32, m: u32| {
        chrono::Utc
            .with_ymd_and_hms(2026, 11, d, h, m, 0)
            .single()
            .unwrap_or_default()
    };
    for (minute, cost) in [(at(26, 23, 59), 5), (at(27, 0, 0), 7), (at(27, 13, 30), 11)] {
        let row = usage_minutes::ActiveModel {
            project_id: Set(project),
            minute: Set(minute),
            key_id: Set(project),
            model: Set("openai.gpt-oss-120b".into()),
            requests: Set(2),
            errors: Set(0),
            input_tokens: Set(10),
            output_tokens: Set(1),
            cached_tokens: Set(0),
            // Not a column yet at this point of the history.
            cache_write_tokens: sea_orm::ActiveValue::NotSet,
            service_tier: sea_orm::ActiveValue::NotSet,
            cost_micros: Set(cost),
            latency_ms_sum: Set(3),
        };
        // Without RETURNING, which would read the columns this point lacks.
        usage_minutes::Entity::insert(row)
            .exec_without_returning(&conn)
            .await
            .unwrap();
    }
    Migrator::up(&conn, None)
        .await
        .unwrap_or_else(|e| panic!("up again: {e}"));
    let days: Vec<(String, i64, i64)> = usage_daily::Entity::find()
        .order_by_asc(usage_daily::Column::Day)
        .all(&conn)
        .await
        .unwrap()
        .into_iter()
        .map(|d| (d.day.to_string(), d.requests, d.cost_micros))
        .collect();
    assert_eq!(
        days,
        [
            ("2026-11-26".to_owned(), 2, 5),
            ("2026-11-27".to_owned(), 4, 18)
        ]
    );
    // The minutes themselves survive the rebuild that keys them by service tier too.
    let minutes: Vec<(String, i64)> = usage_minutes::Entity::find()
        .order_by_asc(usage_minutes::Column::Minute)
        .all(&conn)
        .await
        .unwrap()
        .into_iter()
        .map(|m| (m.service_tier, m.cost_micros))
        .collect();
    assert_eq!(
        minutes,
        [
            ("default".to_owned(), 5),
            ("default".to_owned(), 7),
            ("default".to_owned(), 11)
        ]
    );
}

/// Seeded ids Mantle does not know give way to its own; projects that allowed an old
/// id allow the new one and get a new generation (so their IAM policy is rewritten),
/// and going down restores both.
#[tokio::test]
async fn seeded_model_ids_are_renamed_to_mantles_in_the_catalog_and_projects() {
    use sea_orm::{ActiveModelTrait, EntityTrait, Set};
    use strata_core::store::entities::{models, projects};
    let db = TestDb::new().await;
    let conn = Database::connect(&db.url).await.unwrap();
    Migrator::up(&conn, None).await.unwrap();
    // Back to just before the renames (and what came after them).
    let steps = down_to_before(&conn, "m20261206_000017_mantle_model_ids").await;
    let old = "mistral.mistral-large-2411-v1:0";
    let new = "mistral.mistral-large-3-675b-instruct";
    let now = chrono::Utc::now();
    let id = uuid::Uuid::now_v7();
    let allowed = serde_json::json!([old, "openai.gpt-oss-120b", new]);
    projects::ActiveModel {
        id: Set(id),
        name: Set("renamed".into()),
        display_name: Set("Renamed".into()),
        environment: Set("dev".into()),
        team: Set("ml".into()),
        region: Set("us-east-1".into()),
        allowed_models: Set(allowed.clone()),
        resources: Set(serde_json::json!([])),
        data_retention: Set("default".into()),
        monthly_budget_cents: Set(None),
        rate_limit_rpm: Set(None),
        rate_limit_tpm: Set(None),
        status: Set("active".into()),
        generation: Set(3),
        observed_generation: Set(3),
        resource_version: Set(5),
        created_at: Set(now),
        updated_at: Set(now),
        archived_at: Set(None),
    }
    .insert(&conn)
    .await
    .unwrap();

    Migrator::up(&conn, None).await.unwrap();
    let project = projects::Entity::find_by_id(id)
        .one(&conn)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        project.allowed_models,
        serde_json::json!([new, "openai.gpt-oss-120b"]),
        "renamed in place and not listed twice"
    );
    assert_eq!((project.generation, project.resource_version), (4, 6));
    let catalog = models::Entity::find().all(&conn).await.unwrap();
    let ids: Vec<&str> = catalog.iter().map(|m| m.id.as_str()).collect();
    for gone in [
        old,
        "deepseek.v3-v1:0",
        "moonshot.kimi-k2-thinking",
        "qwen.qwen3-32b-v1:0",
    ] {
        assert!(!ids.contains(&gone), "{gone} still in {ids:?}");
    }
    for seeded in [
        new,
        "deepseek.v3.1",
        "moonshotai.kimi-k2-thinking",
        "qwen.qwen3-32b",
    ] {
        assert!(ids.contains(&seeded), "{seeded} missing from {ids:?}");
    }
    let mistral = catalog.iter().find(|m| m.id == new).unwrap();
    assert_eq!(
        (
            mistral.input_price_micros_per_mtok,
            mistral.output_price_micros_per_mtok
        ),
        (500_000, 1_500_000)
    );
    let safeguard = catalog
        .iter()
        .find(|m| m.id == "openai.gpt-oss-safeguard-120b")
        .unwrap();
    assert!(!safeguard.supports_responses);

    Migrator::down(&conn, Some(steps)).await.unwrap();
    let project = projects::Entity::find_by_id(id)
        .one(&conn)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        project.allowed_models,
        serde_json::json!([old, "openai.gpt-oss-120b"])
    );
    assert!(
        models::Entity::find_by_id(old)
            .one(&conn)
            .await
            .unwrap()
            .is_some()
    );
}

/// Responses recorded while Mantle's id was the primary key are found by its digest
/// afterwards, every column kept (more rows than the SQLite rebuild reads a page), and
/// going down keys them by id again.
#[tokio::test]
async fn responses_keyed_by_id_are_found_by_its_digest_after_the_migration() {
    use chrono::SubsecRound;
    use sea_orm::{ActiveValue::NotSet, EntityTrait, PaginatorTrait, Set};
    use strata_core::store::entities::responses;
    let db = TestDb::new().await;
    let conn = Database::connect(&db.url).await.unwrap();
    Migrator::up(&conn, None).await.unwrap();
    let steps = down_to_before(&conn, "m20261207_000022_responses_digest_key").await;
    let project = uuid::Uuid::now_v7();
    let now = chrono::Utc::now().trunc_subsecs(6);
    let row = |i: usize| responses::ActiveModel {
        // Not a column yet at this point of the history.
        key: NotSet,
        id: Set(format!("resp_{i:05}")),
        project_id: Set(project),
        key_id: Set(project),
        model: Set("openai.gpt-oss-20b".into()),
        background: Set(i.is_multiple_of(2)),
        created_at: Set(now),
        status: Set("queued".into()),
        metered_at: Set((!i.is_multiple_of(2)).then_some(now)),
        claimed_by: Set((i.is_multiple_of(2)).then(|| format!("replica-{i}"))),
        claimed_until: Set((i.is_multiple_of(2)).then_some(now)),
    };
    let rows = 2_345;
    for chunk in (0..rows).collect::<Vec<_>>().chunks(500) {
        responses::Entity::insert_many(chunk.iter().map(|&i| row(i)))
            .exec_without_returning(&conn)
            .await
            .unwrap();
    }

    Migrator::up(&conn, None).await.unwrap();
    assert_eq!(
        responses::Entity::find().count(&conn).await.unwrap(),
        rows as u64
    );
    for i in [0, 1, 999, 1_000, 1_001, rows - 1] {
        let id = format!("resp_{i:05}");
        let found = responses::Entity::find_by_id(responses::key_of(&id))
            .one(&conn)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("{id} not found by its key"));
        assert_eq!(found.id, id);
        assert_eq!(
            (found.project_id, found.background, found.status.as_str()),
            (project, i.is_multiple_of(2), "queued")
        );
        assert_eq!(found.created_at, now);
        assert_eq!(found.metered_at, (!i.is_multiple_of(2)).then_some(now));
        assert_eq!(
            found.claimed_by,
            (i.is_multiple_of(2)).then(|| format!("replica-{i}"))
        );
    }

    Migrator::down(&conn, Some(steps)).await.unwrap();
    let by_id = conn
        .query_one_raw(sea_orm::Statement::from_string(
            conn.get_database_backend(),
            "SELECT COUNT(*) AS n FROM responses WHERE id = 'resp_01000'",
        ))
        .await
        .unwrap()
        .and_then(|r| r.try_get::<i64>("", "n").ok());
    assert_eq!(by_id, Some(1));
    let duplicate = conn
        .execute_unprepared(
            "INSERT INTO responses (id, project_id, key_id, model, background, created_at, status) \
             SELECT id, project_id, key_id, model, background, created_at, status \
             FROM responses WHERE id = 'resp_01000'",
        )
        .await;
    assert!(duplicate.is_err(), "the id is the primary key again");
}
