//! The EC2 provider against moto's EC2 server (a real, independent emulator): the conformance
//! suite bare, wrapped in the middleware and through the plugin transport, and batches with
//! bad ids in them.
#![allow(clippy::unwrap_used)]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use aws_sdk_ec2::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_ec2::config::{ConfigBag, Intercept, RuntimeComponents};
use snoozebot_aws::AwsProviderBuilder;
use snoozebot_core::{
    CloudProvider, ErrorKind, InstanceFilter, InstanceId, InstanceState, StopOptions,
};
use snoozebot_testkit::conformance::{self, Fixture};
use support::Moto;

/// Two idle instances to stop and start, a missing and a malformed id, and others around them.
///
/// No terminated instance: moto 5.2.5 starts terminated instances (EC2 answers
/// `IncorrectInstanceState`), so that check runs against the recorded EC2 error in
/// `tests/errors.rs` instead.
async fn seeded_fixture(moto: &Moto) -> Fixture {
    let provider = moto.provider().await;
    let client = provider.client().await.unwrap();
    let idle = moto.launch(client, 2, "idle-web", "idle").await;
    moto.launch(client, 2, "busy-db", "busy").await;
    let doomed = moto.launch(client, 1, "old", "gone").await;
    client
        .terminate_instances()
        .instance_ids(doomed[0].as_str())
        .send()
        .await
        .unwrap();
    Fixture::new(
        idle,
        ("snoozebot", "idle"),
        InstanceId::new("i-0123456789abcdef0").unwrap(),
        InstanceId::new("web-server-1").unwrap(),
    )
    .with_wait_timeout(Duration::from_secs(30))
}

#[tokio::test]
async fn conformance_on_moto_bare_and_in_the_middleware() {
    let moto = Moto::start();
    let fixture = seeded_fixture(&moto).await;
    conformance::run_bare_and_in_the_middleware(Arc::new(moto.provider().await), &fixture).await;
}

#[cfg(feature = "plugin")]
#[tokio::test]
async fn conformance_on_moto_through_the_plugin() {
    use snoozebot_plugin::{PluginClient, PluginConfig};
    let moto = Moto::start();
    let fixture = seeded_fixture(&moto).await;
    let config = PluginConfig::default()
        .with_env("AWS_REGION", "us-east-1")
        .with_env("AWS_ENDPOINT_URL", &moto.endpoint)
        .with_env("AWS_ACCESS_KEY_ID", "testing")
        .with_env("AWS_SECRET_ACCESS_KEY", "testing")
        // Nothing from the developer's own AWS setup may leak into the test.
        .with_env("AWS_CONFIG_FILE", "/nonexistent")
        .with_env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent");
    let plugin = PluginClient::launch(
        "aws",
        std::path::Path::new(env!("CARGO_BIN_EXE_snoozebot-plugin-aws")),
        config,
    )
    .await
    .unwrap();
    assert_eq!(plugin.info().name, "aws");
    conformance::run(&plugin, &fixture).await;
    plugin.shutdown().await;
}

/// Counts the requests the SDK sends.
#[derive(Debug, Clone, Default)]
struct CountRequests(Arc<AtomicUsize>);

impl Intercept for CountRequests {
    fn name(&self) -> &'static str {
        "CountRequests"
    }

    fn read_before_transmit(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), aws_sdk_ec2::error::BoxError> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

#[tokio::test]
async fn a_batch_of_50_with_3_bad_ids_stops_the_47_in_few_calls() {
    let moto = Moto::start();
    let seeding = moto.provider().await;
    let mut good = moto
        .launch(seeding.client().await.unwrap(), 47, "fleet", "idle")
        .await;

    let counter = CountRequests::default();
    let sdk_config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_sdk_ec2::config::Region::new("us-east-1"))
        .endpoint_url(&moto.endpoint)
        .credentials_provider(aws_sdk_ec2::config::Credentials::new(
            "testing", "testing", None, None, "test",
        ))
        .retry_config(aws_config::retry::RetryConfig::disabled())
        .load()
        .await;
    let client = aws_sdk_ec2::Client::from_conf(
        aws_sdk_ec2::config::Builder::from(&sdk_config)
            .interceptor(counter.clone())
            .build(),
    );
    let provider = AwsProviderBuilder::new().from_client(client, Some("us-east-1".into()));

    let missing = [
        "i-0000000000000000a",
        "i-0000000000000000b",
        "i-0000000000000000c",
    ]
    .map(|id| InstanceId::new(id).unwrap());
    let mut ids = Vec::new();
    ids.extend(good.drain(..20));
    ids.push(missing[0].clone());
    ids.extend(good.drain(..15));
    ids.push(missing[1].clone());
    ids.append(&mut good);
    ids.push(missing[2].clone());
    assert_eq!(ids.len(), 50);

    let results = provider.stop_instances(&ids, &StopOptions::default()).await;
    assert_eq!(results.len(), 50);
    let answered: Vec<_> = results.iter().map(|(id, _)| id.clone()).collect();
    assert_eq!(answered, ids, "one result per id, in order");
    let mut stopped = 0;
    for (id, result) in &results {
        if missing.contains(id) {
            assert_eq!(
                result.as_ref().unwrap_err().kind(),
                ErrorKind::NotFound,
                "{id}"
            );
        } else {
            let change = result.as_ref().unwrap_or_else(|e| panic!("{id}: {e}"));
            assert_eq!(change.previous, InstanceState::Running);
            stopped += 1;
        }
    }
    assert_eq!(stopped, 47);
    // One call that fails naming the 3 missing ids, one that stops the 47: O(1) extra calls
    // here, O(log n) at worst when EC2 names no ids.
    assert_eq!(counter.0.load(Ordering::SeqCst), 2);

    let still_running = provider
        .list_instances(&InstanceFilter::new().with_state(InstanceState::Running))
        .await
        .unwrap();
    assert!(
        still_running.is_empty(),
        "{} still running",
        still_running.len()
    );
}

#[tokio::test]
async fn a_missing_region_is_a_config_error() {
    let err = AwsProviderBuilder::new()
        .endpoint("http://127.0.0.1:9")
        .static_credentials("testing", "testing")
        .profile("snoozebot-no-such-profile")
        .build_resolved()
        .await;
    // The environment may provide a region; only without one is this an error.
    if std::env::var_os("AWS_REGION").is_none() && std::env::var_os("AWS_DEFAULT_REGION").is_none()
    {
        assert_eq!(err.unwrap_err().kind(), ErrorKind::Config);
    }
}
