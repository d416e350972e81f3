//! One scheduler tick at scale: mock providers with a 20 ms latency per cloud call, every
//! scheduled instance changing state (a period boundary, the worst case), then the tick after
//! (nothing to do). Prints the plan and apply times, list calls per provider, the store's share
//! of the tick (SQLite on a file, then PostgreSQL started by the bench from Debian's server),
//! and the process's memory.
//!
//! ```text
//! cargo bench -p snoozebot-schedule --bench tick
//! SNOOZEBOT_BENCH_SCALES=10000x10 cargo bench -p snoozebot-schedule --bench tick
//! ```
#![allow(missing_docs, clippy::unwrap_used)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use snoozebot_core::{CloudProvider, InstanceId, InstanceState};
use snoozebot_schedule::PostgresStore;
use snoozebot_schedule::store::{AuditEvent, RunRecord, SqliteStore, Store, StoreError};
use snoozebot_schedule::{
    AgentRecord, CustodianConfig, CustodianDefaults, Fleet, Limits, Overrides, Reconciler,
    Remembered, Schedule, Schedules, parse_period,
};
use snoozebot_testkit::{MockInstance, MockOperation, MockProvider};

#[path = "../tests/support/postgres.rs"]
mod postgres;

/// A store that adds up the time spent in it.
struct Timed {
    inner: Arc<dyn Store>,
    spent: Mutex<Duration>,
}

impl Timed {
    fn add(&self, since: Instant) {
        *self.spent.lock().unwrap() += since.elapsed();
    }
}

#[async_trait]
impl Store for Timed {
    async fn remembered(
        &self,
        provider: &str,
    ) -> Result<HashMap<InstanceId, Remembered>, StoreError> {
        let start = Instant::now();
        let result = self.inner.remembered(provider).await;
        self.add(start);
        result
    }

    async fn commit(&self, run: &RunRecord) -> Result<(), StoreError> {
        let start = Instant::now();
        let result = self.inner.commit(run).await;
        self.add(start);
        result
    }

    async fn history(&self, limit: usize) -> Result<Vec<AuditEvent>, StoreError> {
        self.inner.history(limit).await
    }

    async fn try_lead(
        &self,
        holder: &str,
        now: snoozebot_schedule::jiff::Timestamp,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        self.inner.try_lead(holder, now, ttl).await
    }

    async fn agents(&self) -> Result<Vec<AgentRecord>, StoreError> {
        self.inner.agents().await
    }

    async fn agent(
        &self,
        provider: &str,
        instance: &str,
    ) -> Result<Option<AgentRecord>, StoreError> {
        self.inner.agent(provider, instance).await
    }

    async fn swap_agent(
        &self,
        record: &AgentRecord,
        events: &[AuditEvent],
    ) -> Result<bool, StoreError> {
        self.inner.swap_agent(record, events).await
    }
}

fn memory_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap_or(0)
}

fn schedules() -> Arc<Schedules> {
    let office = Schedule::from_periods(
        "office",
        "Europe/Berlin",
        &[parse_period("Mon-Fri 08:00-19:00").unwrap()],
        [],
    )
    .unwrap();
    Arc::new(
        Schedules::new()
            .with_schedule(office, Overrides::default())
            .with_custodian(CustodianConfig {
                tag: "maid_offhours".into(),
                defaults: CustodianDefaults::default(),
                overrides: Overrides::default(),
            }),
    )
}

/// `count` running instances: a third on the named schedule, a third inline, a third tagged
/// for Custodian, and one in ten of each untagged instead.
fn provider(index: usize, count: usize) -> Arc<MockProvider> {
    let mut builder = MockProvider::builder();
    for n in 0..count {
        let mut instance =
            MockInstance::new(&format!("mock-{index:02}-{n:06}")).state(InstanceState::Running);
        instance = match (n % 10, n % 3) {
            (9, _) => instance,
            (_, 0) => instance.tag("snoozebot-schedule", "office"),
            (_, 1) => instance.tag("snoozebot-schedule", "Mon-Fri 09:00-17:00 Europe/London"),
            _ => instance.tag("maid_offhours", "off=(M-F,18);on=(M-F,8);tz=pt"),
        };
        builder = builder.instance(instance);
    }
    let provider = Arc::new(builder.build());
    provider.set_latency(Duration::from_millis(20));
    provider
}

async fn scale(instances: usize, providers: usize, store_name: &str, inner: Arc<dyn Store>) {
    let per_provider = instances / providers;
    let mocks: Vec<Arc<MockProvider>> = (0..providers).map(|i| provider(i, per_provider)).collect();
    let fleets: Vec<Fleet> = mocks
        .iter()
        .enumerate()
        .map(|(i, mock)| Fleet {
            name: format!("mock-{i:02}"),
            provider: Arc::clone(mock) as Arc<dyn CloudProvider>,
        })
        .collect();
    let store = Arc::new(Timed {
        inner,
        spent: Mutex::new(Duration::ZERO),
    });
    let limits = Limits {
        per_run: instances,
        per_provider,
    };
    let reconciler = Reconciler::new(schedules(), store.clone(), limits);
    // Tuesday 1 December 2026, 23:00 UTC: every schedule is off.
    let night = "2026-12-01T23:00:00Z".parse().unwrap();

    let tick = Instant::now();
    let plan = reconciler.plan(&fleets, night).await.unwrap();
    let planned = tick.elapsed();
    let applied = reconciler.apply(&fleets, &plan).await.unwrap();
    let whole = tick.elapsed();
    let store_share = *store.spent.lock().unwrap();
    let lists: Vec<usize> = mocks
        .iter()
        .map(|mock| mock.call_count(MockOperation::List))
        .collect();
    let failed = applied
        .iter()
        .filter(|applied| applied.error.is_some())
        .count();

    *store.spent.lock().unwrap() = Duration::ZERO;
    let next = Instant::now();
    let quiet = reconciler.plan(&fleets, night).await.unwrap();
    let quiet_time = next.elapsed();

    println!(
        "{instances:>7} instances, {providers:>2} providers, {store_name:<10}: tick {:>7.0} ms (plan {:>5.0} ms, apply {:>6.0} ms) for {} actions ({failed} failed); \
         store {:>5.0} ms = {:>4.1}% of the tick; list calls per provider {}..{}; next tick {:>5.0} ms, {} actions; RSS {} MiB (peak {} MiB)",
        whole.as_secs_f64() * 1e3,
        planned.as_secs_f64() * 1e3,
        (whole - planned).as_secs_f64() * 1e3,
        applied.len(),
        store_share.as_secs_f64() * 1e3,
        store_share.as_secs_f64() / whole.as_secs_f64() * 100.0,
        lists.iter().min().unwrap(),
        lists.iter().max().unwrap(),
        quiet_time.as_secs_f64() * 1e3,
        quiet.actions().count(),
        memory_kib("VmRSS:") / 1024,
        memory_kib("VmHWM:") / 1024,
    );
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|text| {
            text.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}

fn main() {
    let scales =
        std::env::var("SNOOZEBOT_BENCH_SCALES").unwrap_or_else(|_| "10000x10,100000x50".to_owned());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    println!(
        "scheduler tick, mock providers with 20 ms a call (8 calls at a time each), SQLite and PostgreSQL stores; {} cores; load average before: {}",
        std::thread::available_parallelism().map_or(0, usize::from),
        load_average()
    );
    let postgres = postgres::Postgres::start();
    for scale_text in scales.split(',') {
        let Some((instances, providers)) = scale_text.split_once('x') else {
            continue;
        };
        let (instances, providers) = (instances.parse().unwrap(), providers.parse().unwrap());
        let dir = tempfile::tempdir().unwrap();
        let sqlite: Arc<dyn Store> =
            Arc::new(SqliteStore::open(&dir.path().join("schedule.db")).unwrap());
        runtime.block_on(scale(instances, providers, "SQLite", sqlite));
        // A fresh database each scale: the first tick has no memory, as on SQLite.
        let url = postgres.url.clone();
        let database = format!("bench_{instances}_{providers}");
        runtime.block_on(async {
            let admin = PostgresStore::open(&url).await.unwrap();
            drop(admin);
            let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                .await
                .unwrap();
            tokio::spawn(connection);
            client
                .batch_execute(&format!("CREATE DATABASE {database}"))
                .await
                .unwrap();
            let store: Arc<dyn Store> = Arc::new(
                PostgresStore::open(&url.replace("/postgres", &format!("/{database}")))
                    .await
                    .unwrap(),
            );
            scale(instances, providers, "PostgreSQL", store).await;
        });
    }
    println!("load average after: {}", load_average());
}
