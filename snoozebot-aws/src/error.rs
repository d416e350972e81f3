//! EC2 errors as Snoozebot errors: every code the provider can meet mapped to an
//! [`ErrorKind`], the native code kept in the message, the SDK error kept as the source.

use aws_credential_types::provider::error::{CredentialsError, TokenError};
use aws_sdk_ec2::error::{ProvideErrorMetadata, SdkError};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use snoozebot_core::{Error, ErrorKind};

/// The kind for an EC2 error code; `status` (the HTTP status) decides for codes not listed.
///
/// | codes | kind | why |
/// |---|---|---|
/// | `RequestLimitExceeded`, `Throttling`, `ThrottlingException`, `EC2ThrottledException`, `RequestThrottled`, `RequestThrottledException`, `SlowDown` | `Throttled` | the API's rate limits |
/// | `InvalidInstanceID.NotFound` | `NotFound` | |
/// | `InvalidInstanceID.Malformed`, `InvalidInstanceID`, `InvalidParameterValue`, `InvalidParameterCombination`, `InvalidParameter`, `MissingParameter`, `ValidationError` | `InvalidArgument` | |
/// | `IncorrectInstanceState`, `IncorrectState` | `InvalidState` | e.g. starting a terminated instance |
/// | `OperationNotPermitted` | `InvalidState` | stop protection (`disableApiStop`) is a setting of the instance, not of the caller's permissions: the fix is to change the instance |
/// | `UnauthorizedOperation`, `OptInRequired`, `Blocked` | `PermissionDenied` | valid credentials, missing IAM permission or account opt-in |
/// | `AuthFailure`, `ExpiredToken`, `RequestExpired`, `InvalidClientTokenId`, `SignatureDoesNotMatch`, `MissingAuthenticationToken`, `UnrecognizedClientException` | `Unauthenticated` | bad, expired or missing credentials |
/// | `InsufficientInstanceCapacity`, `InternalError`, `InternalFailure`, `Unavailable`, `ServiceUnavailable` | `Unavailable` | AWS-side, transient |
/// | `UnsupportedOperation`, `UnsupportedHibernationConfiguration`, `UnsupportedInstanceType` | `Unsupported` | e.g. hibernating an instance set up without hibernation |
/// | anything else | by HTTP status, as [`ErrorKind::from_http_status`] | |
pub(crate) fn kind_for_code(code: &str, status: u16) -> ErrorKind {
    match code {
        "RequestLimitExceeded"
        | "Throttling"
        | "ThrottlingException"
        | "EC2ThrottledException"
        | "RequestThrottled"
        | "RequestThrottledException"
        | "SlowDown" => ErrorKind::Throttled,
        "InvalidInstanceID.NotFound" => ErrorKind::NotFound,
        "InvalidInstanceID.Malformed"
        | "InvalidInstanceID"
        | "InvalidParameterValue"
        | "InvalidParameterCombination"
        | "InvalidParameter"
        | "MissingParameter"
        | "ValidationError" => ErrorKind::InvalidArgument,
        "IncorrectInstanceState" | "IncorrectState" | "OperationNotPermitted" => {
            ErrorKind::InvalidState
        }
        "UnauthorizedOperation" | "OptInRequired" | "Blocked" => ErrorKind::PermissionDenied,
        "AuthFailure"
        | "ExpiredToken"
        | "RequestExpired"
        | "InvalidClientTokenId"
        | "SignatureDoesNotMatch"
        | "MissingAuthenticationToken"
        | "UnrecognizedClientException" => ErrorKind::Unauthenticated,
        "InsufficientInstanceCapacity"
        | "InternalError"
        | "InternalFailure"
        | "Unavailable"
        | "ServiceUnavailable" => ErrorKind::Unavailable,
        "UnsupportedOperation"
        | "UnsupportedHibernationConfiguration"
        | "UnsupportedInstanceType" => ErrorKind::Unsupported,
        _ => ErrorKind::from_http_status(status),
    }
}

/// The EC2 error code of a failed call, if EC2 answered with one.
pub(crate) fn code_of<E: ProvideErrorMetadata>(
    error: &SdkError<E, HttpResponse>,
) -> Option<String> {
    match error {
        SdkError::ServiceError(context) => context.err().code().map(str::to_owned),
        _ => None,
    }
}

/// Maps a failed SDK call; `operation` names it in the message (`StopInstances`).
///
/// EC2's own answers map by their code ([`kind_for_code`]). Everything else maps by the SDK's
/// types, never by the words of a message: a credentials or token provider's error anywhere in
/// the chain is [`ErrorKind::Unauthenticated`] (or [`ErrorKind::Config`] for a profile that
/// cannot work), since retrying cannot make credentials appear; then the SDK error's own kind.
pub(crate) fn map_sdk_error<E>(operation: &str, error: SdkError<E, HttpResponse>) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let credentials = match &error {
        SdkError::ServiceError(_) => None,
        _ => credentials_failure(&error),
    };
    let (kind, message) = match (&error, credentials) {
        (_, Some(kind)) => (
            kind,
            format!(
                "{operation}: no usable AWS credentials: {}",
                describe(&error)
            ),
        ),
        (SdkError::ServiceError(context), None) => {
            let status = context.raw().status().as_u16();
            match context.err().code() {
                Some(code) => {
                    let detail = context.err().message().unwrap_or("no message");
                    (
                        kind_for_code(code, status),
                        format!("{operation}: {code}: {detail}"),
                    )
                }
                // Not an EC2 answer at all: a wrong endpoint, a proxy, a load balancer.
                None => (
                    if status == 404 {
                        ErrorKind::Config
                    } else {
                        ErrorKind::from_http_status(status)
                    },
                    format!(
                        "{operation}: HTTP {status} without an EC2 error code: is the endpoint an EC2 API?"
                    ),
                ),
            }
        }
        (SdkError::TimeoutError(_), None) => (
            ErrorKind::Timeout,
            format!("{operation}: the call timed out"),
        ),
        (SdkError::DispatchFailure(failure), None) => {
            let kind = if failure.is_timeout() {
                ErrorKind::Timeout
            } else if failure.is_user() {
                ErrorKind::Config
            } else {
                ErrorKind::Unavailable
            };
            (
                kind,
                format!(
                    "{operation}: the request could not be sent: {}",
                    describe(&error)
                ),
            )
        }
        (SdkError::ResponseError(_), None) => (
            ErrorKind::Unavailable,
            format!(
                "{operation}: the answer could not be read: {}",
                describe(&error)
            ),
        ),
        (SdkError::ConstructionFailure(_), None) => (
            ErrorKind::Config,
            format!(
                "{operation}: the request could not be built: {}",
                describe(&error)
            ),
        ),
        _ => (
            ErrorKind::Internal,
            format!("{operation}: {}", describe(&error)),
        ),
    };
    Error::new(kind, message)
        .with_provider(crate::PROVIDER_NAME)
        .with_source(error)
}

/// A credentials provider's own error, as [`map_sdk_error`] maps it inside a call.
pub(crate) fn map_credentials_error(error: CredentialsError) -> Error {
    let kind = credentials_failure(&error).unwrap_or(ErrorKind::Unauthenticated);
    Error::new(
        kind,
        format!("no usable AWS credentials: {}", describe(&error)),
    )
    .with_provider(crate::PROVIDER_NAME)
    .with_source(error)
}

/// The kind for a credentials or token provider's error found in `error`'s chain, if any.
fn credentials_failure(error: &(dyn std::error::Error + 'static)) -> Option<ErrorKind> {
    std::iter::successors(Some(error), |error| error.source()).find_map(|cause| {
        let invalid_configuration = match (
            cause.downcast_ref::<CredentialsError>(),
            cause.downcast_ref::<TokenError>(),
        ) {
            (Some(credentials), _) => {
                matches!(credentials, CredentialsError::InvalidConfiguration(_))
            }
            (None, Some(token)) => matches!(token, TokenError::InvalidConfiguration(_)),
            (None, None) => return None,
        };
        Some(if invalid_configuration {
            ErrorKind::Config
        } else {
            ErrorKind::Unauthenticated
        })
    })
}

/// The whole chain of an error's causes on one line: SDK errors say little at the top.
fn describe(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_codes_fall_back_to_the_http_status() {
        assert_eq!(kind_for_code("SomethingNew", 503), ErrorKind::Unavailable);
        assert_eq!(
            kind_for_code("SomethingNew", 403),
            ErrorKind::PermissionDenied
        );
        assert_eq!(
            kind_for_code("SomethingNew", 400),
            ErrorKind::InvalidArgument
        );
        assert_eq!(kind_for_code("SomethingNew", 200), ErrorKind::Internal);
    }
}
