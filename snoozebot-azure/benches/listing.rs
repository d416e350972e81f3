//! Listing a large subscription on the fake ARM server: how many requests and how long it
//! takes to know the power state of every VM, with the subscription's `statusOnly` list merged
//! in (the default) against one `GET ?$expand=instanceView` per VM (what a principal without
//! subscription-wide read gets, and what a naive client does).
//!
//! ```text
//! cargo bench -p snoozebot-azure --bench listing --profile dev
//! SNOOZEBOT_BENCH_VMS=5000 cargo bench -p snoozebot-azure --bench listing --profile dev
//! ```
//!
//! The fake answers in microseconds, so the times here are the client's own cost; against
//! ARM, multiply the request counts by its latency (tens of milliseconds each) — and by the
//! read quota they spend (12,000 reads an hour per subscription and principal).
#![allow(missing_docs, clippy::unwrap_used)]

use std::time::Instant;

use snoozebot_azure::AzureProviderBuilder;
use snoozebot_core::{CloudProvider, InstanceFilter};
use snoozebot_testkit::arm::FakeArm;

const SUB: &str = "00000000-0000-0000-0000-000000000001";

async fn fleet(count: usize) -> FakeArm {
    let fake = FakeArm::start().await;
    // ARM's VM lists come in pages of up to a few hundred; the fake's is set alike.
    fake.set_page_size(200);
    for n in 0..count {
        let power = if n % 3 == 0 { "deallocated" } else { "running" };
        let idleness = if n % 50 == 0 { "idle" } else { "busy" };
        fake.add_vm(
            SUB,
            "fleet",
            &format!("vm-{n:05}"),
            power,
            &[("snoozebot", idleness)],
        );
    }
    fake
}

async fn measure(label: &str, fake: &FakeArm, filter: &InstanceFilter, group: Option<&str>) {
    let mut builder = AzureProviderBuilder::new()
        .subscription(SUB)
        .endpoint(fake.endpoint())
        .static_token("fake-token");
    if let Some(group) = group {
        builder = builder.resource_group(group);
    }
    let azure = builder.build().unwrap();
    let before = fake.request_count();
    let started = Instant::now();
    let listed = azure.list_instances(filter).await.unwrap();
    let took = started.elapsed();
    println!(
        "{label:<58} {:>5} VMs  {:>5} requests  {:>8.1} ms",
        listed.len(),
        fake.request_count() - before,
        took.as_secs_f64() * 1000.0
    );
}

fn main() {
    let count: usize = std::env::var("SNOOZEBOT_BENCH_VMS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let fake = fleet(count).await;
        println!("{count} VMs in one resource group on the fake ARM server\n");
        let all = InstanceFilter::new();
        let idle = InstanceFilter::new().with_tag("snoozebot", "idle");
        measure("every VM: list + statusOnly list", &fake, &all, None).await;
        measure(
            "tagged idle (2%): list + statusOnly list",
            &fake,
            &idle,
            None,
        )
        .await;
        fake.deny_subscription_lists();
        measure(
            "every VM, subscription list forbidden: list + GET each",
            &fake,
            &all,
            Some("fleet"),
        )
        .await;
        measure(
            "tagged idle, subscription list forbidden: list + GET each",
            &fake,
            &idle,
            Some("fleet"),
        )
        .await;
    });
}
