//! The conformance suite: the behaviour every [`CloudProvider`] must show, whatever cloud is
//! behind it — the mock, each cloud against its emulator or fake, any provider through the
//! plugin transport, any provider wrapped in middleware.
//!
//! Each check panics with a message that names the check and what was seen, like an `assert!`,
//! so it reads well in a test failure. [`run`] runs them all in order; the checks are also
//! public one by one.
//!
//! ```
//! use snoozebot_testkit::{conformance, MockProvider};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
//! let provider = MockProvider::fleet(8);
//! conformance::run(&provider, &conformance::Fixture::for_mock_fleet()).await;
//! # });
//! ```

use std::sync::Arc;
use std::time::Duration;

use snoozebot_core::{
    CloudProvider, CloudProviderExt, ErrorKind, InstanceFilter, InstanceId, InstanceState,
    PageRequest, ProviderStack, Result, RetryConfig, StopMode, StopOptions,
};

/// What the suite needs to know about the fleet behind the provider under test.
///
/// The suite stops and starts the `running` instances and leaves them running again.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Fixture {
    /// At least two running instances the suite may stop and start.
    pub running: Vec<InstanceId>,
    /// A tag every `running` instance carries.
    pub tag: (String, String),
    /// A well-formed id of an instance that does not exist.
    pub missing: InstanceId,
    /// An id the core accepts but the provider must refuse as malformed.
    pub malformed: InstanceId,
    /// A terminated instance, if the fleet has one.
    pub terminated: Option<InstanceId>,
    /// How long to wait for a stop or start to complete.
    pub wait_timeout: Duration,
}

impl Fixture {
    /// A fixture; see the fields for what each argument must be.
    ///
    /// # Panics
    ///
    /// If fewer than two running instances are given.
    pub fn new(
        running: Vec<InstanceId>,
        tag: (impl Into<String>, impl Into<String>),
        missing: InstanceId,
        malformed: InstanceId,
    ) -> Self {
        assert!(
            running.len() >= 2,
            "the conformance suite needs at least two running instances"
        );
        Fixture {
            running,
            tag: (tag.0.into(), tag.1.into()),
            missing,
            malformed,
            terminated: None,
            wait_timeout: Duration::from_secs(300),
        }
    }

    /// Adds a terminated instance to check `InvalidState` on.
    pub fn with_terminated(mut self, id: InstanceId) -> Self {
        self.terminated = Some(id);
        self
    }

    /// Sets how long to wait for stops and starts.
    pub fn with_wait_timeout(mut self, timeout: Duration) -> Self {
        self.wait_timeout = timeout;
        self
    }

    /// The fixture for a [`MockProvider::fleet`](crate::MockProvider::fleet) of at least 5
    /// instances: `mock-0000` and `mock-0004` (running, tagged `snoozebot=idle`), `mock-9999`
    /// missing, and an EC2-style id the mock refuses as malformed.
    pub fn for_mock_fleet() -> Self {
        let id = |s: &str| InstanceId::new(s).unwrap_or_else(|e| panic!("{e}"));
        Fixture::new(
            vec![id("mock-0000"), id("mock-0004")],
            ("snoozebot", "idle"),
            id("mock-9999"),
            id("i-0123456789abcdef0"),
        )
        .with_wait_timeout(Duration::from_secs(600))
    }
}

/// The stack [`run_bare_and_in_the_middleware`] puts a provider in: the README's — tracing,
/// retries with the default policy, eight calls at once, 30 s per attempt.
pub fn middleware_stack() -> ProviderStack {
    ProviderStack::new()
        .tracing()
        .retry(RetryConfig::default())
        .concurrency_limit(8)
        .timeout(Duration::from_secs(30))
}

/// Runs the suite on `provider` bare, then inside [`middleware_stack`]: the two ways every
/// provider crate checks itself in process (the third, through the plugin transport, needs the
/// crate's own plugin binary and environment).
pub async fn run_bare_and_in_the_middleware(provider: Arc<dyn CloudProvider>, fixture: &Fixture) {
    run(provider.as_ref(), fixture).await;
    let wrapped = middleware_stack().wrap(provider);
    run(wrapped.as_ref(), fixture).await;
}

/// Runs every check in order.
pub async fn run(provider: &dyn CloudProvider, fixture: &Fixture) {
    describes_itself(provider).await;
    reports_running_instances(provider, fixture).await;
    missing_is_not_found(provider, fixture).await;
    malformed_is_invalid_argument(provider, fixture).await;
    unsupported_modes_are_refused(provider, fixture).await;
    dry_run_changes_nothing(provider, fixture).await;
    stop_then_start_is_idempotent(provider, fixture).await;
    list_filters_by_tag_state_and_name(provider, fixture).await;
    pages_cover_the_listing_once(provider, fixture).await;
    batch_keeps_order_and_isolates_failures(provider, fixture).await;
    waiters_return_fail_and_time_out(provider, fixture).await;
    terminated_is_invalid_state(provider, fixture).await;
}

fn kind_of<T: std::fmt::Debug>(result: &Result<T>) -> Option<ErrorKind> {
    result.as_ref().err().map(|error| error.kind())
}

/// The provider names itself and supports at least one stop mode.
pub async fn describes_itself(provider: &dyn CloudProvider) {
    let info = provider.info();
    assert!(
        !info.name.is_empty(),
        "describes_itself: empty provider name"
    );
    assert!(
        !info.capabilities.stop_modes.is_empty(),
        "describes_itself: {} supports no stop mode",
        info.name
    );
}

/// `get_instance` on a running instance reports it running, with its raw state.
pub async fn reports_running_instances(provider: &dyn CloudProvider, fixture: &Fixture) {
    for id in &fixture.running {
        let info = provider
            .get_instance(id)
            .await
            .unwrap_or_else(|e| panic!("reports_running_instances: get {id}: {e}"));
        assert_eq!(&info.id, id, "reports_running_instances: id changed");
        assert_eq!(
            info.state,
            InstanceState::Running,
            "reports_running_instances: {id} is {} ({})",
            info.state,
            info.raw_state
        );
        assert!(
            !info.raw_state.is_empty(),
            "reports_running_instances: {id} has no raw state"
        );
        assert!(
            !info.billing_stopped,
            "reports_running_instances: running {id} says billing stopped"
        );
        let (key, value) = &fixture.tag;
        assert_eq!(
            info.tags.get(key),
            Some(value),
            "reports_running_instances: {id} lacks tag {key}={value}"
        );
    }
}

/// Every single-instance operation on a missing id is `NotFound`.
pub async fn missing_is_not_found(provider: &dyn CloudProvider, fixture: &Fixture) {
    let id = &fixture.missing;
    let kinds = [
        ("get", kind_of(&provider.get_instance(id).await)),
        (
            "stop",
            kind_of(&provider.stop_instance(id, &StopOptions::default()).await),
        ),
        ("start", kind_of(&provider.start_instance(id).await)),
    ];
    for (operation, kind) in kinds {
        assert_eq!(
            kind,
            Some(ErrorKind::NotFound),
            "missing_is_not_found: {operation} {id}"
        );
    }
}

/// Every single-instance operation on a malformed id is `InvalidArgument`.
pub async fn malformed_is_invalid_argument(provider: &dyn CloudProvider, fixture: &Fixture) {
    let id = &fixture.malformed;
    let kinds = [
        ("get", kind_of(&provider.get_instance(id).await)),
        (
            "stop",
            kind_of(&provider.stop_instance(id, &StopOptions::default()).await),
        ),
        ("start", kind_of(&provider.start_instance(id).await)),
    ];
    for (operation, kind) in kinds {
        assert_eq!(
            kind,
            Some(ErrorKind::InvalidArgument),
            "malformed_is_invalid_argument: {operation} {id}"
        );
    }
}

async fn expect_state(
    provider: &dyn CloudProvider,
    id: &InstanceId,
    state: InstanceState,
    check: &str,
) {
    let info = provider
        .get_instance(id)
        .await
        .unwrap_or_else(|e| panic!("{check}: get {id}: {e}"));
    assert_eq!(
        info.state, state,
        "{check}: {id} is {} ({})",
        info.state, info.raw_state
    );
}

/// A stop mode outside the capabilities is `Unsupported` and changes nothing.
pub async fn unsupported_modes_are_refused(provider: &dyn CloudProvider, fixture: &Fixture) {
    let capabilities = provider.info().capabilities;
    let id = &fixture.running[0];
    for mode in StopMode::ALL {
        if capabilities.supports(mode) {
            continue;
        }
        let result = provider
            .stop_instance(id, &StopOptions::default().with_mode(mode))
            .await;
        assert_eq!(
            kind_of(&result),
            Some(ErrorKind::Unsupported),
            "unsupported_modes_are_refused: stop {id} with mode {mode}"
        );
    }
    expect_state(
        provider,
        id,
        InstanceState::Running,
        "unsupported_modes_are_refused",
    )
    .await;
}

/// A dry run succeeds and changes nothing where supported, and is `Unsupported` elsewhere.
pub async fn dry_run_changes_nothing(provider: &dyn CloudProvider, fixture: &Fixture) {
    let id = &fixture.running[0];
    let result = provider
        .stop_instance(id, &StopOptions::default().with_dry_run(true))
        .await;
    if provider.info().capabilities.dry_run {
        result.unwrap_or_else(|e| panic!("dry_run_changes_nothing: dry-run stop {id}: {e}"));
    } else {
        assert_eq!(
            kind_of(&result),
            Some(ErrorKind::Unsupported),
            "dry_run_changes_nothing: dry run without the capability"
        );
    }
    expect_state(
        provider,
        id,
        InstanceState::Running,
        "dry_run_changes_nothing",
    )
    .await;
}

/// Stop reaches `Stopped`, a second stop is a no-op; start reaches `Running`, a second start is a
/// no-op.
pub async fn stop_then_start_is_idempotent(provider: &dyn CloudProvider, fixture: &Fixture) {
    let check = "stop_then_start_is_idempotent";
    let id = &fixture.running[0];
    let change = provider
        .stop_instance(id, &StopOptions::default())
        .await
        .unwrap_or_else(|e| panic!("{check}: stop {id}: {e}"));
    assert_eq!(&change.id, id, "{check}: stop answered for another id");
    assert_eq!(
        change.previous,
        InstanceState::Running,
        "{check}: stop's previous state"
    );
    assert!(
        change.mode.is_some(),
        "{check}: stop did not say which mode it applied"
    );
    provider
        .wait_for_state(id, InstanceState::Stopped, fixture.wait_timeout)
        .await
        .unwrap_or_else(|e| panic!("{check}: waiting for {id} to stop: {e}"));

    let again = provider
        .stop_instance(id, &StopOptions::default())
        .await
        .unwrap_or_else(|e| panic!("{check}: second stop of {id}: {e}"));
    assert_eq!(
        (again.previous, again.current),
        (InstanceState::Stopped, InstanceState::Stopped),
        "{check}: a second stop must change nothing"
    );

    let change = provider
        .start_instance(id)
        .await
        .unwrap_or_else(|e| panic!("{check}: start {id}: {e}"));
    assert_eq!(
        change.previous,
        InstanceState::Stopped,
        "{check}: start's previous state"
    );
    assert_eq!(change.mode, None, "{check}: a start has no stop mode");
    provider
        .wait_for_state(id, InstanceState::Running, fixture.wait_timeout)
        .await
        .unwrap_or_else(|e| panic!("{check}: waiting for {id} to start: {e}"));

    let again = provider
        .start_instance(id)
        .await
        .unwrap_or_else(|e| panic!("{check}: second start of {id}: {e}"));
    assert_eq!(
        (again.previous, again.current),
        (InstanceState::Running, InstanceState::Running),
        "{check}: a second start must change nothing"
    );
}

/// Listing honours tag, state and name-prefix filters.
pub async fn list_filters_by_tag_state_and_name(provider: &dyn CloudProvider, fixture: &Fixture) {
    let check = "list_filters_by_tag_state_and_name";
    let (key, value) = &fixture.tag;
    let tagged = provider
        .list_instances(&InstanceFilter::new().with_tag(key, value))
        .await
        .unwrap_or_else(|e| panic!("{check}: list by tag: {e}"));
    for id in &fixture.running {
        assert!(
            tagged.iter().any(|info| &info.id == id),
            "{check}: {id} missing from the list tagged {key}={value}"
        );
    }
    for info in &tagged {
        assert_eq!(
            info.tags.get(key),
            Some(value),
            "{check}: {} lacks the tag",
            info.id
        );
    }

    let stopped = provider
        .list_instances(
            &InstanceFilter::new()
                .with_tag(key, value)
                .with_state(InstanceState::Stopped),
        )
        .await
        .unwrap_or_else(|e| panic!("{check}: list by tag and state: {e}"));
    for info in &stopped {
        assert_eq!(
            info.state,
            InstanceState::Stopped,
            "{check}: {} is not stopped",
            info.id
        );
        assert!(
            !fixture.running.contains(&info.id),
            "{check}: running {} listed as stopped",
            info.id
        );
    }

    let all = provider
        .list_instances(&InstanceFilter::new())
        .await
        .unwrap_or_else(|e| panic!("{check}: list everything: {e}"));
    assert!(
        all.len() >= tagged.len(),
        "{check}: a filter added instances"
    );

    let named = tagged.iter().find_map(|info| info.name.clone());
    if let Some(name) = named {
        let by_name = provider
            .list_instances(&InstanceFilter::new().with_name_prefix(name.clone()))
            .await
            .unwrap_or_else(|e| panic!("{check}: list by name prefix: {e}"));
        assert!(
            by_name
                .iter()
                .any(|info| info.name.as_deref() == Some(name.as_str())),
            "{check}: {name} missing from the list by its own name"
        );
        for info in &by_name {
            let listed = info.name.as_deref().unwrap_or_default();
            assert!(
                listed.starts_with(&name),
                "{check}: {listed} does not start with {name}"
            );
        }
    }
}

/// Reading the tagged instances page by page (pages of 2) gives each listed instance exactly
/// once, no page is larger than asked for, and the last page says so.
pub async fn pages_cover_the_listing_once(provider: &dyn CloudProvider, fixture: &Fixture) {
    let check = "pages_cover_the_listing_once";
    let (key, value) = &fixture.tag;
    let filter = InstanceFilter::new().with_tag(key, value);
    let mut listed: Vec<InstanceId> = provider
        .list_instances(&filter)
        .await
        .unwrap_or_else(|e| panic!("{check}: list: {e}"))
        .into_iter()
        .map(|info| info.id)
        .collect();
    let mut paged = Vec::new();
    let mut page = PageRequest::first(2);
    // A bound on the pages, so a provider whose token never ends fails instead of hanging.
    for _ in 0..=listed.len() + 2 {
        let answer = provider
            .list_instances_page(&filter, &page)
            .await
            .unwrap_or_else(|e| panic!("{check}: page {page:?}: {e}"));
        assert!(
            answer.instances.len() <= 2,
            "{check}: a page of {} for a page size of 2",
            answer.instances.len()
        );
        paged.extend(answer.instances.into_iter().map(|info| info.id));
        match answer.next_token {
            Some(token) => page = PageRequest::after(2, token),
            None => break,
        }
    }
    listed.sort();
    let mut sorted = paged.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(
        sorted.len(),
        paged.len(),
        "{check}: an instance came twice: {paged:?}"
    );
    assert_eq!(sorted, listed, "{check}: the pages are not the listing");
}

/// A batch with a missing id in the middle: one result per id, in order; the good ids succeed.
pub async fn batch_keeps_order_and_isolates_failures(
    provider: &dyn CloudProvider,
    fixture: &Fixture,
) {
    let check = "batch_keeps_order_and_isolates_failures";
    let ids = vec![
        fixture.running[0].clone(),
        fixture.missing.clone(),
        fixture.running[1].clone(),
    ];
    let assert_batch = |operation: &str, results: &[(InstanceId, Result<_>)]| {
        let answered: Vec<_> = results.iter().map(|(id, _)| id.clone()).collect();
        assert_eq!(
            answered, ids,
            "{check}: {operation} results are not one per id in order"
        );
        for (id, result) in results {
            if id == &fixture.missing {
                assert_eq!(
                    kind_of(result),
                    Some(ErrorKind::NotFound),
                    "{check}: {operation} {id}"
                );
            } else if let Err(e) = result {
                panic!("{check}: {operation} {id}: {e}");
            }
        }
    };

    let stopped = provider.stop_instances(&ids, &StopOptions::default()).await;
    assert_batch("stop", &stopped);
    for id in [&ids[0], &ids[2]] {
        provider
            .wait_for_state(id, InstanceState::Stopped, fixture.wait_timeout)
            .await
            .unwrap_or_else(|e| panic!("{check}: waiting for {id} to stop: {e}"));
    }
    let started = provider.start_instances(&ids).await;
    assert_batch("start", &started);
    for id in [&ids[0], &ids[2]] {
        provider
            .wait_for_state(id, InstanceState::Running, fixture.wait_timeout)
            .await
            .unwrap_or_else(|e| panic!("{check}: waiting for {id} to start: {e}"));
    }
    assert!(
        provider
            .stop_instances(&[], &StopOptions::default())
            .await
            .is_empty(),
        "{check}: an empty batch must give no results"
    );
}

/// Waiters return at once when the state is reached, pass on errors, and time out naming the
/// last state seen.
pub async fn waiters_return_fail_and_time_out(provider: &dyn CloudProvider, fixture: &Fixture) {
    let check = "waiters_return_fail_and_time_out";
    let id = &fixture.running[0];
    provider
        .wait_for_state(id, InstanceState::Running, Duration::ZERO)
        .await
        .unwrap_or_else(|e| panic!("{check}: waiting for the current state: {e}"));
    let missing = provider
        .wait_for_state(
            &fixture.missing,
            InstanceState::Running,
            fixture.wait_timeout,
        )
        .await;
    assert_eq!(
        kind_of(&missing),
        Some(ErrorKind::NotFound),
        "{check}: waiting on a missing id"
    );
    let timed_out = provider
        .wait_for_state(id, InstanceState::Stopped, Duration::from_millis(300))
        .await;
    let error = timed_out.expect_err("waiting for a state nobody asked for must time out");
    assert_eq!(error.kind(), ErrorKind::Timeout, "{check}: {error}");
    assert!(
        error.message().contains("running"),
        "{check}: the timeout must name the last state: {error}"
    );
}

/// A terminated instance refuses to start, and waiting for it to run fails at once.
pub async fn terminated_is_invalid_state(provider: &dyn CloudProvider, fixture: &Fixture) {
    let Some(id) = &fixture.terminated else {
        return;
    };
    let check = "terminated_is_invalid_state";
    assert_eq!(
        kind_of(&provider.start_instance(id).await),
        Some(ErrorKind::InvalidState),
        "{check}: start {id}"
    );
    let waited = provider
        .wait_for_state(id, InstanceState::Running, fixture.wait_timeout)
        .await;
    assert_eq!(
        kind_of(&waited),
        Some(ErrorKind::InvalidState),
        "{check}: wait for {id}"
    );
}
