//! Bulk stop and start on moto: 1000 instances stopped then started in batches (one
//! StopInstances/StartInstances call per 100 ids), against one call per instance.
//!
//! ```text
//! cargo bench -p snoozebot-aws --bench bulk                 # release build of the SDK: slow to build
//! cargo bench -p snoozebot-aws --bench bulk --profile dev   # the time is moto's either way
//! SNOOZEBOT_BULK_INSTANCES=300 cargo bench -p snoozebot-aws --bench bulk --profile dev
//! ```
//!
//! Needs moto in `.venv` (`scripts/test` installs it). The goal (issue "snoozebot-aws"): at
//! least 20x fewer seconds batched.
#![allow(missing_docs, clippy::unwrap_used)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use snoozebot_core::{CloudProvider, InstanceId, StopOptions};

fn main() {
    let count: i32 = std::env::var("SNOOZEBOT_BULK_INSTANCES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1000);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let moto = support::Moto::start();
        let provider = moto.provider().await;
        let client = provider.client().await.unwrap();
        let mut ids: Vec<InstanceId> = Vec::new();
        while ids.len() < count as usize {
            let batch = (count - ids.len() as i32).min(100);
            ids.extend(moto.launch(client, batch, "bench", "idle").await);
        }
        println!(
            "{} instances on moto 5.2.5 at {}\n",
            ids.len(),
            moto.endpoint
        );

        let opts = StopOptions::default();
        let started = Instant::now();
        let stopped = provider.stop_instances(&ids, &opts).await;
        let batched_stop = started.elapsed();
        let started = Instant::now();
        let started_again = provider.start_instances(&ids).await;
        let batched_start = started.elapsed();
        assert!(
            stopped
                .iter()
                .chain(&started_again)
                .all(|(_, result)| result.is_ok())
        );
        let batched = batched_stop + batched_start;
        println!(
            "batched (100 ids per call):  stop {:>8.2} s   start {:>8.2} s   total {:>8.2} s",
            batched_stop.as_secs_f64(),
            batched_start.as_secs_f64(),
            batched.as_secs_f64()
        );

        let mut single_stop = Duration::ZERO;
        let mut single_start = Duration::ZERO;
        let started = Instant::now();
        for id in &ids {
            provider.stop_instance(id, &opts).await.unwrap();
        }
        single_stop += started.elapsed();
        let started = Instant::now();
        for id in &ids {
            provider.start_instance(id).await.unwrap();
        }
        single_start += started.elapsed();
        let single = single_stop + single_start;
        println!(
            "one call per instance:       stop {:>8.2} s   start {:>8.2} s   total {:>8.2} s",
            single_stop.as_secs_f64(),
            single_start.as_secs_f64(),
            single.as_secs_f64()
        );
        println!(
            "\nbatched is {:.1}x faster",
            single.as_secs_f64() / batched.as_secs_f64()
        );
    });
}
