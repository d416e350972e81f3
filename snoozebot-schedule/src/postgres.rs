//! [`PostgresStore`]: the store in PostgreSQL, for several `snoozebot serve` replicas that share
//! one state and trail and elect one reconciler with a lease.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use jiff::Timestamp;
use snoozebot_core::InstanceId;
use tokio::sync::Mutex;

use crate::agents::AgentRecord;
use crate::plan::Remembered;
use crate::store::{
    AGENT_COLUMNS, AGENTS_TABLE, AgentColumns, AuditEvent, RunRecord, Store, StoreError, from_ms,
    lease_expiry, to_ms,
};

/// The migrations, in order; each runs once, in a transaction, recorded in `schema_migrations`.
const MIGRATIONS: &[&str] = &[
    // 1: memory, the audit trail, the reconciler's lease.
    "CREATE TABLE memory (
         provider TEXT NOT NULL,
         instance TEXT NOT NULL,
         transition_ms BIGINT,
         retained BOOLEAN NOT NULL DEFAULT FALSE,
         kept BOOLEAN NOT NULL DEFAULT FALSE,
         PRIMARY KEY (provider, instance)
     );
     CREATE TABLE events (
         id BIGSERIAL PRIMARY KEY,
         at_ms BIGINT NOT NULL,
         run TEXT NOT NULL,
         provider TEXT NOT NULL,
         instance TEXT NOT NULL,
         schedule TEXT NOT NULL,
         action TEXT NOT NULL,
         reason TEXT NOT NULL,
         outcome TEXT NOT NULL,
         error TEXT
     );
     CREATE INDEX events_at ON events (at_ms);
     CREATE TABLE leases (
         name TEXT PRIMARY KEY,
         holder TEXT NOT NULL,
         expires_ms BIGINT NOT NULL
     );",
    // 2: reporting agents.
    AGENTS_TABLE,
];

/// Serialises migrations of replicas starting together (`pg_advisory_xact_lock`).
const MIGRATION_LOCK: i64 = 0x736e_6f6f_7a65;

fn pg_error(error: tokio_postgres::Error) -> StoreError {
    StoreError(format!("postgres: {error}"))
}

/// PostgreSQL: a connection string (`postgres://user@host:port/db` or `host=… user=…`); the
/// schema is migrated on open; a lost connection is made again on the next use.
pub struct PostgresStore {
    config: String,
    client: Mutex<Option<tokio_postgres::Client>>,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The connection string may hold a password.
        f.debug_struct("PostgresStore").finish_non_exhaustive()
    }
}

impl PostgresStore {
    /// Connects and brings the schema up to date.
    pub async fn open(config: &str) -> Result<Self, StoreError> {
        let store = PostgresStore {
            config: config.to_owned(),
            client: Mutex::new(None),
        };
        let mut client = store.client.lock().await;
        let connected = client.insert(store.connect().await?);
        let transaction = connected.transaction().await.map_err(pg_error)?;
        transaction
            .execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .await
            .map_err(pg_error)?;
        transaction
            .batch_execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY)",
            )
            .await
            .map_err(pg_error)?;
        let applied: i64 = transaction
            .query_one(
                "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
                &[],
            )
            .await
            .map_err(pg_error)?
            .get(0);
        if applied > MIGRATIONS.len() as i64 {
            return Err(StoreError(format!(
                "the database is at schema version {applied}, newer than this version knows ({})",
                MIGRATIONS.len()
            )));
        }
        for (index, migration) in MIGRATIONS.iter().enumerate() {
            let version = index as i64 + 1;
            if version <= applied {
                continue;
            }
            transaction
                .batch_execute(migration)
                .await
                .map_err(pg_error)?;
            transaction
                .execute(
                    "INSERT INTO schema_migrations (version) VALUES ($1)",
                    &[&version],
                )
                .await
                .map_err(pg_error)?;
        }
        transaction.commit().await.map_err(pg_error)?;
        drop(client);
        Ok(store)
    }

    async fn connect(&self) -> Result<tokio_postgres::Client, StoreError> {
        let (client, connection) = tokio_postgres::connect(&self.config, tokio_postgres::NoTls)
            .await
            .map_err(pg_error)?;
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::warn!(%error, "the schedule store's connection ended");
            }
        });
        Ok(client)
    }

    /// The client, connected again if the last one was lost.
    async fn client(
        &self,
    ) -> Result<tokio::sync::MutexGuard<'_, Option<tokio_postgres::Client>>, StoreError> {
        let mut client = self.client.lock().await;
        if client
            .as_ref()
            .is_none_or(tokio_postgres::Client::is_closed)
        {
            *client = Some(self.connect().await?);
        }
        Ok(client)
    }
}

fn connected(
    client: &mut Option<tokio_postgres::Client>,
) -> Result<&mut tokio_postgres::Client, StoreError> {
    client
        .as_mut()
        .ok_or_else(|| StoreError("postgres: not connected".to_owned()))
}

/// Rows per statement (`UNNEST` of arrays): a round trip per row made the store 90 % of a
/// 100,000-instance tick.
const ROWS_PER_STATEMENT: usize = 5_000;

async fn insert_events(
    transaction: &tokio_postgres::Transaction<'_>,
    events: &[AuditEvent],
) -> Result<(), StoreError> {
    for chunk in events.chunks(ROWS_PER_STATEMENT) {
        let column =
            |field: fn(&AuditEvent) -> &str| -> Vec<&str> { chunk.iter().map(field).collect() };
        let at: Vec<i64> = chunk.iter().map(|e| to_ms(e.at)).collect();
        let errors: Vec<Option<&str>> = chunk.iter().map(|e| e.error.as_deref()).collect();
        transaction
                .execute(
                    "INSERT INTO events (at_ms, run, provider, instance, schedule, action, reason, outcome, error)
                     SELECT * FROM UNNEST($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[],
                                          $6::text[], $7::text[], $8::text[], $9::text[])",
                    &[
                        &at,
                        &column(|e| &e.run),
                        &column(|e| &e.provider),
                        &column(|e| &e.instance),
                        &column(|e| &e.schedule),
                        &column(|e| &e.action),
                        &column(|e| &e.reason),
                        &column(|e| &e.outcome),
                        &errors,
                    ],
                )
                .await
                .map_err(pg_error)?;
    }
    Ok(())
}

fn pg_agent(row: &tokio_postgres::Row) -> AgentRecord {
    AgentColumns {
        provider: row.get(0),
        instance: row.get(1),
        hostname: row.get(2),
        version: row.get(3),
        registered_ms: row.get(4),
        last_seen_ms: row.get(5),
        state: row.get(6),
        idle_since_ms: row.get(7),
        stop_at_ms: row.get(8),
        postponed_until_ms: row.get(9),
        note: row.get(10),
        revision: row.get(11),
    }
    .record()
}

#[async_trait]
impl Store for PostgresStore {
    async fn remembered(
        &self,
        provider: &str,
    ) -> Result<HashMap<InstanceId, Remembered>, StoreError> {
        let mut guard = self.client().await?;
        let rows = connected(&mut guard)?
            .query(
                "SELECT instance, transition_ms, retained, kept FROM memory WHERE provider = $1",
                &[&provider],
            )
            .await
            .map_err(pg_error)?;
        Ok(rows
            .iter()
            .filter_map(|row| {
                let id = InstanceId::new(row.get::<_, String>(0)).ok()?;
                Some((
                    id,
                    Remembered {
                        transition: row.get::<_, Option<i64>>(1).map(from_ms),
                        retained: row.get(2),
                        kept: row.get(3),
                    },
                ))
            })
            .collect())
    }

    /// One statement per table per chunk of rows, not one per row.
    async fn commit(&self, run: &RunRecord) -> Result<(), StoreError> {
        let mut guard = self.client().await?;
        let transaction = connected(&mut guard)?
            .transaction()
            .await
            .map_err(pg_error)?;
        for chunk in run.remember.chunks(ROWS_PER_STATEMENT) {
            let providers: Vec<&str> = chunk
                .iter()
                .map(|(provider, _, _)| provider.as_str())
                .collect();
            let instances: Vec<&str> = chunk.iter().map(|(_, id, _)| id.as_str()).collect();
            let transitions: Vec<Option<i64>> = chunk
                .iter()
                .map(|(_, _, r)| r.transition.map(to_ms))
                .collect();
            let retained: Vec<bool> = chunk.iter().map(|(_, _, r)| r.retained).collect();
            let kept: Vec<bool> = chunk.iter().map(|(_, _, r)| r.kept).collect();
            transaction
                .execute(
                    "INSERT INTO memory (provider, instance, transition_ms, retained, kept)
                     SELECT * FROM UNNEST($1::text[], $2::text[], $3::bigint[], $4::bool[], $5::bool[])
                     ON CONFLICT (provider, instance) DO UPDATE
                     SET transition_ms = excluded.transition_ms, retained = excluded.retained,
                         kept = excluded.kept",
                    &[&providers, &instances, &transitions, &retained, &kept],
                )
                .await
                .map_err(pg_error)?;
        }
        insert_events(&transaction, &run.events).await?;
        transaction.commit().await.map_err(pg_error)
    }

    async fn history(&self, limit: usize) -> Result<Vec<AuditEvent>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut guard = self.client().await?;
        let rows = connected(&mut guard)?
            .query(
                "SELECT at_ms, run, provider, instance, schedule, action, reason, outcome, error
                 FROM events ORDER BY id DESC LIMIT $1",
                &[&limit],
            )
            .await
            .map_err(pg_error)?;
        Ok(rows
            .iter()
            .map(|row| AuditEvent {
                at: from_ms(row.get(0)),
                run: row.get(1),
                provider: row.get(2),
                instance: row.get(3),
                schedule: row.get(4),
                action: row.get(5),
                reason: row.get(6),
                outcome: row.get(7),
                error: row.get(8),
            })
            .collect())
    }

    async fn try_lead(
        &self,
        holder: &str,
        now: Timestamp,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let expires = lease_expiry(now, ttl);
        let mut guard = self.client().await?;
        let rows = connected(&mut guard)?
            .query(
                "INSERT INTO leases (name, holder, expires_ms) VALUES ('reconciler', $1, $2)
                 ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_ms = excluded.expires_ms
                 WHERE leases.holder = excluded.holder OR leases.expires_ms < $3
                 RETURNING holder",
                &[&holder, &expires, &to_ms(now)],
            )
            .await
            .map_err(pg_error)?;
        Ok(!rows.is_empty())
    }

    async fn agents(&self) -> Result<Vec<AgentRecord>, StoreError> {
        let mut guard = self.client().await?;
        let rows = connected(&mut guard)?
            .query(
                &format!("SELECT {AGENT_COLUMNS} FROM agents ORDER BY provider, instance"),
                &[],
            )
            .await
            .map_err(pg_error)?;
        Ok(rows.iter().map(pg_agent).collect())
    }

    async fn agent(
        &self,
        provider: &str,
        instance: &str,
    ) -> Result<Option<AgentRecord>, StoreError> {
        let mut guard = self.client().await?;
        let row = connected(&mut guard)?
            .query_opt(
                &format!(
                    "SELECT {AGENT_COLUMNS} FROM agents WHERE provider = $1 AND instance = $2"
                ),
                &[&provider, &instance],
            )
            .await
            .map_err(pg_error)?;
        Ok(row.as_ref().map(pg_agent))
    }

    async fn swap_agent(
        &self,
        record: &AgentRecord,
        events: &[AuditEvent],
    ) -> Result<bool, StoreError> {
        let mut guard = self.client().await?;
        let transaction = connected(&mut guard)?
            .transaction()
            .await
            .map_err(pg_error)?;
        // Revision 0 read: inserted unless another writer inserted first. Otherwise updated
        // while the stored revision is still the one read.
        let statement = if record.revision == 0 {
            format!(
                "INSERT INTO agents ({AGENT_COLUMNS})
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12::bigint + 1)
                 ON CONFLICT (provider, instance) DO NOTHING"
            )
        } else {
            "UPDATE agents SET hostname = $3, version = $4, registered_ms = $5, last_seen_ms = $6,
                 state = $7, idle_since_ms = $8, stop_at_ms = $9, postponed_until_ms = $10,
                 note = $11, revision = $12::bigint + 1
             WHERE provider = $1 AND instance = $2 AND revision = $12::bigint"
                .to_owned()
        };
        let written = transaction
            .execute(
                &statement,
                &[
                    &record.provider,
                    &record.instance,
                    &record.hostname,
                    &record.version,
                    &to_ms(record.registered_at),
                    &to_ms(record.last_seen),
                    &record.state.as_str(),
                    &record.idle_since.map(to_ms),
                    &record.stop_at.map(to_ms),
                    &record.postponed_until.map(to_ms),
                    &record.note,
                    &record.revision,
                ],
            )
            .await
            .map_err(pg_error)?;
        if written == 0 {
            return Ok(false);
        }
        insert_events(&transaction, events).await?;
        transaction.commit().await.map_err(pg_error)?;
        Ok(true)
    }
}
