//! The embedded stores (memory, SQLite in memory and in a file) pass every store's checks
//! (`support::stores`, which PostgreSQL passes too in `postgres.rs`); a database file keeps its
//! data, migrates once and refuses a newer schema.
#![allow(clippy::unwrap_used)]

mod support;

use snoozebot_schedule::store::{MemoryStore, SqliteStore, Store};
use support::stores;

#[tokio::test]
async fn the_memory_store_passes_every_stores_checks() {
    stores::round_trip(&MemoryStore::default()).await;
    let memory = MemoryStore::default();
    stores::lease(&memory, &memory).await;
    stores::swaps(&MemoryStore::default()).await;
}

#[tokio::test]
async fn sqlite_passes_every_stores_checks_and_two_handles_on_one_file_share_the_lease() {
    stores::round_trip(&SqliteStore::in_memory().unwrap()).await;
    stores::swaps(&SqliteStore::in_memory().unwrap()).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let (one, two) = (
        SqliteStore::open(&path).unwrap(),
        SqliteStore::open(&path).unwrap(),
    );
    stores::lease(&one, &two).await;
}

#[tokio::test]
async fn a_database_file_keeps_its_data_and_migrates_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("schedule.db");
    stores::round_trip(&SqliteStore::open(&path).unwrap()).await;
    let reopened = SqliteStore::open(&path).unwrap();
    assert_eq!(reopened.history(10).await.unwrap().len(), 3);
    // A database from a newer version is refused rather than misread.
    let connection = rusqlite::Connection::open(&path).unwrap();
    connection
        .execute("INSERT INTO schema_migrations (version) VALUES (99)", [])
        .unwrap();
    drop(connection);
    let error = SqliteStore::open(&path).unwrap_err();
    assert!(error.0.contains("newer"), "{error}");
}
