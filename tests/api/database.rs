//! The schema, the scoped-transaction API and, on Postgres, forced Row Level
//! Security.

use std::collections::BTreeSet;

use chrono::Utc;
use debrief::Config;
use debrief::auth::entity::user::{self, Role};
use debrief::db::Db;
use debrief::meetings::entity::{self as meeting, Status};
use migration::rls::OWNED_TABLES;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DbBackend, PaginatorTrait, QueryFilter, Statement,
    TransactionTrait,
};
use uuid::Uuid;

use crate::helpers::{Backend, postgres, spawn_app, test_env};
use crate::on_both_backends;

on_both_backends!(
    migrations_go_up_down_and_up_again,
    scoped_transactions_see_and_write_only_their_owners_rows,
    scoped_upserts_and_batch_inserts_write_only_their_owners_rows
);

/// Every table of the core schema.
const TABLES: &[&str] = &[
    "api_keys",
    "audit_log",
    "auth_sessions",
    "event_sequences",
    "events",
    "exercise_attempts",
    "exercises",
    "meeting_analyses",
    "meeting_audio",
    "meeting_segments",
    "meeting_transcripts",
    "meetings",
    "module_skills",
    "module_versions",
    "modules",
    "plan_limits",
    "plan_sampling_configs",
    "plans",
    "practice_sessions",
    "processing_jobs",
    "processing_stage_runs",
    "profiles",
    "refresh_tokens",
    "sign_in_failures",
    "skill_scores",
    "stream_tickets",
    "transcript_segments",
    "upload_chunks",
    "uploads",
    "usage_counters",
    "usage_metrics",
    "usage_reservations",
    "usage_warnings",
    "user_limit_overrides",
    "user_sampling_configs",
    "user_skill_levels",
    "user_tokens",
    "users",
];

async fn tables(db: &Db) -> BTreeSet<String> {
    let sql = match db.backend() {
        DbBackend::Postgres => "SELECT tablename AS name FROM pg_tables WHERE schemaname = 'public'",
        _ => "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
    };
    db.unscoped()
        .query_all_raw(Statement::from_string(db.backend(), sql))
        .await
        .expect("list tables")
        .iter()
        .map(|row| row.try_get::<String>("", "name").expect("name"))
        .filter(|name| name != "seaql_migrations")
        .collect()
}

async fn migrations_go_up_down_and_up_again(backend: Backend) {
    let (vars, _data_dir) = test_env(backend).await;
    let db = Db::connect_as_owner(&Config::from_vars(vars).unwrap())
        .await
        .expect("connect as the owner");
    let all: BTreeSet<String> = TABLES.iter().map(|t| t.to_string()).collect();

    if backend == Backend::Sqlite {
        let mode = db
            .unscoped()
            .query_one_raw(Statement::from_string(DbBackend::Sqlite, "PRAGMA journal_mode"))
            .await
            .unwrap()
            .unwrap()
            .try_get::<String>("", "journal_mode")
            .unwrap();
        assert_eq!(mode, "wal", "the SQLite file runs in WAL mode");
    }

    db.migrate().await.expect("up");
    assert_eq!(tables(&db).await, all);
    let status = db.migration_status().await.unwrap();
    assert_eq!(
        status.len(),
        <migration::Migrator as migration::MigratorTrait>::migrations().len()
    );
    assert!(status.iter().all(|(_, applied)| *applied));

    db.migrate_down(u32::try_from(status.len()).unwrap())
        .await
        .expect("down");
    assert_eq!(tables(&db).await, BTreeSet::new(), "down removes every table");
    assert!(
        db.migration_status()
            .await
            .unwrap()
            .iter()
            .all(|(_, applied)| !*applied)
    );

    db.migrate().await.expect("up again");
    assert_eq!(tables(&db).await, all);
    let plans = count(db.unscoped(), "SELECT COUNT(*) AS n FROM plans").await;
    assert_eq!(plans, 3, "plans are seeded once");
}

/// Creates an account through the service scope.
async fn create_user(db: &Db, email: &str) -> Uuid {
    let id = Uuid::now_v7();
    let now = Utc::now();
    let scoped = db.as_service().await.unwrap();
    scoped
        .insert(user::ActiveModel {
            id: Set(id),
            email: Set(email.into()),
            password_hash: Set(None),
            role: Set(Role::User),
            email_verified_at: Set(None),
            plan_id: Set("free".into()),
            plan_started_at: Set(now),
            deleted_at: Set(None),
            last_sign_in_at: Set(None),
            created_at: Set(now),
            updated_at: Set(now),
        })
        .await
        .expect("insert user");
    scoped.commit().await.unwrap();
    id
}

fn new_meeting(owner: Uuid, title: &str) -> meeting::ActiveModel {
    let now = Utc::now();
    meeting::ActiveModel {
        id: Set(Uuid::now_v7()),
        user_id: Set(owner),
        title: Set(title.into()),
        description: Set(String::new()),
        status: Set(Status::AwaitingUpload),
        tags: Set(serde_json::json!([])),
        created_at: Set(now),
        updated_at: Set(now),
        ..Default::default()
    }
}

/// Alice and Bob with two and one meetings.
async fn alice_and_bob(db: &Db) -> (Uuid, Uuid) {
    let alice = create_user(db, "alice@example.com").await;
    let bob = create_user(db, "bob@example.com").await;
    for (owner, title) in [(alice, "standup"), (alice, "retro"), (bob, "1:1")] {
        let scoped = db.as_user(owner).await.unwrap();
        scoped
            .insert(new_meeting(owner, title))
            .await
            .expect("owner inserts");
        scoped.commit().await.unwrap();
    }
    (alice, bob)
}

/// The id of one of `owner`'s meetings.
async fn a_meeting_of(db: &Db, owner: Uuid) -> Uuid {
    let service = db.as_service().await.unwrap();
    let found = service
        .find::<meeting::Entity>()
        .filter(meeting::Column::UserId.eq(owner))
        .one(service.txn());
    found.await.unwrap().expect("a meeting").id
}

async fn scoped_transactions_see_and_write_only_their_owners_rows(backend: Backend) {
    let app = spawn_app(backend).await;
    let (alice, bob) = alice_and_bob(&app.db).await;

    let bobs_meeting = a_meeting_of(&app.db, bob).await;

    let scoped = app.db.as_user(alice).await.unwrap();
    let seen = scoped.find::<meeting::Entity>().all(scoped.txn()).await.unwrap();
    assert_eq!(seen.len(), 2);
    assert!(seen.iter().all(|m| m.user_id == alice));
    let users = scoped.find::<user::Entity>().all(scoped.txn()).await.unwrap();
    assert_eq!(users.iter().map(|u| u.id).collect::<Vec<_>>(), [alice]);
    // Bob's meeting, asked for by id, is not there.
    let by_id = scoped
        .find::<meeting::Entity>()
        .filter(meeting::Column::Id.eq(bobs_meeting))
        .one(scoped.txn());
    assert!(by_id.await.unwrap().is_none());

    // Writing a row for Bob in Alice's scope is refused before any SQL runs.
    let refused = scoped.insert(new_meeting(bob, "not yours")).await;
    assert!(refused.is_err(), "inserted a row owned by someone else");

    // Updates and deletes in Alice's scope cannot reach Bob's rows.
    let updated = scoped
        .update_many::<meeting::Entity>()
        .col_expr(meeting::Column::Title, sea_orm::sea_query::Expr::value("renamed"))
        .exec()
        .await
        .unwrap();
    assert_eq!(updated.rows_affected, 2);
    let deleted = scoped
        .delete_many::<meeting::Entity>()
        .filter(meeting::Column::UserId.eq(bob))
        .exec()
        .await
        .unwrap();
    assert_eq!(deleted.rows_affected, 0);
    scoped.commit().await.unwrap();

    // A read-only transaction has the same scope; on SQLite it runs on the
    // reader pool, whose connections refuse to write.
    let reading = app.db.read_as_user(alice).await.unwrap();
    let seen = reading
        .find::<meeting::Entity>()
        .all(reading.txn())
        .await
        .unwrap();
    assert_eq!(seen.len(), 2);
    assert!(seen.iter().all(|m| m.user_id == alice && m.title == "renamed"));
    let written = reading.insert(new_meeting(alice, "through a read")).await;
    if backend == Backend::Sqlite {
        let error = written
            .expect_err("a read transaction wrote on SQLite")
            .to_string();
        assert!(error.contains("readonly"), "{error}");
    }
    drop(reading);

    // The service scope sees everyone; Bob's meeting kept its title.
    let service = app.db.as_service().await.unwrap();
    let all = service
        .find::<meeting::Entity>()
        .all(service.txn())
        .await
        .unwrap();
    assert_eq!(all.len(), 3);
    assert!(all.iter().any(|m| m.user_id == bob && m.title == "1:1"));
    // An admin reads across users.
    drop(service);
    let admin = app.db.as_admin(alice).await.unwrap();
    assert_eq!(
        admin.find::<meeting::Entity>().count(admin.txn()).await.unwrap(),
        3
    );
    drop(admin);

    // The audit log is append-only, whatever the scope.
    let service = app.db.as_service().await.unwrap();
    let insert = format!(
        "INSERT INTO audit_log (id, subject_user_id, action, details) VALUES ('{}', NULL, 'test.entry', '{{}}')",
        Uuid::now_v7()
    );
    service.txn().execute_unprepared(&insert).await.expect("append");
    service.commit().await.unwrap();
    for change in ["UPDATE audit_log SET action = 'x'", "DELETE FROM audit_log"] {
        let service = app.db.as_service().await.unwrap();
        assert!(
            service.txn().execute_unprepared(change).await.is_err(),
            "{change} was allowed"
        );
    }
}

async fn scoped_upserts_and_batch_inserts_write_only_their_owners_rows(backend: Backend) {
    let app = spawn_app(backend).await;
    let (alice, bob) = alice_and_bob(&app.db).await;
    let bobs_meeting = a_meeting_of(&app.db, bob).await;
    let retitle = || {
        sea_orm::sea_query::OnConflict::column(meeting::Column::Id)
            .update_column(meeting::Column::Title)
            .to_owned()
    };

    // A row of Bob's, upserted or among a batch in Alice's scope, is refused
    // before any SQL runs.
    let scoped = app.db.as_user(alice).await.unwrap();
    let refused = scoped.upsert(new_meeting(bob, "not yours"), retitle()).await;
    assert!(refused.is_err(), "upserted a row owned by someone else");
    let batch = [new_meeting(alice, "planning"), new_meeting(bob, "not yours")];
    assert!(
        scoped.insert_many(batch).await.is_err(),
        "batch-inserted a row owned by someone else"
    );
    assert!(
        scoped
            .insert_or_ignore(new_meeting(bob, "not yours"), [meeting::Column::Id])
            .await
            .is_err(),
        "inserted a row owned by someone else"
    );
    assert_eq!(
        scoped
            .find::<meeting::Entity>()
            .count(scoped.txn())
            .await
            .unwrap(),
        2
    );
    // Alice's own rows go in, in one batch, and her upsert updates her row.
    scoped
        .insert_many([new_meeting(alice, "planning"), new_meeting(alice, "review")])
        .await
        .expect("own rows");
    let mut own = new_meeting(alice, "planning, renamed");
    let planning = scoped
        .find::<meeting::Entity>()
        .filter(meeting::Column::Title.eq("planning"))
        .one(scoped.txn())
        .await
        .unwrap()
        .expect("inserted");
    own.id = Set(planning.id);
    scoped.upsert(own, retitle()).await.expect("own upsert");
    scoped.commit().await.unwrap();

    // A row of Alice's whose id is taken by Bob's meeting leaves Bob's
    // meeting as it was (SQLite skips the update; Postgres' policies may
    // refuse the statement instead).
    let scoped = app.db.as_user(alice).await.unwrap();
    let mut clash = new_meeting(alice, "taken over");
    clash.id = Set(bobs_meeting);
    if scoped.upsert(clash, retitle()).await.is_ok() {
        scoped.commit().await.unwrap();
    }
    let service = app.db.as_service().await.unwrap();
    let titles: BTreeSet<(Uuid, String)> = service
        .find::<meeting::Entity>()
        .all(service.txn())
        .await
        .unwrap()
        .into_iter()
        .map(|m| (m.user_id, m.title))
        .collect();
    let expected: BTreeSet<(Uuid, String)> = [
        (alice, "standup"),
        (alice, "retro"),
        (alice, "planning, renamed"),
        (alice, "review"),
        (bob, "1:1"),
    ]
    .into_iter()
    .map(|(owner, title)| (owner, title.to_owned()))
    .collect();
    assert_eq!(titles, expected);
}

/// Runs a `SELECT COUNT(*) AS n ...`.
async fn count(conn: &impl ConnectionTrait, sql: &str) -> i64 {
    conn.query_one_raw(Statement::from_string(conn.get_database_backend(), sql))
        .await
        .expect(sql)
        .expect("a row")
        .try_get::<i64>("", "n")
        .expect("n")
}

fn insert_meeting_sql(owner: Uuid) -> Statement {
    Statement::from_sql_and_values(
        DbBackend::Postgres,
        "INSERT INTO meetings (id, user_id, title, description, status, tags) \
         VALUES ($1, $2, 'raw', '', 'awaiting_upload', '[]')",
        [Uuid::now_v7().into(), owner.into()],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_level_security_binds_the_apps_own_connection_on_postgres() {
    let app = spawn_app(Backend::Postgres).await;
    let (alice, bob) = alice_and_bob(&app.db).await;

    // The app's own pool, with no scope set: every user-owned table looks
    // empty, although meetings and users have rows.
    for (table, _) in OWNED_TABLES {
        let n = count(app.db.unscoped(), &format!("SELECT COUNT(*) AS n FROM {table}")).await;
        assert_eq!(n, 0, "{table} is visible without a scope");
    }
    // Tables without user data stay readable.
    assert_eq!(
        count(app.db.unscoped(), "SELECT COUNT(*) AS n FROM plans").await,
        3
    );

    // Scoped as Alice, an unfiltered raw query returns only her rows.
    let scoped = app.db.as_user(alice).await.unwrap();
    assert_eq!(count(scoped.txn(), "SELECT COUNT(*) AS n FROM meetings").await, 2);
    let bob_visible = format!("SELECT COUNT(*) AS n FROM meetings WHERE user_id = '{bob}'");
    assert_eq!(count(scoped.txn(), &bob_visible).await, 0);
    assert_eq!(count(scoped.txn(), "SELECT COUNT(*) AS n FROM users").await, 1);
    // Raw writes cannot touch Bob's rows either.
    let updated = scoped
        .txn()
        .execute_unprepared("UPDATE meetings SET title = 'mine now'")
        .await
        .unwrap();
    assert_eq!(updated.rows_affected(), 2);
    let err = scoped
        .txn()
        .execute_raw(insert_meeting_sql(bob))
        .await
        .expect_err("RLS refuses");
    assert!(err.to_string().contains("row-level security"), "{err}");
    drop(scoped);

    // An admin reads everyone's rows but still cannot write Bob's.
    let admin = app.db.as_admin(alice).await.unwrap();
    assert_eq!(count(admin.txn(), "SELECT COUNT(*) AS n FROM meetings").await, 3);
    assert!(admin.txn().execute_raw(insert_meeting_sql(bob)).await.is_err());
    drop(admin);

    // The service scope may.
    let service = app.db.as_service().await.unwrap();
    service
        .txn()
        .execute_raw(insert_meeting_sql(bob))
        .await
        .expect("service writes");
    assert_eq!(
        count(service.txn(), "SELECT COUNT(*) AS n FROM meetings").await,
        4
    );

    // The settings are local to their transaction: after it, nothing again.
    service.commit().await.unwrap();
    assert_eq!(
        count(app.db.unscoped(), "SELECT COUNT(*) AS n FROM meetings").await,
        0
    );
}

/// A scoped transaction that ends without a commit hands its connection
/// back at once and is rolled back by the connection's next message; with
/// no next transaction coming, the pool rolls it back within a fraction of
/// a second, so it does not hold up schema changes (or `VACUUM`) with its
/// locks and snapshot, and what it wrote is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_ended_without_a_commit_soon_releases_its_locks_on_postgres() {
    let app = spawn_app(Backend::Postgres).await;
    let (alice, _) = alice_and_bob(&app.db).await;
    let owner = app.owner_db().await;

    let read = app.db.read_as_user(alice).await.unwrap();
    assert_eq!(count(read.txn(), "SELECT COUNT(*) AS n FROM meetings").await, 2);
    let write = app.db.as_user(alice).await.unwrap();
    let updated = write
        .txn()
        .execute_unprepared("UPDATE meetings SET title = 'never committed'")
        .await
        .unwrap();
    assert_eq!(updated.rows_affected(), 2);
    drop(write);
    drop(read);

    // The schema's owner takes the strongest lock on the table both used.
    let started = std::time::Instant::now();
    let change = owner.unscoped().begin().await.unwrap();
    change
        .execute_unprepared("SET LOCAL lock_timeout = '2s'")
        .await
        .unwrap();
    change
        .execute_unprepared("LOCK TABLE meetings IN ACCESS EXCLUSIVE MODE")
        .await
        .expect("the transactions left open were rolled back");
    change.rollback().await.unwrap();
    let waited = started.elapsed();
    assert!(
        waited < std::time::Duration::from_secs(1),
        "the lock took {waited:?}"
    );

    let read = app.db.read_as_user(alice).await.unwrap();
    let kept = "SELECT COUNT(*) AS n FROM meetings WHERE title <> 'never committed'";
    assert_eq!(count(read.txn(), kept).await, 2, "the write was rolled back");
}

/// Settings given to a transaction (the queue's claim turns off sorting)
/// last for that transaction only: the next transaction on the same
/// connection, after a commit or after one dropped without it, plans with
/// the defaults again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_given_to_a_transaction_end_with_it_on_postgres() {
    let app = spawn_app(Backend::Postgres).await;
    let claim = app.db.as_service_with(&[("enable_sort", "off")]).await.unwrap();
    let (sort, pid) = sort_and_backend(claim.txn()).await;
    assert_eq!(sort, "off");
    claim.commit().await.unwrap();
    let next = app.db.as_service().await.unwrap();
    assert_eq!(sort_and_backend(next.txn()).await, ("on".to_owned(), pid));
    next.commit().await.unwrap();

    let dropped = app.db.as_service_with(&[("enable_sort", "off")]).await.unwrap();
    assert_eq!(sort_and_backend(dropped.txn()).await, ("off".to_owned(), pid));
    drop(dropped);
    let next = app.db.read_as_service().await.unwrap();
    assert_eq!(sort_and_backend(next.txn()).await, ("on".to_owned(), pid));
}

/// `enable_sort` as `conn` sees it, and the Postgres process serving it.
async fn sort_and_backend(conn: &impl ConnectionTrait) -> (String, i32) {
    let sql = "SELECT current_setting('enable_sort') AS sort, pg_backend_pid() AS pid";
    let row = conn
        .query_one_raw(Statement::from_string(DbBackend::Postgres, sql))
        .await
        .expect(sql)
        .expect("a row");
    (row.try_get("", "sort").unwrap(), row.try_get("", "pid").unwrap())
}

/// A statement cut off mid-way (its call dropped, as when a client goes
/// away) leaves its connection in an unknown state: the connection is
/// closed rather than handed to the next transaction, which would wait for
/// the cut-off statement's answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_cut_off_leaves_no_connection_behind_on_postgres() {
    let app = spawn_app(Backend::Postgres).await;
    let (alice, _) = alice_and_bob(&app.db).await;

    let slow = app.db.read_as_user(alice).await.unwrap();
    let cut = tokio::time::timeout(
        std::time::Duration::from_millis(200),
        slow.txn().execute_unprepared("SELECT pg_sleep(5)"),
    )
    .await;
    assert!(cut.is_err(), "the statement was cut off");
    drop(slow);

    for _ in 0..3 {
        let started = std::time::Instant::now();
        let read = app.db.read_as_user(alice).await.unwrap();
        assert_eq!(count(read.txn(), "SELECT COUNT(*) AS n FROM meetings").await, 2);
        drop(read);
        let took = started.elapsed();
        assert!(took < std::time::Duration::from_secs(2), "a read took {took:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_starting_together_on_one_postgres_migrate_once() {
    let (vars, _data_dir) = test_env(Backend::Postgres).await;
    let build = || debrief::Application::build(Config::from_vars(vars.clone()).unwrap());
    let (first, second) = tokio::join!(build(), build());
    let (first, _second) = (
        first.expect("first replica starts"),
        second.expect("second replica starts"),
    );
    let status = first.state().shared.db.migration_status().await.unwrap();
    assert!(status.iter().all(|(_, applied)| *applied), "{status:?}");
    let plans = count(
        first.state().shared.db.unscoped(),
        "SELECT COUNT(*) AS n FROM plans",
    )
    .await;
    assert_eq!(plans, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_role_that_bypasses_rls_is_refused_at_start_up() {
    // The test server's superuser, which bypasses RLS.
    let mut url = postgres::admin_url();
    let database = postgres::fresh_database().await;
    url.set_path(url::Url::parse(&database.url).unwrap().path());
    let (mut vars, _data_dir) = test_env(Backend::Sqlite).await;
    vars.insert("DATABASE_URL".into(), url.to_string());
    let err = Db::connect(&Config::from_vars(vars).unwrap())
        .await
        .expect_err("refused");
    let message = err.to_string();
    assert!(
        message.contains("BYPASSRLS") && message.contains("DATABASE_URL"),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_serving_role_owns_nothing_and_cannot_lift_row_level_security() {
    let app = spawn_app(Backend::Postgres).await;
    // Whatever an injected statement tries, the serving role may not.
    for statement in [
        "ALTER TABLE meetings NO FORCE ROW LEVEL SECURITY",
        "ALTER TABLE meetings DISABLE ROW LEVEL SECURITY",
        "DROP POLICY meetings_owner ON meetings",
        "DROP TABLE meetings",
        "CREATE TABLE smuggled (id int)",
        "TRUNCATE events",
    ] {
        let err = app
            .db
            .unscoped()
            .execute_unprepared(statement)
            .await
            .expect_err(statement);
        assert!(
            err.to_string().contains("must be owner") || err.to_string().contains("permission denied"),
            "{statement}: {err}"
        );
    }
    let service = app.db.as_service().await.unwrap();
    assert!(
        service
            .txn()
            .execute_unprepared("DELETE FROM audit_log")
            .await
            .is_err(),
        "the audit log is append-only for the serving role"
    );
    drop(service);

    // Serving as the owner is refused at start-up, naming the fix.
    let mut vars = app.vars().clone();
    let owner = vars["DATABASE_MIGRATION_URL"].clone();
    vars.insert("DATABASE_URL".into(), owner);
    let err = Db::connect(&Config::from_vars(vars).unwrap())
        .await
        .expect_err("the owner may not serve");
    let message = err.to_string();
    assert!(
        message.contains("owns the database's tables") && message.contains("DATABASE_MIGRATION_URL"),
        "{message}"
    );
}

/// SQLite with the reader pool (`DEBRIEF_DB_MAX_CONNECTIONS=4`) beside its
/// one writer, and a separate `debrief worker` process writing to the same
/// file as it processes recordings uploaded during the load: 32 clients
/// mixing reads and writes get no error at all ("database is locked" was
/// the answer to most writes when every connection could write).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mixed_load_on_sqlite_with_readers_and_a_worker_process_gets_no_lock_error() {
    use debrief::pb::v1 as pb;
    use debrief::pb::v1::meeting_service_client::MeetingServiceClient;
    use debrief::pb::v1::profile_service_client::ProfileServiceClient;

    let transcriber = crate::processing::fake_transcriber().await;
    let app = crate::helpers::spawn_app_with(Backend::Sqlite, |vars| {
        vars.insert("DEBRIEF_DB_MAX_CONNECTIONS".into(), "4".into());
    })
    .await;
    let mut worker = crate::processing::worker_process(&app, Some(&transcriber), &[]);
    let mut users = Vec::new();
    for name in ["ana", "ben", "cyd", "dee"] {
        let user = app.sign_up(name).await;
        let meeting = crate::uploads::new_meeting(&app, &user).await;
        users.push((user, meeting));
    }
    let users = std::sync::Arc::new(users);

    // Recordings uploaded, and processed by the worker, during the load.
    let uploads = async {
        let mut meetings = Vec::new();
        for i in 0..6 {
            let (user, _) = &users[i % users.len()];
            let recording = crate::processing::short();
            meetings.push((
                i % users.len(),
                crate::processing::upload(&app, user, &recording).await,
            ));
        }
        meetings
    };
    let until = tokio::time::Instant::now() + std::time::Duration::from_secs(4);
    let clients = (0..32).map(|client| {
        let (channel, users) = (app.channel.clone(), users.clone());
        tokio::spawn(async move {
            let (user, meeting) = &users[client % users.len()];
            let (mut meetings, mut profiles) = (
                MeetingServiceClient::new(channel.clone()),
                ProfileServiceClient::new(channel),
            );
            let (mut calls, mut errors) = (0u32, Vec::new());
            while tokio::time::Instant::now() < until {
                let done = match calls % 5 {
                    0 => meetings
                        .get_meeting(user.request(pb::GetMeetingRequest {
                            name: meeting.clone(),
                        }))
                        .await
                        .map(drop),
                    1 => profiles
                        .get_profile(user.request(pb::GetProfileRequest {}))
                        .await
                        .map(drop),
                    2 => meetings
                        .list_meetings(user.request(pb::ListMeetingsRequest::default()))
                        .await
                        .map(drop),
                    3 => meetings
                        .update_meeting(user.request(pb::UpdateMeetingRequest {
                            meeting: Some(pb::Meeting {
                                name: meeting.clone(),
                                title: format!("Planning review, take {calls}"),
                                ..Default::default()
                            }),
                            update_mask: Some(prost_types::FieldMask {
                                paths: vec!["title".into()],
                            }),
                        }))
                        .await
                        .map(drop),
                    _ => profiles
                        .update_profile(user.request(pb::UpdateProfileRequest {
                            profile: Some(pb::Profile {
                                display_name: format!("Client {client}, call {calls}"),
                                ..Default::default()
                            }),
                            update_mask: Some(prost_types::FieldMask {
                                paths: vec!["display_name".into()],
                            }),
                        }))
                        .await
                        .map(drop),
                };
                calls += 1;
                if let Err(status) = done {
                    errors.push(format!("{:?}: {}", status.code(), status.message()));
                }
            }
            (calls, errors)
        })
    });
    let (uploaded, clients) = tokio::join!(uploads, futures::future::join_all(clients));
    let (mut calls, mut errors) = (0, Vec::new());
    for client in clients {
        let (n, failed) = client.unwrap();
        calls += n;
        errors.extend(failed);
    }
    for (i, meeting) in &uploaded {
        let done =
            crate::processing::wait_for(&app, &users[*i].0, meeting, &[pb::MeetingStatus::Ready]).await;
        assert_eq!(done.failure_reason, "", "{meeting}");
    }
    let _ = worker.kill();
    let _ = worker.wait();
    println!(
        "{calls} calls by 32 clients, {} recordings processed by the worker",
        uploaded.len()
    );
    assert!(
        errors.is_empty(),
        "{} of {calls} calls failed, e.g. {:?}",
        errors.len(),
        &errors[..errors.len().min(5)]
    );
    assert!(calls > 500, "only {calls} calls in 4 s");
}

/// On SQLite, transactions that write commit in groups (one disk flush for
/// many). Each must still be on the disk when its `commit` returns — seen
/// at once by a connection of its own — and one that rolls back must take
/// only its own writes with it, however the group formed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grouped_commits_are_visible_when_they_return_and_a_rollback_takes_only_its_own() {
    let app = spawn_app(Backend::Sqlite).await;
    let alice = create_user(&app.db, "alice@example.com").await;
    let observer = observer_of(&app).await;
    let writers = (0..48).map(|i| {
        let (db, observer) = (app.db.clone(), observer.clone());
        tokio::spawn(async move {
            let title = format!("Weekly pipeline review #{i}");
            let scoped = db.as_user(alice).await.unwrap();
            scoped.insert(new_meeting(alice, &title)).await.unwrap();
            if i % 3 == 0 {
                drop(scoped);
                return (title, false);
            }
            scoped.commit().await.unwrap();
            let seen = titled(&observer, &title).await;
            assert_eq!(seen, 1, "{title} is committed when commit returns");
            (title, true)
        })
    });
    for writer in futures::future::join_all(writers).await {
        let (title, committed) = writer.unwrap();
        assert_eq!(titled(&observer, &title).await, i64::from(committed), "{title}");
    }
    let all = count(&observer, "SELECT COUNT(*) AS n FROM meetings").await;
    assert_eq!(
        all, 32,
        "the 32 committed meetings and none of the 16 rolled back"
    );
}

/// The transaction that opens a group on SQLite writes in the shared
/// transaction itself, without a savepoint: rolling it back must still take
/// only its own writes, leave the writer usable, and a later turn's
/// rollback must not take the opener's committed writes with it. (A
/// current-thread runtime, so a transaction spawned and yielded to is
/// queued for its turn before the one holding it ends.)
#[tokio::test(flavor = "current_thread")]
async fn the_transaction_that_opens_a_group_rolls_back_alone_and_keeps_its_commit() {
    let app = spawn_app(Backend::Sqlite).await;
    let alice = create_user(&app.db, "alice@example.com").await;
    let observer = observer_of(&app).await;
    let queued_behind = |title: &'static str, commit: bool| {
        let db = app.db.clone();
        tokio::spawn(async move {
            let scoped = db.as_user(alice).await.unwrap();
            scoped.insert(new_meeting(alice, title)).await.unwrap();
            if commit {
                scoped.commit().await.unwrap();
            }
        })
    };

    // Alone: opened the group, rolled back, and the writer goes on.
    let alone = app.db.as_user(alice).await.unwrap();
    alone.insert(new_meeting(alice, "Q3 budget draft")).await.unwrap();
    drop(alone);
    let next = app.db.as_user(alice).await.unwrap();
    next.insert(new_meeting(alice, "Q3 budget final")).await.unwrap();
    next.commit().await.unwrap();

    // The opener rolls back while another waits for its turn.
    let opener = app.db.as_user(alice).await.unwrap();
    opener
        .insert(new_meeting(alice, "Hiring sync (cancelled)"))
        .await
        .unwrap();
    let waiting = queued_behind("Hiring sync (moved)", true);
    tokio::task::yield_now().await;
    drop(opener);
    waiting.await.unwrap();

    // The opener commits while another waits, which then rolls back.
    let opener = app.db.as_user(alice).await.unwrap();
    opener
        .insert(new_meeting(alice, "Vendor review notes"))
        .await
        .unwrap();
    let waiting = queued_behind("Vendor review (abandoned)", false);
    tokio::task::yield_now().await;
    opener.commit().await.unwrap();
    waiting.await.unwrap();

    for (title, committed) in [
        ("Q3 budget draft", 0),
        ("Q3 budget final", 1),
        ("Hiring sync (cancelled)", 0),
        ("Hiring sync (moved)", 1),
        ("Vendor review notes", 1),
        ("Vendor review (abandoned)", 0),
    ] {
        assert_eq!(titled(&observer, title).await, committed, "{title}");
    }
}

/// A read-only connection of its own to `app`'s SQLite file, to see what
/// is on the disk.
async fn observer_of(app: &crate::helpers::TestApp) -> sea_orm::DatabaseConnection {
    let url = format!("sqlite://{}?mode=ro", app.data_dir().join("debrief.db").display());
    let mut options = sea_orm::ConnectOptions::new(url);
    options.max_connections(1).sqlx_logging(false);
    sea_orm::Database::connect(options)
        .await
        .expect("a connection of its own")
}

/// How many meetings are titled `title`.
async fn titled(conn: &impl ConnectionTrait, title: &str) -> i64 {
    let statement = Statement::from_sql_and_values(
        conn.get_database_backend(),
        "SELECT COUNT(*) AS n FROM meetings WHERE title = ?",
        [title.into()],
    );
    let row = conn
        .query_one_raw(statement)
        .await
        .expect("count")
        .expect("a row");
    row.try_get::<i64>("", "n").expect("n")
}
