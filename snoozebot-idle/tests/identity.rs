//! Self-identification against fake metadata services on 127.0.0.1 (the testkit's), and the
//! failures: no IMDSv2 token, a server that is not GCE's, garbage from Azure, too much, and
//! no metadata service at all.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use snoozebot_idle::{Identity, MetadataEndpoints, identify};
use snoozebot_testkit::imds::{FakeCloud, FakeImds, ImdsFault};

fn aws() -> FakeCloud {
    FakeCloud::Aws {
        instance_id: "i-0123456789abcdef0".into(),
        region: "eu-central-1".into(),
    }
}

fn gcp() -> FakeCloud {
    FakeCloud::Gcp {
        project: "snoozebot-test".into(),
        zone: "europe-west1-b".into(),
        name: "build-box-1".into(),
    }
}

fn azure() -> FakeCloud {
    FakeCloud::Azure {
        subscription_id: "00000000-0000-0000-0000-000000000001".into(),
        resource_group: "ci".into(),
        name: "build-box-2".into(),
        location: "westeurope".into(),
    }
}

#[tokio::test]
async fn each_cloud_is_recognised_by_its_own_metadata_service() {
    let fake = FakeImds::start(aws()).await;
    let identity = identify(&MetadataEndpoints::all_at(&fake.endpoint()))
        .await
        .unwrap();
    assert_eq!(
        identity,
        Identity::Aws {
            instance_id: "i-0123456789abcdef0".into(),
            region: "eu-central-1".into()
        }
    );
    assert_eq!(
        fake.tokens_issued(),
        1,
        "IMDSv2: one session token, then the reads"
    );

    let fake = FakeImds::start(gcp()).await;
    let identity = identify(&MetadataEndpoints::all_at(&fake.endpoint()))
        .await
        .unwrap();
    assert_eq!(
        identity,
        Identity::Gcp {
            project: "snoozebot-test".into(),
            zone: "europe-west1-b".into(),
            name: "build-box-1".into()
        }
    );

    let fake = FakeImds::start(azure()).await;
    let identity = identify(&MetadataEndpoints::all_at(&fake.endpoint()))
        .await
        .unwrap();
    assert_eq!(
        identity,
        Identity::Azure {
            resource_id: "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/ci/providers/Microsoft.Compute/virtualMachines/build-box-2".into(),
            location: "westeurope".into()
        }
    );
}

#[tokio::test]
async fn a_misbehaving_service_is_a_clear_error() {
    for (cloud, fault, words) in [
        (aws(), ImdsFault::NoToken, "no IMDSv2 token"),
        (gcp(), ImdsFault::Unflavored, "Metadata-Flavor"),
        (azure(), ImdsFault::Garbage, "not its JSON"),
        (aws(), ImdsFault::Huge, "more than"),
        (azure(), ImdsFault::Huge, "more than"),
    ] {
        let fake = FakeImds::start(cloud).await;
        fake.set_fault(fault);
        let error = identify(&MetadataEndpoints::all_at(&fake.endpoint()))
            .await
            .unwrap_err();
        assert!(error.to_string().contains(words), "{fault:?}: {error}");
    }
}

#[tokio::test]
async fn off_cloud_every_service_fails_fast_and_says_so() {
    // A port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let endpoints = MetadataEndpoints {
        timeout: Duration::from_secs(2),
        ..MetadataEndpoints::all_at(&format!("http://{closed}"))
    };
    let started = std::time::Instant::now();
    let error = identify(&endpoints).await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    assert!(error.to_string().contains("not on EC2"), "{error}");
}
