//! ARM errors as Snoozebot errors: the ARM error body (`{"error": {"code", "message",
//! "details"}}`) and the HTTP status mapped to an [`ErrorKind`], the ARM code kept in the
//! message, `Retry-After` kept as `retry_after`.

use std::time::Duration;

use serde_json::Value;
use snoozebot_core::{Error, ErrorKind};

/// The kind for an ARM error `code` (or a detail's code) and HTTP status.
///
/// | codes | kind |
/// |---|---|
/// | HTTP 429, `SubscriptionRequestsThrottled`, `ResourceRequestsThrottled`, `TooManyRequests` | `Throttled` (429 wins over the code: Compute answers throttling with `OperationNotAllowed` + a `TooManyRequests` detail) |
/// | `ResourceNotFound`, `ResourceGroupNotFound`, `NotFound`, `ParentResourceNotFound` | `NotFound` |
/// | `InvalidParameter`, `BadRequest`, `InvalidRequestContent`, `InvalidResourceName`, `InvalidApiVersionParameter`, `MissingSubscription` | `InvalidArgument` |
/// | `OperationNotAllowed`, `Conflict`, `PropertyChangeNotAllowed` | `InvalidState` |
/// | `AuthorizationFailed`, `LinkedAuthorizationFailed`, `DisallowedOperation` | `PermissionDenied` |
/// | `InvalidAuthenticationToken`, `InvalidAuthenticationTokenTenant`, `ExpiredAuthenticationToken`, `AuthenticationFailed` | `Unauthenticated` |
/// | `InternalServerError`, `InternalExecutionError`, `ServiceUnavailable`, `AllocationFailed`, `ZonalAllocationFailed`, `OverconstrainedAllocationRequest` | `Unavailable` |
/// | anything else | by HTTP status, as [`ErrorKind::from_http_status`] |
pub(crate) fn kind_for(code: &str, http_status: u16) -> ErrorKind {
    if http_status == 429 {
        return ErrorKind::Throttled;
    }
    match code {
        "SubscriptionRequestsThrottled" | "ResourceRequestsThrottled" | "TooManyRequests" => {
            ErrorKind::Throttled
        }
        "ResourceNotFound" | "ResourceGroupNotFound" | "NotFound" | "ParentResourceNotFound" => {
            ErrorKind::NotFound
        }
        "InvalidParameter"
        | "BadRequest"
        | "InvalidRequestContent"
        | "InvalidResourceName"
        | "InvalidApiVersionParameter"
        | "MissingSubscription" => ErrorKind::InvalidArgument,
        "OperationNotAllowed" | "Conflict" | "PropertyChangeNotAllowed" => ErrorKind::InvalidState,
        "AuthorizationFailed" | "LinkedAuthorizationFailed" | "DisallowedOperation" => {
            ErrorKind::PermissionDenied
        }
        "InvalidAuthenticationToken"
        | "InvalidAuthenticationTokenTenant"
        | "ExpiredAuthenticationToken"
        | "AuthenticationFailed" => ErrorKind::Unauthenticated,
        "InternalServerError"
        | "InternalExecutionError"
        | "ServiceUnavailable"
        | "AllocationFailed"
        | "ZonalAllocationFailed"
        | "OverconstrainedAllocationRequest" => ErrorKind::Unavailable,
        _ => ErrorKind::from_http_status(http_status),
    }
}

/// The pause an ARM throttling message names (`Please try again after '1' seconds`), for
/// answers without a retry header.
fn retry_after_in_message(message: &str) -> Option<Duration> {
    let after = message.split("try again after '").nth(1)?;
    let seconds: u64 = after.split('\'').next()?.trim().parse().ok()?;
    Some(Duration::from_secs(seconds))
}

/// Maps an ARM error answer: `body` as returned, `status` its HTTP status, `retry_after` what its
/// headers asked for (see `client::retry_after`). `operation` names the call in the message.
pub(crate) fn arm_error(
    operation: &str,
    status: u16,
    body: &[u8],
    retry_after: Option<Duration>,
) -> Error {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let error = parsed.as_ref().and_then(|value| value.get("error"));
    let code = error
        .and_then(|error| error.get("code"))
        .and_then(Value::as_str)
        .unwrap_or("Unknown");
    let message = error
        .and_then(|error| error.get("message"))
        .and_then(Value::as_str)
        .map(str::to_owned)
        .unwrap_or_else(|| String::from_utf8_lossy(body).chars().take(200).collect());
    // A detail can say more than the top code (TooManyRequests under OperationNotAllowed).
    let detail_code = error
        .and_then(|error| error.get("details"))
        .and_then(Value::as_array)
        .and_then(|details| details.first())
        .and_then(|detail| detail.get("code"))
        .and_then(Value::as_str);
    let kind = match detail_code.map(|detail| kind_for(detail, status)) {
        Some(ErrorKind::Throttled) => ErrorKind::Throttled,
        _ => kind_for(code, status),
    };
    let mut mapped = Error::new(
        kind,
        format!("{operation}: HTTP {status} {code}: {message}"),
    )
    .with_provider(crate::PROVIDER_NAME);
    if kind == ErrorKind::Throttled
        && let Some(after) = retry_after.or_else(|| retry_after_in_message(&message))
    {
        mapped = mapped.with_retry_after(after);
    }
    mapped
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Value {
        let path = std::path::Path::new(
            &std::env::var("CARGO_MANIFEST_DIR")
                .unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_owned()),
        )
        .join("tests/fixtures/azure")
        .join(name);
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    #[test]
    fn the_recorded_not_found_is_not_found() {
        let body = fixture("error-not-found.json").to_string();
        let error = arm_error("virtualMachines.get", 404, body.as_bytes(), None);
        assert_eq!(error.kind(), ErrorKind::NotFound);
        assert!(error.message().contains("ResourceNotFound"), "{error}");
    }

    #[test]
    fn the_recorded_compute_throttling_is_throttled_with_its_retry_after() {
        let exchange = fixture("error-throttled-429.json");
        let body = exchange["body"].to_string();
        let header = exchange["headers"]["Retry-After"].as_str();
        let error = arm_error(
            "virtualMachines.get",
            429,
            body.as_bytes(),
            header.and_then(snoozebot_core::parse_retry_after),
        );
        assert_eq!(error.kind(), ErrorKind::Throttled);
        assert_eq!(error.retry_after(), Some(Duration::from_secs(1200)));
        assert!(error.message().contains("OperationNotAllowed"), "{error}");
        // The same body without the 429 still reads as throttling, from its detail.
        let error = arm_error("virtualMachines.get", 409, body.as_bytes(), None);
        assert_eq!(error.kind(), ErrorKind::Throttled);
    }

    #[test]
    fn the_recorded_arm_throttling_names_its_pause_in_the_message() {
        let body = fixture("error-throttled-429-arm.json").to_string();
        let error = arm_error("virtualMachines.list", 429, body.as_bytes(), None);
        assert_eq!(error.kind(), ErrorKind::Throttled);
        assert_eq!(error.retry_after(), Some(Duration::from_secs(1)));
    }

    #[test]
    fn each_row_of_the_table_maps() {
        for (code, status, kind) in [
            ("ResourceNotFound", 404, ErrorKind::NotFound),
            ("ResourceGroupNotFound", 404, ErrorKind::NotFound),
            ("InvalidParameter", 400, ErrorKind::InvalidArgument),
            ("BadRequest", 400, ErrorKind::InvalidArgument),
            ("OperationNotAllowed", 409, ErrorKind::InvalidState),
            ("Conflict", 409, ErrorKind::InvalidState),
            ("AuthorizationFailed", 403, ErrorKind::PermissionDenied),
            (
                "InvalidAuthenticationToken",
                401,
                ErrorKind::Unauthenticated,
            ),
            (
                "ExpiredAuthenticationToken",
                401,
                ErrorKind::Unauthenticated,
            ),
            ("SubscriptionRequestsThrottled", 429, ErrorKind::Throttled),
            ("TooManyRequests", 429, ErrorKind::Throttled),
            ("InternalServerError", 500, ErrorKind::Unavailable),
            ("AllocationFailed", 409, ErrorKind::Unavailable),
            ("SomethingNew", 503, ErrorKind::Unavailable),
            ("SomethingNew", 401, ErrorKind::Unauthenticated),
            ("SomethingNew", 302, ErrorKind::Internal),
        ] {
            let body =
                serde_json::json!({"error": {"code": code, "message": format!("native {code}")}})
                    .to_string();
            let error = arm_error("op", status, body.as_bytes(), None);
            assert_eq!(error.kind(), kind, "{code} {status}");
            assert!(error.message().contains(code), "{error}");
        }
        let garbled = arm_error("op", 502, b"<html>Bad Gateway</html>", None);
        assert_eq!(garbled.kind(), ErrorKind::Unavailable);
    }
}
