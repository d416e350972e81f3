//! The one error type every Snoozebot call returns, and the kinds it is sorted into.
//!
//! A caller decides what to do from [`ErrorKind`] alone: retry ([`Error::is_retryable`]), report a
//! missing instance, fix its input. The provider's native error code stays in the message and the
//! original error in [`std::error::Error::source`], so nothing a cloud said is lost.

use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// `Result` with Snoozebot's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong, in terms a caller can act on.
///
/// Every provider maps each native error it can meet to one of these kinds; the native code is
/// kept in the [`Error`] message. Serialized as `snake_case` strings (`"not_found"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum ErrorKind {
    /// The instance (or plugin, or resource) does not exist.
    NotFound,
    /// The input was rejected before or by the provider: a malformed id, a bad option.
    InvalidArgument,
    /// The instance is in a state that does not allow the operation (e.g. starting a terminated one).
    InvalidState,
    /// The credentials are valid but lack permission for the operation.
    PermissionDenied,
    /// No valid credentials: missing, expired or rejected.
    Unauthenticated,
    /// The provider's API is rate limiting the caller. Retryable.
    Throttled,
    /// The provider or the network is temporarily unavailable. Retryable.
    Unavailable,
    /// The call did not finish in time. Retryable.
    Timeout,
    /// The provider does not support the operation or option (e.g. a stop mode).
    Unsupported,
    /// An out-of-process plugin failed: it crashed, hung, or broke the protocol.
    Plugin,
    /// Snoozebot or a provider was configured wrongly.
    Config,
    /// A bug or an unexpected answer; not the caller's fault and not worth retrying.
    Internal,
}

impl ErrorKind {
    /// The kind an HTTP status means when the answer names no error code of its own: the
    /// fallback every cloud crate uses after its own code table.
    ///
    /// | status | kind |
    /// |---|---|
    /// | 400, other 4xx | `InvalidArgument` |
    /// | 401 | `Unauthenticated` |
    /// | 403 | `PermissionDenied` |
    /// | 404, 410 | `NotFound` |
    /// | 408 | `Timeout` |
    /// | 409, 412 | `InvalidState` |
    /// | 429 | `Throttled` |
    /// | 501 | `Unsupported` |
    /// | 504 | `Timeout` |
    /// | other 5xx | `Unavailable` |
    /// | anything else (1xx–3xx, not a status) | `Internal` |
    ///
    /// ```
    /// use snoozebot_core::ErrorKind;
    /// assert_eq!(ErrorKind::from_http_status(429), ErrorKind::Throttled);
    /// assert_eq!(ErrorKind::from_http_status(503), ErrorKind::Unavailable);
    /// ```
    pub fn from_http_status(status: u16) -> ErrorKind {
        match status {
            401 => ErrorKind::Unauthenticated,
            403 => ErrorKind::PermissionDenied,
            404 | 410 => ErrorKind::NotFound,
            408 | 504 => ErrorKind::Timeout,
            409 | 412 => ErrorKind::InvalidState,
            429 => ErrorKind::Throttled,
            501 => ErrorKind::Unsupported,
            400..=499 => ErrorKind::InvalidArgument,
            500..=599 => ErrorKind::Unavailable,
            _ => ErrorKind::Internal,
        }
    }

    /// Every kind, in declaration order.
    pub const ALL: [ErrorKind; 12] = [
        ErrorKind::NotFound,
        ErrorKind::InvalidArgument,
        ErrorKind::InvalidState,
        ErrorKind::PermissionDenied,
        ErrorKind::Unauthenticated,
        ErrorKind::Throttled,
        ErrorKind::Unavailable,
        ErrorKind::Timeout,
        ErrorKind::Unsupported,
        ErrorKind::Plugin,
        ErrorKind::Config,
        ErrorKind::Internal,
    ];

    /// The stable `snake_case` name of this kind, as used in JSON and on the plugin wire.
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorKind::NotFound => "not_found",
            ErrorKind::InvalidArgument => "invalid_argument",
            ErrorKind::InvalidState => "invalid_state",
            ErrorKind::PermissionDenied => "permission_denied",
            ErrorKind::Unauthenticated => "unauthenticated",
            ErrorKind::Throttled => "throttled",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::Plugin => "plugin",
            ErrorKind::Config => "config",
            ErrorKind::Internal => "internal",
        }
    }

    /// Whether a call that failed with this kind may succeed if made again unchanged.
    ///
    /// True for [`Throttled`](ErrorKind::Throttled), [`Unavailable`](ErrorKind::Unavailable)
    /// and [`Timeout`](ErrorKind::Timeout).
    pub const fn is_retryable(self) -> bool {
        matches!(
            self,
            ErrorKind::Throttled | ErrorKind::Unavailable | ErrorKind::Timeout
        )
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error of every Snoozebot operation.
///
/// Cheap to clone (the source is shared), so one failure can be handed to several waiters.
///
/// ```
/// use snoozebot_core::{Error, ErrorKind};
/// use std::time::Duration;
///
/// let err = Error::new(ErrorKind::Throttled, "RequestLimitExceeded: Request limit exceeded.")
///     .with_provider("aws")
///     .with_retry_after(Duration::from_secs(2));
/// assert!(err.is_retryable());
/// assert_eq!(err.to_string(), "aws: throttled: RequestLimitExceeded: Request limit exceeded.");
/// ```
#[derive(Clone, thiserror::Error)]
#[error("{}{kind}: {message}", provider_prefix(.provider.as_deref()))]
pub struct Error {
    kind: ErrorKind,
    message: String,
    provider: Option<String>,
    retry_after: Option<Duration>,
    #[source]
    source: Option<Arc<dyn StdError + Send + Sync + 'static>>,
}

fn provider_prefix(provider: Option<&str>) -> String {
    provider.map(|name| format!("{name}: ")).unwrap_or_default()
}

impl Error {
    /// An error of `kind` with a human-readable message (keep the provider's native code in it).
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
            provider: None,
            retry_after: None,
            source: None,
        }
    }

    /// Shorthand for [`ErrorKind::NotFound`].
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }

    /// Shorthand for [`ErrorKind::InvalidArgument`].
    pub fn invalid_argument(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidArgument, message)
    }

    /// Shorthand for [`ErrorKind::InvalidState`].
    pub fn invalid_state(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidState, message)
    }

    /// Shorthand for [`ErrorKind::Unsupported`].
    pub fn unsupported(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unsupported, message)
    }

    /// Shorthand for [`ErrorKind::Config`].
    pub fn config(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Config, message)
    }

    /// Shorthand for [`ErrorKind::Internal`].
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }

    /// Names the provider the error came from (shown as a prefix in `Display`).
    pub fn with_provider(mut self, provider: impl Into<String>) -> Self {
        self.provider = Some(provider.into());
        self
    }

    /// Sets how long the provider asked the caller to wait before trying again.
    pub fn with_retry_after(mut self, retry_after: Duration) -> Self {
        self.retry_after = Some(retry_after);
        self
    }

    /// Attaches the underlying error (an SDK error, an I/O error...).
    pub fn with_source(mut self, source: impl StdError + Send + Sync + 'static) -> Self {
        self.source = Some(Arc::new(source));
        self
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The human-readable message, without the provider prefix.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The provider that produced the error, if known.
    pub fn provider(&self) -> Option<&str> {
        self.provider.as_deref()
    }

    /// How long the provider asked the caller to wait before trying again, if it said.
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }

    /// Whether the same call may succeed if made again: see [`ErrorKind::is_retryable`].
    pub fn is_retryable(&self) -> bool {
        self.kind.is_retryable()
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut debug = f.debug_struct("Error");
        debug
            .field("kind", &self.kind)
            .field("message", &self.message);
        if let Some(provider) = &self.provider {
            debug.field("provider", provider);
        }
        if let Some(retry_after) = &self.retry_after {
            debug.field("retry_after", retry_after);
        }
        if let Some(source) = &self.source {
            debug.field("source", source);
        }
        debug.finish()
    }
}

/// How long a `Retry-After` header value asks to wait: delta-seconds (`120`, also with a
/// fraction, `1.5`) or an HTTP date (`Wed, 21 Oct 2026 07:28:00 GMT`, measured from now; a date
/// past is no wait). `None` for anything else, or a wait over a day (a broken header should not
/// park a caller). The one parser the cloud crates and the middleware share.
///
/// ```
/// use std::time::Duration;
/// use snoozebot_core::parse_retry_after;
/// assert_eq!(parse_retry_after("7"), Some(Duration::from_secs(7)));
/// assert_eq!(parse_retry_after(" 0.25 "), Some(Duration::from_millis(250)));
/// assert_eq!(parse_retry_after("soon"), None);
/// ```
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    parse_retry_after_at(
        value,
        chrono::DateTime::<chrono::Utc>::from(std::time::SystemTime::now()),
    )
}

/// The longest wait a `Retry-After` is believed for.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 60 * 60);

fn parse_retry_after_at(value: &str, now: chrono::DateTime<chrono::Utc>) -> Option<Duration> {
    let value = value.trim();
    let wait = if value.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        let seconds: f64 = value.parse().ok()?;
        Duration::try_from_secs_f64(seconds).ok()?
    } else {
        let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
        (at.with_timezone(&chrono::Utc) - now)
            .to_std()
            .unwrap_or(Duration::ZERO)
    };
    (wait <= MAX_RETRY_AFTER).then_some(wait)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_reads_seconds_and_dates_and_refuses_the_rest() {
        let now = chrono::DateTime::parse_from_rfc3339("2026-10-21T07:27:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        let at = |value| parse_retry_after_at(value, now);
        assert_eq!(at("120"), Some(Duration::from_secs(120)));
        assert_eq!(at("1.5"), Some(Duration::from_millis(1500)));
        assert_eq!(
            at("Wed, 21 Oct 2026 07:28:00 GMT"),
            Some(Duration::from_secs(60))
        );
        assert_eq!(at("Wed, 21 Oct 2026 07:00:00 GMT"), Some(Duration::ZERO));
        for bad in ["", "-1", "1e3", "soon", "1.2.3", "999999999"] {
            assert_eq!(at(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn http_statuses_have_one_fallback_kind() {
        let kinds: Vec<_> = [
            400, 401, 403, 404, 408, 409, 412, 418, 429, 500, 501, 503, 504, 302,
        ]
        .map(ErrorKind::from_http_status)
        .to_vec();
        use ErrorKind::*;
        assert_eq!(
            kinds,
            [
                InvalidArgument,
                Unauthenticated,
                PermissionDenied,
                NotFound,
                Timeout,
                InvalidState,
                InvalidState,
                InvalidArgument,
                Throttled,
                Unavailable,
                Unsupported,
                Unavailable,
                Timeout,
                Internal
            ]
        );
    }

    #[test]
    fn only_throttled_unavailable_and_timeout_are_retryable() {
        let retryable: Vec<_> = ErrorKind::ALL
            .into_iter()
            .filter(|kind| kind.is_retryable())
            .collect();
        assert_eq!(
            retryable,
            [
                ErrorKind::Throttled,
                ErrorKind::Unavailable,
                ErrorKind::Timeout
            ]
        );
    }

    #[test]
    fn kind_names_round_trip_through_serde() {
        for kind in ErrorKind::ALL {
            let json = format!("\"{}\"", kind.as_str());
            let parsed: ErrorKind = serde_json::from_str(&json).unwrap();
            assert_eq!(parsed, kind);
            assert_eq!(serde_json::to_string(&kind).unwrap(), json);
        }
    }

    #[test]
    fn source_is_kept_and_shared_by_clones() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset by peer");
        let err = Error::new(ErrorKind::Unavailable, "connection lost").with_source(io);
        let clone = err.clone();
        assert_eq!(
            clone.source().map(ToString::to_string).as_deref(),
            Some("reset by peer")
        );
        assert_eq!(err.to_string(), "unavailable: connection lost");
    }
}
