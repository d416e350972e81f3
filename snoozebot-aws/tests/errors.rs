//! Every EC2 error the provider can meet, through the real SDK: a local stub answers with the
//! recorded EC2 error envelope, and the provider must map it to the right kind, keeping the
//! native code in the message. Also what moto cannot do: throttling, capacity, dispatch
//! failures, garbled answers, hibernation fallback.
#![allow(clippy::unwrap_used)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use snoozebot_core::{
    CloudProvider, ErrorKind, InstanceId, ProviderBuilder, RetryConfig, StopMode, StopOptions,
};
use support::{Reply, Stub, error_xml, fixture};

const ID: &str = "i-2ba64342";

async fn stop_fails_with(code: &str, status: u16, expected: ErrorKind) {
    let stub = Stub::start(vec![Reply {
        when: None,
        status,
        body: error_xml(code, &format!("native message for {code}")),
    }])
    .await;
    let err = stub
        .provider()
        .stop_instance(&InstanceId::new(ID).unwrap(), &StopOptions::default())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), expected, "{code}: {err}");
    assert!(
        err.message().contains(code),
        "the native code is lost: {err}"
    );
    assert!(
        err.message()
            .contains(&format!("native message for {code}")),
        "{err}"
    );
    assert_eq!(err.provider(), Some("aws"));
    assert_eq!(
        stub.request_count(),
        1,
        "{code}: the SDK retried on its own"
    );
}

macro_rules! mapping_tests {
    ($($test:ident: $code:literal, $status:literal => $kind:ident;)*) => {
        $(
            #[tokio::test]
            async fn $test() {
                stop_fails_with($code, $status, ErrorKind::$kind).await;
            }
        )*
    };
}

mapping_tests! {
    request_limit_exceeded_is_throttled: "RequestLimitExceeded", 503 => Throttled;
    throttling_is_throttled: "Throttling", 400 => Throttled;
    ec2_throttled_exception_is_throttled: "EC2ThrottledException", 400 => Throttled;
    instance_not_found_is_not_found: "InvalidInstanceID.NotFound", 400 => NotFound;
    malformed_instance_id_is_invalid_argument: "InvalidInstanceID.Malformed", 400 => InvalidArgument;
    incorrect_instance_state_is_invalid_state: "IncorrectInstanceState", 400 => InvalidState;
    stop_protection_is_invalid_state: "OperationNotPermitted", 400 => InvalidState;
    unauthorized_operation_is_permission_denied: "UnauthorizedOperation", 403 => PermissionDenied;
    auth_failure_is_unauthenticated: "AuthFailure", 401 => Unauthenticated;
    expired_token_is_unauthenticated: "ExpiredToken", 400 => Unauthenticated;
    request_expired_is_unauthenticated: "RequestExpired", 400 => Unauthenticated;
    insufficient_capacity_is_unavailable: "InsufficientInstanceCapacity", 500 => Unavailable;
    internal_error_is_unavailable: "InternalError", 500 => Unavailable;
    unavailable_is_unavailable: "Unavailable", 503 => Unavailable;
    unsupported_hibernation_is_unsupported: "UnsupportedHibernationConfiguration", 400 => Unsupported;
    unsupported_operation_is_unsupported: "UnsupportedOperation", 400 => Unsupported;
    invalid_parameter_value_is_invalid_argument: "InvalidParameterValue", 400 => InvalidArgument;
    unknown_client_code_falls_back_on_status: "SomethingNew", 400 => InvalidArgument;
    unknown_server_code_falls_back_on_status: "SomethingNew", 503 => Unavailable;
}

#[tokio::test]
async fn the_recorded_throttling_and_malformed_answers_map() {
    for (file, status, kind) in [
        ("error-throttling.xml", 503, ErrorKind::Throttled),
        (
            "error-invalid-instance-id-malformed.xml",
            400,
            ErrorKind::InvalidArgument,
        ),
        ("error-invalid-instance-id.xml", 400, ErrorKind::NotFound),
    ] {
        let stub = Stub::start(vec![Reply {
            when: None,
            status,
            body: fixture(file),
        }])
        .await;
        let err = stub
            .provider()
            .get_instance(&InstanceId::new(ID).unwrap())
            .await
            .unwrap_err();
        assert_eq!(err.kind(), kind, "{file}: {err}");
    }
}

#[tokio::test]
async fn an_answer_that_is_not_ec2s_names_its_status_not_a_missing_instance() {
    for (status, body, kind) in [
        (404, "", ErrorKind::Config),
        (404, "<html>Not Found</html>", ErrorKind::Config),
        (503, "", ErrorKind::Unavailable),
    ] {
        let stub = Stub::start(vec![Reply {
            when: None,
            status,
            body: body.into(),
        }])
        .await;
        let err = stub
            .provider()
            .get_instance(&InstanceId::new(ID).unwrap())
            .await
            .unwrap_err();
        assert_eq!(err.kind(), kind, "{status} {body:?}: {err}");
        assert!(
            err.message().contains(&format!("HTTP {status}")),
            "{status}: {err}"
        );
        assert!(!err.message().contains("no message"), "{err}");
    }
}

#[tokio::test]
async fn a_refused_connection_is_unavailable() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let provider = snoozebot_aws::AwsProviderBuilder::new()
        .region("us-east-1")
        .endpoint(format!("http://127.0.0.1:{port}"))
        .static_credentials("testing", "testing")
        .build()
        .unwrap();
    let err = provider
        .get_instance(&InstanceId::new(ID).unwrap())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
}

#[tokio::test(start_paused = true)]
async fn an_endpoint_that_never_answers_times_out_in_the_middleware() {
    let stub = Stub::start(vec![Reply {
        when: None,
        status: 0,
        body: String::new(),
    }])
    .await;
    let provider = ProviderBuilder::new(Arc::new(stub.provider()))
        .timeout(Duration::from_secs(5))
        .build();
    let err = provider
        .get_instance(&InstanceId::new(ID).unwrap())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
}

#[tokio::test]
async fn a_garbled_answer_is_unavailable() {
    let stub = Stub::start(vec![Reply {
        when: None,
        status: 502,
        body: "<html><body>Bad Gateway</body></html>".into(),
    }])
    .await;
    let err = stub
        .provider()
        .get_instance(&InstanceId::new(ID).unwrap())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
}

#[tokio::test]
async fn a_malformed_id_never_reaches_ec2() {
    let stub = Stub::start(vec![]).await;
    let provider = stub.provider();
    for id in ["i-xyz", "web-1", "i-0123456789ABCDEF0"] {
        let id = InstanceId::new(id).unwrap();
        assert_eq!(
            provider.get_instance(&id).await.unwrap_err().kind(),
            ErrorKind::InvalidArgument
        );
        assert_eq!(
            provider
                .stop_instance(&id, &StopOptions::default())
                .await
                .unwrap_err()
                .kind(),
            ErrorKind::InvalidArgument
        );
    }
    assert_eq!(stub.request_count(), 0);
}

#[tokio::test]
async fn suspend_and_deallocate_are_unsupported_without_a_call() {
    let stub = Stub::start(vec![]).await;
    for mode in [StopMode::Suspend, StopMode::Deallocate] {
        let err = stub
            .provider()
            .stop_instance(
                &InstanceId::new(ID).unwrap(),
                &StopOptions::default().with_mode(mode),
            )
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unsupported);
    }
    assert_eq!(stub.request_count(), 0);
}

#[tokio::test]
async fn throttling_is_retried_by_the_middleware_not_the_sdk() {
    let stub = Stub::start(vec![Reply {
        when: None,
        status: 503,
        body: fixture("error-throttling.xml"),
    }])
    .await;
    let provider = ProviderBuilder::new(Arc::new(stub.provider()))
        .retry(
            RetryConfig::default()
                .with_max_attempts(3)
                .with_backoff(Duration::from_millis(1), Duration::from_millis(5)),
        )
        .build();
    let err = provider
        .get_instance(&InstanceId::new(ID).unwrap())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Throttled);
    // Exactly the middleware's three attempts: the SDK's own retries are off.
    assert_eq!(stub.request_count(), 3);
}

#[tokio::test]
async fn hibernation_falls_back_to_stop_when_allowed_and_says_so() {
    let stub = Stub::start(vec![
        Reply {
            when: Some("Hibernate=true"),
            status: 400,
            body: error_xml(
                "UnsupportedHibernationConfiguration",
                "The instance i-2ba64342 does not have hibernation configured.",
            ),
        },
        Reply {
            when: Some("Action=StopInstances"),
            status: 200,
            body: fixture("stop-instances.xml"),
        },
    ])
    .await;
    let provider = stub.provider();
    let id = InstanceId::new(ID).unwrap();
    let hibernate = StopOptions::default().with_mode(StopMode::Hibernate);

    let err = provider.stop_instance(&id, &hibernate).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unsupported);

    let change = provider
        .stop_instance(&id, &hibernate.clone().with_allow_fallback(true))
        .await
        .unwrap();
    assert_eq!(
        change.mode,
        Some(StopMode::Stop),
        "the result must say hibernation was not applied"
    );
    assert_eq!(change.current.as_str(), "stopping");
    let requests = stub.requests.lock().unwrap().clone();
    assert!(
        requests.last().unwrap().contains("Hibernate=false"),
        "{requests:?}"
    );
}
