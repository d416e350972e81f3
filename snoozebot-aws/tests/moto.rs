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

/// A provider on moto whose SDK client counts its requests (retries off, so each is a call).
async fn counted_provider(moto: &Moto) -> (snoozebot_aws::AwsProvider, CountRequests) {
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
    (provider, counter)
}

#[tokio::test]
async fn a_batch_of_50_with_3_bad_ids_stops_the_47_in_few_calls() {
    let moto = Moto::start();
    let seeding = moto.provider().await;
    let mut good = moto
        .launch(seeding.client().await.unwrap(), 47, "fleet", "idle")
        .await;

    let (provider, counter) = counted_provider(&moto).await;

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
    // Describes until the missing ids are set aside (EC2 names all of them in one refusal;
    // moto 5.2.5 names one at a time: 3 refusals here), one that succeeds (the states before
    // the stop), and one stop of the 47, which cannot fail for a missing id any more.
    assert_eq!(counter.0.load(Ordering::SeqCst), 3 + 1 + 1);

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

/// moto's StopInstances, like EC2's as far as its documentation says, is not atomic: a refusal
/// for one instance (stop protection) comes after it stopped the ones before it. The batch is
/// sent again without the refused one, and EC2 then answers `stopped -> stopped` for instances
/// this very batch stopped; the report must say what they were before it.
#[tokio::test]
async fn a_batch_ec2_carried_out_in_part_reports_the_states_before_it() {
    let moto = Moto::start();
    let seeding = moto.provider().await;
    let client = seeding.client().await.unwrap();
    let mut ids = Vec::new();
    let mut protected = Vec::new();
    for _ in 0..10 {
        ids.extend(moto.launch(client, 20, "fleet", "idle").await);
        let kept = moto
            .launch_with(client, 1, "protected", "idle", |run| {
                run.disable_api_stop(true)
            })
            .await;
        protected.extend(kept.iter().cloned());
        ids.extend(kept);
    }
    assert_eq!(ids.len(), 210);

    let (provider, counter) = counted_provider(&moto).await;
    let results = provider.stop_instances(&ids, &StopOptions::default()).await;
    let answered: Vec<_> = results.iter().map(|(id, _)| id.clone()).collect();
    assert_eq!(answered, ids, "one result per id, in order");
    let mut stopped = 0;
    for (id, result) in &results {
        if protected.contains(id) {
            assert_eq!(
                result.as_ref().unwrap_err().kind(),
                ErrorKind::InvalidState,
                "{id}"
            );
        } else {
            let change = result.as_ref().unwrap_or_else(|e| panic!("{id}: {e}"));
            assert_eq!(change.previous, InstanceState::Running, "{id}: {change:?}");
            assert_eq!(change.mode, Some(snoozebot_core::StopMode::Stop));
            stopped += 1;
        }
    }
    assert_eq!(stopped, 200);
    // Per chunk of 100 (3 chunks): a describe, then a stop per refusal (each names its
    // instance, 10 in all) and the last one that succeeds.
    assert_eq!(counter.0.load(Ordering::SeqCst), 3 + 10 + 3);
}

/// DescribeInstances says which instances were launched for hibernation: only those are asked
/// to hibernate, the others are stopped (with the fallback) or refused, in one call each way.
#[tokio::test]
async fn only_instances_configured_for_hibernation_are_asked_to_hibernate() {
    use snoozebot_core::StopMode;
    let moto = Moto::start();
    let seeding = moto.provider().await;
    let client = seeding.client().await.unwrap();
    let mut ids = moto.launch(client, 100, "plain", "idle").await;
    let hibernating = moto
        .launch_with(client, 10, "hibernating", "idle", |run| {
            run.hibernation_options(
                aws_sdk_ec2::types::HibernationOptionsRequest::builder()
                    .configured(true)
                    .build(),
            )
        })
        .await;
    ids.extend(hibernating.iter().cloned());
    ids.extend(moto.launch(client, 100, "plain", "idle").await);

    let (provider, counter) = counted_provider(&moto).await;
    let strict = StopOptions::default().with_mode(StopMode::Hibernate);
    let results = provider
        .stop_instances(&ids, &strict.clone().with_dry_run(true))
        .await;
    assert_eq!(
        counter.0.load(Ordering::SeqCst),
        3 + 1,
        "a describe per chunk of 100, one dry hibernation of the 10"
    );
    for (id, result) in &results {
        if hibernating.contains(id) {
            assert_eq!(result.as_ref().unwrap().mode, Some(StopMode::Hibernate));
        } else {
            let error = result.as_ref().unwrap_err();
            assert_eq!(error.kind(), ErrorKind::Unsupported, "{id}");
            assert!(
                error.message().contains("not configured for hibernation"),
                "{error}"
            );
        }
    }

    counter.0.store(0, Ordering::SeqCst);
    let results = provider
        .stop_instances(&ids, &strict.with_allow_fallback(true))
        .await;
    assert_eq!(
        counter.0.load(Ordering::SeqCst),
        3 + 1 + 2,
        "a describe per chunk of 100, one hibernation of the 10, a stop per chunk of the 200"
    );
    assert_eq!(results.len(), 210);
    for (id, result) in &results {
        let change = result.as_ref().unwrap_or_else(|e| panic!("{id}: {e}"));
        let expected = if hibernating.contains(id) {
            StopMode::Hibernate
        } else {
            StopMode::Stop
        };
        assert_eq!(change.mode, Some(expected), "{id}");
        assert_eq!(change.previous, InstanceState::Running, "{id}");
    }
}
