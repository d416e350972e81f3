//! Errors as RFC 9457 problem details (`application/problem+json`), and the extractors that
//! turn every malformed request into one.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use snoozebot_core::{Error, ErrorKind};

/// The media type of every error answer.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// An error answer (RFC 9457), carrying Snoozebot's [`ErrorKind`].
///
/// ```json
/// {"type": "https://snoozebot.dev/problems/not_found", "title": "Not found", "status": 404,
///  "detail": "mock: not_found: instance mock-9999 does not exist", "kind": "not_found",
///  "provider": "mock"}
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[non_exhaustive]
pub struct Problem {
    /// A URI naming the problem type: `https://snoozebot.dev/problems/{kind}`.
    #[serde(rename = "type")]
    pub problem_type: String,
    /// A short summary of the problem type.
    pub title: String,
    /// The HTTP status.
    pub status: u16,
    /// What happened, for a human.
    pub detail: String,
    /// The error kind, to act on.
    pub kind: ErrorKind,
    /// The provider the error came from, if one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// Seconds the cloud asked to wait before trying again (also in `Retry-After`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_seconds: Option<u64>,
}

/// The HTTP status for each kind.
///
/// `Unauthenticated` and `Plugin` are the *provider's* failures (its cloud credentials, its
/// process), not the API caller's, so they are `502 Bad Gateway` — a `401` would tell the
/// caller their API key is wrong.
pub fn status_for(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::InvalidArgument => StatusCode::BAD_REQUEST,
        ErrorKind::InvalidState => StatusCode::CONFLICT,
        ErrorKind::PermissionDenied => StatusCode::FORBIDDEN,
        ErrorKind::Throttled => StatusCode::TOO_MANY_REQUESTS,
        ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::Timeout => StatusCode::GATEWAY_TIMEOUT,
        ErrorKind::Unsupported => StatusCode::NOT_IMPLEMENTED,
        ErrorKind::Unauthenticated | ErrorKind::Plugin => StatusCode::BAD_GATEWAY,
        // Config, Internal, and any kind added later.
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

fn title_for(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::NotFound => "Not found",
        ErrorKind::InvalidArgument => "Invalid argument",
        ErrorKind::InvalidState => "Invalid state",
        ErrorKind::PermissionDenied => "Permission denied",
        ErrorKind::Unauthenticated => "Unauthenticated",
        ErrorKind::Throttled => "Throttled",
        ErrorKind::Unavailable => "Unavailable",
        ErrorKind::Timeout => "Timeout",
        ErrorKind::Unsupported => "Unsupported",
        ErrorKind::Plugin => "Plugin failure",
        ErrorKind::Config => "Configuration error",
        _ => "Internal error",
    }
}

impl Problem {
    /// The problem for `error`, with the status [`status_for`] its kind.
    pub fn from_error(error: &Error) -> Self {
        Self::with_status(error, status_for(error.kind()))
    }

    pub(crate) fn with_status(error: &Error, status: StatusCode) -> Self {
        let kind = error.kind();
        Problem {
            problem_type: format!("https://snoozebot.dev/problems/{kind}"),
            title: title_for(kind).to_owned(),
            status: status.as_u16(),
            detail: error.to_string(),
            kind,
            provider: error.provider().map(str::to_owned),
            retry_after_seconds: error
                .retry_after()
                .map(|after| after.as_secs() + u64::from(after.subsec_nanos() > 0)),
        }
    }
}

/// An error on its way to becoming a problem answer, with the status it gets.
#[derive(Debug)]
pub(crate) struct ApiError {
    error: Error,
    status: StatusCode,
    www_authenticate: bool,
}

impl ApiError {
    /// A request-level failure with its own status (415, 413, 405, 401, ...).
    pub(crate) fn status(status: StatusCode, kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            error: Error::new(kind, message),
            status,
            www_authenticate: false,
        }
    }

    /// `401` with `WWW-Authenticate`.
    pub(crate) fn unauthorized(message: impl Into<String>) -> Self {
        Self {
            error: Error::new(ErrorKind::Unauthenticated, message),
            status: StatusCode::UNAUTHORIZED,
            www_authenticate: true,
        }
    }
}

impl From<Error> for ApiError {
    fn from(error: Error) -> Self {
        let status = status_for(error.kind());
        Self {
            error,
            status,
            www_authenticate: false,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let problem = Problem::with_status(&self.error, self.status);
        let body = serde_json::to_vec(&problem).unwrap_or_default();
        let mut response = (self.status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if let Some(seconds) = problem.retry_after_seconds {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if self.www_authenticate {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(r#"Bearer realm="snoozebot", charset="UTF-8""#),
            );
        }
        response
    }
}

/// A JSON body: a wrong content type is `415`, a body over the limit `413`, anything
/// unreadable `400` — each a problem answer.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Body<T>(pub(crate) T);

/// Wrong content type `415`, over the limit `413`, anything else about the body `400` (axum's
/// `422` for well-formed JSON of the wrong shape included: one status for "fix your body").
fn json_rejection(rejection: JsonRejection) -> ApiError {
    match rejection.status() {
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::status(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorKind::Unsupported,
            rejection.body_text(),
        ),
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::status(
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorKind::InvalidArgument,
            rejection.body_text(),
        ),
        _ => ApiError::status(
            StatusCode::BAD_REQUEST,
            ErrorKind::InvalidArgument,
            rejection.body_text(),
        ),
    }
}

impl<S, T> FromRequest<S> for Body<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        axum::Json::<T>::from_request(request, state)
            .await
            .map(|axum::Json(value)| Body(value))
            .map_err(json_rejection)
    }
}

/// A JSON body that may be left out entirely (no body, no content type) or be `null`: then
/// `T::default()`.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct OptionalBody<T>(pub(crate) T);

impl<S, T> FromRequest<S> for OptionalBody<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Default,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let empty = request.headers().get(header::CONTENT_TYPE).is_none()
            && request
                .headers()
                .get(header::CONTENT_LENGTH)
                .is_none_or(|length| length.as_bytes() == b"0");
        if empty {
            return Ok(OptionalBody(T::default()));
        }
        Body::<Option<T>>::from_request(request, state)
            .await
            .map(|Body(value)| OptionalBody(value.unwrap_or_default()))
    }
}

/// Path parameters; undecodable ones are `400` problems.
#[derive(Debug)]
pub(crate) struct PathParams<T>(pub(crate) T);

impl<S, T> FromRequestParts<S> for PathParams<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Send,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(value)| PathParams(value))
            .map_err(|rejection: PathRejection| {
                ApiError::status(
                    StatusCode::BAD_REQUEST,
                    ErrorKind::InvalidArgument,
                    rejection.body_text(),
                )
            })
    }
}

/// Query parameters; unreadable ones are `400` problems.
#[derive(Debug)]
pub(crate) struct QueryParams<T>(pub(crate) T);

impl<S, T> FromRequestParts<S> for QueryParams<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Send,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(value)| QueryParams(value))
            .map_err(|rejection: QueryRejection| {
                ApiError::status(
                    StatusCode::BAD_REQUEST,
                    ErrorKind::InvalidArgument,
                    rejection.body_text(),
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn every_kind_has_a_status_and_title() {
        for kind in ErrorKind::ALL {
            let problem = Problem::from_error(&Error::new(kind, "x"));
            assert_eq!(problem.status, status_for(kind).as_u16());
            assert_eq!(
                problem.problem_type,
                format!("https://snoozebot.dev/problems/{kind}")
            );
            assert!(!problem.title.is_empty());
        }
        assert_eq!(
            status_for(ErrorKind::Throttled),
            StatusCode::TOO_MANY_REQUESTS
        );
        assert_eq!(status_for(ErrorKind::Timeout), StatusCode::GATEWAY_TIMEOUT);
        assert_eq!(
            status_for(ErrorKind::Unsupported),
            StatusCode::NOT_IMPLEMENTED
        );
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        let error = Error::new(ErrorKind::Throttled, "slow down")
            .with_retry_after(Duration::from_millis(1500))
            .with_provider("aws");
        let problem = Problem::from_error(&error);
        assert_eq!(problem.retry_after_seconds, Some(2));
        assert_eq!(problem.provider.as_deref(), Some("aws"));
        let response = ApiError::from(error).into_response();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[header::RETRY_AFTER], "2");
        assert_eq!(response.headers()[header::CONTENT_TYPE], PROBLEM_JSON);
    }
}
