//! Compute Engine errors as Snoozebot errors: the Google error envelope (HTTP errors) and the
//! `error` of a finished zone operation, mapped to an [`ErrorKind`] with the native reason kept
//! in the message.

use google_cloud_compute_v1::model::Operation;
use serde_json::Value;
use snoozebot_core::{Error, ErrorKind};

use crate::PROVIDER_NAME;

/// Normalizes a reason for comparison: `RESOURCE_NOT_READY` (operation errors) and
/// `resourceNotReady` (HTTP error envelopes) are the same reason.
fn normalized(reason: &str) -> String {
    reason
        .chars()
        .filter(|c| *c != '_')
        .flat_map(char::to_lowercase)
        .collect()
}

/// The kind for a GCE error `reason` (envelope `errors[].reason` or operation `errors[].code`),
/// falling back to the HTTP status for reasons not listed.
///
/// | reasons | kind |
/// |---|---|
/// | `notFound`, `resourceNotFound` | `NotFound` |
/// | `invalid`, `invalidParameter`, `badRequest`, `required`, `invalidArgument` | `InvalidArgument` |
/// | `resourceNotReady`, `resourceInUseByAnotherResource`, `conflict`, `alreadyExists`, `failedPrecondition`, `conditionNotMet`, `unsupportedOperation` on a wrong state | `InvalidState` |
/// | `forbidden`, `insufficientPermissions`, `accessNotConfigured`, `iamPermissionDenied` | `PermissionDenied` |
/// | `authError`, `unauthorized`, `invalidCredentials` | `Unauthenticated` |
/// | `rateLimitExceeded`, `userRateLimitExceeded`, `quotaExceeded` | `Throttled` |
/// | `backendError`, `internalError`, `serviceUnavailable`, `zoneResourcePoolExhausted` | `Unavailable` |
/// | anything else | by HTTP status, as [`ErrorKind::from_http_status`] |
pub(crate) fn kind_for(reason: Option<&str>, http_status: Option<u16>) -> ErrorKind {
    // Reasons that say more than the status (a 403 quota error is throttling) come first.
    let by_reason = reason
        .map(normalized)
        .and_then(|reason| match reason.as_str() {
            "notfound" | "resourcenotfound" => Some(ErrorKind::NotFound),
            "invalid" | "invalidparameter" | "badrequest" | "required" | "invalidargument" => {
                Some(ErrorKind::InvalidArgument)
            }
            "resourcenotready"
            | "resourceinusebyanotherresource"
            | "conflict"
            | "alreadyexists"
            | "failedprecondition"
            | "conditionnotmet" => Some(ErrorKind::InvalidState),
            "forbidden"
            | "insufficientpermissions"
            | "accessnotconfigured"
            | "iampermissiondenied" => Some(ErrorKind::PermissionDenied),
            "autherror" | "unauthorized" | "invalidcredentials" => Some(ErrorKind::Unauthenticated),
            "ratelimitexceeded" | "userratelimitexceeded" | "quotaexceeded" => {
                Some(ErrorKind::Throttled)
            }
            "backenderror"
            | "internalerror"
            | "serviceunavailable"
            | "zoneresourcepoolexhausted" => Some(ErrorKind::Unavailable),
            _ => None,
        });
    by_reason
        .unwrap_or_else(|| http_status.map_or(ErrorKind::Internal, ErrorKind::from_http_status))
}

/// The reason a GCE error message states, for clients that keep only the message: quota and
/// rate-limit messages (`Quota exceeded for ...`, `Rate Limit Exceeded`), `... is not ready`,
/// and reasons named verbatim (`rateLimitExceeded`).
pub(crate) fn reason_in(message: &str) -> Option<&'static str> {
    let text = message.to_ascii_lowercase();
    let compact: String = text.chars().filter(|c| c.is_ascii_alphanumeric()).collect();
    if compact.contains("ratelimitexceeded")
        || compact.contains("quotaexceeded")
        || text.contains("quota")
    {
        Some("rateLimitExceeded")
    } else if compact.contains("resourcenotready") || text.contains("is not ready") {
        Some("resourceNotReady")
    } else if compact.contains("resourceinusebyanotherresource") {
        Some("resourceInUseByAnotherResource")
    } else {
        None
    }
}

/// The first error of a Google error envelope or of an operation's `error`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ErrorDetail {
    /// The reason (`notFound`) or operation error code (`RESOURCE_NOT_READY`).
    pub reason: Option<String>,
    /// The message.
    pub message: String,
    /// The HTTP status the envelope or operation carries.
    pub http_status: Option<u16>,
}

impl ErrorDetail {
    /// Reads `{"error": {"code", "message", "errors": [{"reason", "message"}]}}`.
    pub fn from_envelope(body: &[u8]) -> Option<Self> {
        let value: Value = serde_json::from_slice(body).ok()?;
        let error = value.get("error")?;
        let first = error.get("errors").and_then(|errors| errors.get(0));
        Some(ErrorDetail {
            reason: first
                .and_then(|e| e.get("reason"))
                .or_else(|| error.get("status"))
                .and_then(Value::as_str)
                .map(str::to_owned),
            message: error
                .get("message")
                .or_else(|| first.and_then(|e| e.get("message")))
                .and_then(Value::as_str)
                .unwrap_or("no message")
                .to_owned(),
            http_status: error
                .get("code")
                .and_then(Value::as_u64)
                .and_then(|code| u16::try_from(code).ok()),
        })
    }

    #[cfg(test)]
    /// Reads a finished operation's `error.errors[0]` and `httpErrorStatusCode`; `None` when
    /// the operation succeeded.
    pub fn from_operation(operation: &Value) -> Option<Self> {
        let first = operation.get("error")?.get("errors")?.get(0)?;
        Some(ErrorDetail {
            reason: first.get("code").and_then(Value::as_str).map(str::to_owned),
            message: first
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("the operation failed")
                .to_owned(),
            http_status: operation
                .get("httpErrorStatusCode")
                .and_then(Value::as_u64)
                .and_then(|code| u16::try_from(code).ok()),
        })
    }

    /// The Snoozebot error, `operation` naming the call, the reason kept in the message.
    pub fn into_error(self, operation: &str) -> Error {
        let kind = kind_for(self.reason.as_deref(), self.http_status);
        let reason = self.reason.as_deref().unwrap_or("no reason");
        Error::new(kind, format!("{operation}: {reason}: {}", self.message))
            .with_provider(crate::PROVIDER_NAME)
    }
}

pub(crate) fn client_error(operation: &str, error: google_cloud_compute_v1::Error) -> Error {
    let retry_after = error
        .http_headers()
        .and_then(|headers| headers.get("retry-after"))
        .and_then(|value| value.to_str().ok())
        .and_then(snoozebot_core::parse_retry_after);
    let mapped = if let Some(detail) = error
        .http_payload()
        .and_then(|body| ErrorDetail::from_envelope(body))
    {
        // An answer the client could not read as a status: the raw Google envelope.
        let detail = ErrorDetail {
            http_status: detail.http_status.or(error.http_status_code()),
            ..detail
        };
        detail.into_error(operation)
    } else if let Some(status) = error.status() {
        // The client keeps the envelope's message and the HTTP status, not `errors[].reason`;
        // the reason is read back from the message where GCE states it.
        let message = status.message.clone();
        let kind =
            crate::error::kind_for(crate::error::reason_in(&message), error.http_status_code());
        Error::new(
            kind,
            format!(
                "{operation}: HTTP {}: {message}",
                error.http_status_code().unwrap_or(0)
            ),
        )
        .with_provider(PROVIDER_NAME)
    } else {
        let kind = if error.is_timeout() {
            ErrorKind::Timeout
        } else if error.is_authentication() {
            ErrorKind::Unauthenticated
        } else if error.is_connect() || error.is_io() || error.is_transport() {
            ErrorKind::Unavailable
        } else {
            crate::error::kind_for(None, error.http_status_code())
        };
        Error::new(kind, format!("{operation}: {error}")).with_provider(PROVIDER_NAME)
    };
    let mapped = match retry_after {
        Some(after) => mapped.with_retry_after(after),
        None => mapped,
    };
    mapped.with_source(error)
}

pub(crate) fn operation_error(operation: &str, op: &Operation) -> Option<Error> {
    let first = op.error.as_ref()?.errors.first()?;
    let detail = ErrorDetail {
        reason: first.code.clone(),
        message: first
            .message
            .clone()
            .unwrap_or_else(|| "the operation failed".to_owned()),
        http_status: op
            .http_error_status_code
            .and_then(|code| u16::try_from(code).ok()),
    };
    Some(detail.into_error(operation))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        std::fs::read(
            std::path::Path::new(
                &std::env::var("CARGO_MANIFEST_DIR")
                    .unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_owned()),
            )
            .join("tests/fixtures/gce")
            .join(name),
        )
        .unwrap()
    }

    #[test]
    fn the_recorded_404_envelope_is_not_found_with_its_reason() {
        let detail = ErrorDetail::from_envelope(&fixture("error-404.json")).unwrap();
        assert_eq!(detail.reason.as_deref(), Some("notFound"));
        assert_eq!(detail.http_status, Some(404));
        let error = detail.into_error("instances.get");
        assert_eq!(error.kind(), ErrorKind::NotFound);
        assert!(
            error.message().starts_with("instances.get: notFound: "),
            "{error}"
        );
    }

    #[test]
    fn the_recorded_failed_operation_is_invalid_state() {
        let operation: Value =
            serde_json::from_slice(&fixture("operation-done-error.json")).unwrap();
        let detail = ErrorDetail::from_operation(&operation).unwrap();
        assert_eq!(detail.reason.as_deref(), Some("RESOURCE_NOT_READY"));
        let error = detail.into_error("instances.stop");
        assert_eq!(error.kind(), ErrorKind::InvalidState);
        assert!(error.message().contains("RESOURCE_NOT_READY"), "{error}");
        assert!(ErrorDetail::from_operation(&serde_json::json!({"status": "DONE"})).is_none());
    }

    #[test]
    fn reasons_are_read_back_from_messages() {
        assert_eq!(
            reason_in("Quota exceeded for quota metric 'Queries'"),
            Some("rateLimitExceeded")
        );
        assert_eq!(reason_in("Rate Limit Exceeded"), Some("rateLimitExceeded"));
        assert_eq!(
            reason_in("The resource 'projects/p/zones/z/instances/i' is not ready"),
            Some("resourceNotReady")
        );
        assert_eq!(reason_in("The resource was not found"), None);
    }

    #[test]
    fn each_row_of_the_table_maps() {
        for (reason, status, kind) in [
            ("notFound", 404, ErrorKind::NotFound),
            ("invalid", 400, ErrorKind::InvalidArgument),
            ("resourceNotReady", 400, ErrorKind::InvalidState),
            ("RESOURCE_NOT_READY", 400, ErrorKind::InvalidState),
            ("conflict", 409, ErrorKind::InvalidState),
            ("forbidden", 403, ErrorKind::PermissionDenied),
            ("insufficientPermissions", 403, ErrorKind::PermissionDenied),
            ("authError", 401, ErrorKind::Unauthenticated),
            ("rateLimitExceeded", 429, ErrorKind::Throttled),
            ("quotaExceeded", 403, ErrorKind::Throttled),
            ("backendError", 503, ErrorKind::Unavailable),
            ("ZONE_RESOURCE_POOL_EXHAUSTED", 503, ErrorKind::Unavailable),
        ] {
            assert_eq!(kind_for(Some(reason), Some(status)), kind, "{reason}");
        }
        for (status, kind) in [
            (400, ErrorKind::InvalidArgument),
            (401, ErrorKind::Unauthenticated),
            (403, ErrorKind::PermissionDenied),
            (404, ErrorKind::NotFound),
            (409, ErrorKind::InvalidState),
            (429, ErrorKind::Throttled),
            (502, ErrorKind::Unavailable),
            (302, ErrorKind::Internal),
        ] {
            assert_eq!(
                kind_for(Some("somethingNew"), Some(status)),
                kind,
                "{status}"
            );
        }
    }
}
