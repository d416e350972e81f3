//! The state store and audit trail: what each run remembers of each instance, and every action
//! taken (when, which instance, schedule, reason, outcome, error), and what reporting agents last
//! said. [`SqliteStore`] is embedded and needs no set-up; [`MemoryStore`] is for tests and
//! one-off plans.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use jiff::Timestamp;
use snoozebot_core::InstanceId;

use crate::agents::{AgentRecord, AgentState};
use crate::plan::Remembered;

/// A store that failed: what failed, in words.
#[derive(Debug, Clone, thiserror::Error)]
#[error("schedule store: {0}")]
pub struct StoreError(pub String);

/// One recorded action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEvent {
    /// When it was applied.
    pub at: Timestamp,
    /// The run it belongs to.
    pub run: String,
    /// The provider.
    pub provider: String,
    /// The instance.
    pub instance: String,
    /// The schedule.
    pub schedule: String,
    /// `start`, `stop`, `stop (hibernate)`, …
    pub action: String,
    /// Why.
    pub reason: String,
    /// `ok` or `failed`.
    pub outcome: String,
    /// The error, when it failed.
    pub error: Option<String>,
}

/// What a run leaves behind.
#[derive(Debug, Clone, Default)]
pub struct RunRecord {
    /// Its id (a timestamp-based name).
    pub id: String,
    /// The actions applied.
    pub events: Vec<AuditEvent>,
    /// What to remember per (provider, instance) from now on.
    pub remember: Vec<(String, InstanceId, Remembered)>,
}

/// Where runs keep their memory and their audit trail.
#[async_trait]
pub trait Store: Send + Sync {
    /// What earlier runs remember of `provider`'s instances.
    async fn remembered(
        &self,
        provider: &str,
    ) -> Result<HashMap<InstanceId, Remembered>, StoreError>;
    /// Records a run: its events and its memory, in one transaction.
    async fn commit(&self, run: &RunRecord) -> Result<(), StoreError>;
    /// The latest `limit` events, newest first.
    async fn history(&self, limit: usize) -> Result<Vec<AuditEvent>, StoreError>;
    /// Takes or renews the reconciler's lease for `holder` until `now + ttl`: `true` when
    /// `holder` leads (it held the lease, or the lease had expired), `false` when another
    /// replica does. Replicas' clocks must agree within the lease's length (NTP).
    async fn try_lead(
        &self,
        holder: &str,
        now: Timestamp,
        ttl: std::time::Duration,
    ) -> Result<bool, StoreError>;
    /// Every registered agent.
    async fn agents(&self) -> Result<Vec<AgentRecord>, StoreError>;
    /// The agent of `provider`'s `instance`, if one registered.
    async fn agent(
        &self,
        provider: &str,
        instance: &str,
    ) -> Result<Option<AgentRecord>, StoreError>;
    /// Writes `record` and records `events` in one transaction — if the stored revision is
    /// still `record.revision` (0: none stored); the stored one becomes `record.revision + 1`.
    /// `false`, and nothing written, when another writer came first: read again and decide
    /// again. Replicas and sweeps never overwrite each other's decisions this way.
    async fn swap_agent(
        &self,
        record: &AgentRecord,
        events: &[AuditEvent],
    ) -> Result<bool, StoreError>;
}

/// The lease's expiry `ttl` after `now`, in milliseconds.
pub(crate) fn lease_expiry(now: Timestamp, ttl: std::time::Duration) -> i64 {
    to_ms(now).saturating_add(i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX / 2))
}

/// A store in memory: nothing survives the process.
#[derive(Debug, Default, Clone)]
pub struct MemoryStore {
    inner: Arc<Mutex<MemoryInner>>,
}

#[derive(Debug, Default)]
struct MemoryInner {
    remembered: HashMap<(String, InstanceId), Remembered>,
    events: Vec<AuditEvent>,
    lease: Option<(String, i64)>,
    agents: HashMap<(String, String), AgentRecord>,
}

#[async_trait]
impl Store for MemoryStore {
    async fn remembered(
        &self,
        provider: &str,
    ) -> Result<HashMap<InstanceId, Remembered>, StoreError> {
        let inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        Ok(inner
            .remembered
            .iter()
            .filter(|((p, _), _)| p == provider)
            .map(|((_, id), remembered)| (id.clone(), *remembered))
            .collect())
    }

    async fn commit(&self, run: &RunRecord) -> Result<(), StoreError> {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        for (provider, id, remembered) in &run.remember {
            inner
                .remembered
                .insert((provider.clone(), id.clone()), *remembered);
        }
        inner.events.extend(run.events.iter().cloned());
        Ok(())
    }

    async fn history(&self, limit: usize) -> Result<Vec<AuditEvent>, StoreError> {
        let inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        Ok(inner.events.iter().rev().take(limit).cloned().collect())
    }

    async fn try_lead(
        &self,
        holder: &str,
        now: Timestamp,
        ttl: std::time::Duration,
    ) -> Result<bool, StoreError> {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let free = match &inner.lease {
            None => true,
            Some((current, expires)) => current == holder || *expires < to_ms(now),
        };
        if free {
            inner.lease = Some((holder.to_owned(), lease_expiry(now, ttl)));
        }
        Ok(free)
    }

    async fn agents(&self) -> Result<Vec<AgentRecord>, StoreError> {
        let inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let mut agents: Vec<AgentRecord> = inner.agents.values().cloned().collect();
        agents.sort_by(|a, b| (&a.provider, &a.instance).cmp(&(&b.provider, &b.instance)));
        Ok(agents)
    }

    async fn agent(
        &self,
        provider: &str,
        instance: &str,
    ) -> Result<Option<AgentRecord>, StoreError> {
        let inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        Ok(inner
            .agents
            .get(&(provider.to_owned(), instance.to_owned()))
            .cloned())
    }

    async fn swap_agent(
        &self,
        record: &AgentRecord,
        events: &[AuditEvent],
    ) -> Result<bool, StoreError> {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let key = (record.provider.clone(), record.instance.clone());
        let stored = inner.agents.get(&key).map_or(0, |stored| stored.revision);
        if stored != record.revision {
            return Ok(false);
        }
        let mut written = record.clone();
        written.revision += 1;
        inner.agents.insert(key, written);
        inner.events.extend(events.iter().cloned());
        Ok(true)
    }
}

/// The migrations, in order; each runs once, in a transaction, and is recorded in
/// `schema_migrations`.
const MIGRATIONS: &[&str] = &[
    // 1: memory and the audit trail.
    "CREATE TABLE memory (
         provider TEXT NOT NULL,
         instance TEXT NOT NULL,
         transition_ms INTEGER,
         retained INTEGER NOT NULL DEFAULT 0,
         kept INTEGER NOT NULL DEFAULT 0,
         PRIMARY KEY (provider, instance)
     );
     CREATE TABLE events (
         id INTEGER PRIMARY KEY AUTOINCREMENT,
         at_ms INTEGER NOT NULL,
         run TEXT NOT NULL,
         provider TEXT NOT NULL,
         instance TEXT NOT NULL,
         schedule TEXT NOT NULL,
         action TEXT NOT NULL,
         reason TEXT NOT NULL,
         outcome TEXT NOT NULL,
         error TEXT
     );
     CREATE INDEX events_at ON events (at_ms);",
    // 2: the reconciler's lease, for replicas sharing the file.
    "CREATE TABLE leases (
         name TEXT PRIMARY KEY,
         holder TEXT NOT NULL,
         expires_ms INTEGER NOT NULL
     );",
    // 3: reporting agents.
    AGENTS_TABLE,
];

/// The agents' table, alike in SQLite and PostgreSQL (`BIGINT` is SQLite's `INTEGER`).
pub(crate) const AGENTS_TABLE: &str = "CREATE TABLE agents (
         provider TEXT NOT NULL,
         instance TEXT NOT NULL,
         hostname TEXT NOT NULL,
         version TEXT NOT NULL,
         registered_ms BIGINT NOT NULL,
         last_seen_ms BIGINT NOT NULL,
         state TEXT NOT NULL,
         idle_since_ms BIGINT,
         stop_at_ms BIGINT,
         postponed_until_ms BIGINT,
         note TEXT NOT NULL,
         revision BIGINT NOT NULL,
         PRIMARY KEY (provider, instance)
     );";

/// The agents' columns, in the order [`agent_from_columns`] reads them.
pub(crate) const AGENT_COLUMNS: &str = "provider, instance, hostname, version, registered_ms, \
     last_seen_ms, state, idle_since_ms, stop_at_ms, postponed_until_ms, note, revision";

/// The columns of one row, as both databases hand them over.
pub(crate) struct AgentColumns {
    pub(crate) provider: String,
    pub(crate) instance: String,
    pub(crate) hostname: String,
    pub(crate) version: String,
    pub(crate) registered_ms: i64,
    pub(crate) last_seen_ms: i64,
    pub(crate) state: String,
    pub(crate) idle_since_ms: Option<i64>,
    pub(crate) stop_at_ms: Option<i64>,
    pub(crate) postponed_until_ms: Option<i64>,
    pub(crate) note: String,
    pub(crate) revision: i64,
}

impl AgentColumns {
    /// The record; a state this version does not know reads as lost (decided again on the
    /// next report).
    pub(crate) fn record(self) -> AgentRecord {
        AgentRecord {
            provider: self.provider,
            instance: self.instance,
            hostname: self.hostname,
            version: self.version,
            registered_at: from_ms(self.registered_ms),
            last_seen: from_ms(self.last_seen_ms),
            state: self.state.parse().unwrap_or(AgentState::Lost),
            idle_since: self.idle_since_ms.map(from_ms),
            stop_at: self.stop_at_ms.map(from_ms),
            postponed_until: self.postponed_until_ms.map(from_ms),
            note: self.note,
            revision: self.revision,
        }
    }
}

/// SQLite, embedded: one file, no server, migrated on open.
#[derive(Clone)]
pub struct SqliteStore {
    connection: Arc<Mutex<rusqlite::Connection>>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore").finish_non_exhaustive()
    }
}

fn sql_error(error: rusqlite::Error) -> StoreError {
    StoreError(error.to_string())
}

impl SqliteStore {
    /// Opens (creating) the database at `path` and brings its schema up to date.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let connection = rusqlite::Connection::open(path)
            .map_err(|error| StoreError(format!("{}: {error}", path.display())))?;
        Self::migrated(connection)
    }

    /// A database in memory (for tests).
    pub fn in_memory() -> Result<Self, StoreError> {
        Self::migrated(rusqlite::Connection::open_in_memory().map_err(sql_error)?)
    }

    fn migrated(mut connection: rusqlite::Connection) -> Result<Self, StoreError> {
        // Several processes may share the file: wait for each other's writes, log ahead.
        connection
            .busy_timeout(std::time::Duration::from_secs(10))
            .map_err(sql_error)?;
        connection
            .pragma_update(None, "journal_mode", "WAL")
            .map_err(sql_error)?;
        let transaction = connection.transaction().map_err(sql_error)?;
        transaction
            .execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY)",
                [],
            )
            .map_err(sql_error)?;
        let applied: i64 = transaction
            .query_row(
                "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
                [],
                |row| row.get(0),
            )
            .map_err(sql_error)?;
        for (index, migration) in MIGRATIONS.iter().enumerate() {
            let version = index as i64 + 1;
            if version <= applied {
                continue;
            }
            transaction.execute_batch(migration).map_err(sql_error)?;
            transaction
                .execute(
                    "INSERT INTO schema_migrations (version) VALUES (?1)",
                    [version],
                )
                .map_err(sql_error)?;
        }
        if applied > MIGRATIONS.len() as i64 {
            return Err(StoreError(format!(
                "the database is at schema version {applied}, newer than this version knows ({})",
                MIGRATIONS.len()
            )));
        }
        transaction.commit().map_err(sql_error)?;
        Ok(SqliteStore {
            connection: Arc::new(Mutex::new(connection)),
        })
    }

    async fn with<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut rusqlite::Connection) -> Result<T, rusqlite::Error> + Send + 'static,
    ) -> Result<T, StoreError> {
        let connection = Arc::clone(&self.connection);
        tokio::task::spawn_blocking(move || {
            let mut connection = connection.lock().unwrap_or_else(PoisonError::into_inner);
            work(&mut connection).map_err(sql_error)
        })
        .await
        .map_err(|error| StoreError(format!("the store's thread failed: {error}")))?
    }
}

pub(crate) fn to_ms(at: Timestamp) -> i64 {
    at.as_millisecond()
}

pub(crate) fn from_ms(ms: i64) -> Timestamp {
    Timestamp::from_millisecond(ms).unwrap_or(Timestamp::UNIX_EPOCH)
}

#[async_trait]
impl Store for SqliteStore {
    async fn remembered(
        &self,
        provider: &str,
    ) -> Result<HashMap<InstanceId, Remembered>, StoreError> {
        let provider = provider.to_owned();
        self.with(move |connection| {
            let mut statement = connection.prepare_cached(
                "SELECT instance, transition_ms, retained, kept FROM memory WHERE provider = ?1",
            )?;
            let rows = statement.query_map([&provider], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, Option<i64>>(1)?,
                    row.get::<_, bool>(2)?,
                    row.get::<_, bool>(3)?,
                ))
            })?;
            let mut remembered = HashMap::new();
            for row in rows {
                let (instance, transition, retained, kept) = row?;
                // An id that no longer parses is forgotten, not fatal.
                if let Ok(id) = InstanceId::new(instance) {
                    remembered.insert(
                        id,
                        Remembered {
                            transition: transition.map(from_ms),
                            retained,
                            kept,
                        },
                    );
                }
            }
            Ok(remembered)
        })
        .await
    }

    async fn commit(&self, run: &RunRecord) -> Result<(), StoreError> {
        let run = run.clone();
        self.with(move |connection| {
            let transaction = connection.transaction()?;
            {
                let mut remember = transaction.prepare_cached(
                    "INSERT INTO memory (provider, instance, transition_ms, retained, kept)
                     VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT (provider, instance) DO UPDATE
                     SET transition_ms = excluded.transition_ms, retained = excluded.retained,
                         kept = excluded.kept",
                )?;
                for (provider, id, remembered) in &run.remember {
                    remember.execute(rusqlite::params![
                        provider,
                        id.as_str(),
                        remembered.transition.map(to_ms),
                        remembered.retained,
                        remembered.kept
                    ])?;
                }
            }
            insert_events(&transaction, &run.events)?;
            transaction.commit()
        })
        .await
    }

    async fn history(&self, limit: usize) -> Result<Vec<AuditEvent>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.with(move |connection| {
            let mut statement = connection.prepare_cached(
                "SELECT at_ms, run, provider, instance, schedule, action, reason, outcome, error
                 FROM events ORDER BY id DESC LIMIT ?1",
            )?;
            let rows = statement.query_map([limit], |row| {
                Ok(AuditEvent {
                    at: from_ms(row.get(0)?),
                    run: row.get(1)?,
                    provider: row.get(2)?,
                    instance: row.get(3)?,
                    schedule: row.get(4)?,
                    action: row.get(5)?,
                    reason: row.get(6)?,
                    outcome: row.get(7)?,
                    error: row.get(8)?,
                })
            })?;
            rows.collect()
        })
        .await
    }

    async fn try_lead(
        &self,
        holder: &str,
        now: Timestamp,
        ttl: std::time::Duration,
    ) -> Result<bool, StoreError> {
        let holder = holder.to_owned();
        let expires = lease_expiry(now, ttl);
        let now = to_ms(now);
        self.with(move |connection| {
            let led = connection.query_row(
                "INSERT INTO leases (name, holder, expires_ms) VALUES ('reconciler', ?1, ?2)
                 ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_ms = excluded.expires_ms
                 WHERE leases.holder = excluded.holder OR leases.expires_ms < ?3
                 RETURNING holder",
                rusqlite::params![holder, expires, now],
                |_| Ok(()),
            );
            match led {
                Ok(()) => Ok(true),
                Err(rusqlite::Error::QueryReturnedNoRows) => Ok(false),
                Err(error) => Err(error),
            }
        })
        .await
    }

    async fn agents(&self) -> Result<Vec<AgentRecord>, StoreError> {
        self.with(move |connection| {
            let mut statement = connection.prepare_cached(&format!(
                "SELECT {AGENT_COLUMNS} FROM agents ORDER BY provider, instance"
            ))?;
            let rows = statement.query_map([], sqlite_agent)?;
            rows.collect()
        })
        .await
    }

    async fn agent(
        &self,
        provider: &str,
        instance: &str,
    ) -> Result<Option<AgentRecord>, StoreError> {
        let (provider, instance) = (provider.to_owned(), instance.to_owned());
        self.with(move |connection| {
            let mut statement = connection.prepare_cached(&format!(
                "SELECT {AGENT_COLUMNS} FROM agents WHERE provider = ?1 AND instance = ?2"
            ))?;
            let mut rows = statement.query_map([&provider, &instance], sqlite_agent)?;
            rows.next().transpose()
        })
        .await
    }

    async fn swap_agent(
        &self,
        record: &AgentRecord,
        events: &[AuditEvent],
    ) -> Result<bool, StoreError> {
        let record = record.clone();
        let events = events.to_vec();
        self.with(move |connection| {
            // Immediate: the read and the write are one step for other processes too.
            let transaction =
                connection.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let stored: i64 = transaction
                .query_row(
                    "SELECT revision FROM agents WHERE provider = ?1 AND instance = ?2",
                    [&record.provider, &record.instance],
                    |row| row.get(0),
                )
                .or_else(|error| match error {
                    rusqlite::Error::QueryReturnedNoRows => Ok(0),
                    error => Err(error),
                })?;
            if stored != record.revision {
                return Ok(false);
            }
            transaction.execute(
                &format!(
                    "INSERT INTO agents ({AGENT_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)
                     ON CONFLICT (provider, instance) DO UPDATE SET
                         hostname = excluded.hostname, version = excluded.version,
                         registered_ms = excluded.registered_ms, last_seen_ms = excluded.last_seen_ms,
                         state = excluded.state, idle_since_ms = excluded.idle_since_ms,
                         stop_at_ms = excluded.stop_at_ms,
                         postponed_until_ms = excluded.postponed_until_ms, note = excluded.note,
                         revision = excluded.revision"
                ),
                rusqlite::params![
                    record.provider,
                    record.instance,
                    record.hostname,
                    record.version,
                    to_ms(record.registered_at),
                    to_ms(record.last_seen),
                    record.state.as_str(),
                    record.idle_since.map(to_ms),
                    record.stop_at.map(to_ms),
                    record.postponed_until.map(to_ms),
                    record.note,
                    record.revision + 1,
                ],
            )?;
            insert_events(&transaction, &events)?;
            transaction.commit()?;
            Ok(true)
        })
        .await
    }
}

fn sqlite_agent(row: &rusqlite::Row<'_>) -> rusqlite::Result<AgentRecord> {
    Ok(AgentColumns {
        provider: row.get(0)?,
        instance: row.get(1)?,
        hostname: row.get(2)?,
        version: row.get(3)?,
        registered_ms: row.get(4)?,
        last_seen_ms: row.get(5)?,
        state: row.get(6)?,
        idle_since_ms: row.get(7)?,
        stop_at_ms: row.get(8)?,
        postponed_until_ms: row.get(9)?,
        note: row.get(10)?,
        revision: row.get(11)?,
    }
    .record())
}

fn insert_events(
    transaction: &rusqlite::Transaction<'_>,
    events: &[AuditEvent],
) -> rusqlite::Result<()> {
    let mut event = transaction.prepare_cached(
        "INSERT INTO events (at_ms, run, provider, instance, schedule, action, reason, outcome, error)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?;
    for e in events {
        event.execute(rusqlite::params![
            to_ms(e.at),
            e.run,
            e.provider,
            e.instance,
            e.schedule,
            e.action,
            e.reason,
            e.outcome,
            e.error
        ])?;
    }
    Ok(())
}
