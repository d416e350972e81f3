//! Between the model and its wire form: messages both ways, and [`Error`] ⇄ gRPC status.
//!
//! Everything that arrives from the other process is checked as input: an invalid instance id
//! from a plugin is a protocol error ([`ErrorKind::Plugin`]), from a host a bad request
//! ([`ErrorKind::InvalidArgument`]).

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::proto::v1 as pb;
use snoozebot_core::{
    BatchResults, Capabilities, Error, ErrorKind, InstanceFilter, InstanceId, InstanceInfo,
    InstanceState, PageRequest, ProviderInfo, Result, StateChange, StopMode, StopOptions,
};

/// The `domain` of the `google.rpc.ErrorInfo` that carries an [`ErrorKind`] across the wire.
pub const ERROR_DOMAIN: &str = "snoozebot.dev";

/// The model's enums are `#[non_exhaustive]`; the wildcard arms below are for states and modes
/// this crate was built without, and `every_state_and_mode_crosses_the_wire` fails when one of
/// the model's own is missing here.
pub(crate) fn state_to_wire(state: InstanceState) -> i32 {
    let wire = match state {
        InstanceState::Pending => pb::InstanceState::Pending,
        InstanceState::Running => pb::InstanceState::Running,
        InstanceState::Stopping => pb::InstanceState::Stopping,
        InstanceState::Stopped => pb::InstanceState::Stopped,
        InstanceState::Suspending => pb::InstanceState::Suspending,
        InstanceState::Suspended => pb::InstanceState::Suspended,
        InstanceState::Terminating => pb::InstanceState::Terminating,
        InstanceState::Terminated => pb::InstanceState::Terminated,
        InstanceState::Unknown => pb::InstanceState::Unknown,
        _ => pb::InstanceState::Unknown,
    };
    wire as i32
}

/// Unspecified and future states read as [`InstanceState::Unknown`]: the raw state beside it
/// still says what the cloud reported.
pub(crate) fn state_from_wire(state: i32) -> InstanceState {
    match pb::InstanceState::try_from(state) {
        Ok(pb::InstanceState::Pending) => InstanceState::Pending,
        Ok(pb::InstanceState::Running) => InstanceState::Running,
        Ok(pb::InstanceState::Stopping) => InstanceState::Stopping,
        Ok(pb::InstanceState::Stopped) => InstanceState::Stopped,
        Ok(pb::InstanceState::Suspending) => InstanceState::Suspending,
        Ok(pb::InstanceState::Suspended) => InstanceState::Suspended,
        Ok(pb::InstanceState::Terminating) => InstanceState::Terminating,
        Ok(pb::InstanceState::Terminated) => InstanceState::Terminated,
        Ok(pb::InstanceState::Unknown | pb::InstanceState::Unspecified) | Err(_) => {
            InstanceState::Unknown
        }
    }
}

/// `None` for a mode the protocol cannot carry (never one of this build's own, see above).
fn wire_mode(mode: StopMode) -> Option<pb::StopMode> {
    match mode {
        StopMode::Stop => Some(pb::StopMode::Stop),
        StopMode::Hibernate => Some(pb::StopMode::Hibernate),
        StopMode::Suspend => Some(pb::StopMode::Suspend),
        StopMode::Deallocate => Some(pb::StopMode::Deallocate),
        _ => None,
    }
}

/// A mode the wire cannot carry is sent as unspecified; only reports use this (a request
/// goes through [`options_to_wire`], which refuses such a mode instead).
pub(crate) fn mode_to_wire(mode: Option<StopMode>) -> i32 {
    mode.and_then(wire_mode)
        .unwrap_or(pb::StopMode::Unspecified) as i32
}

pub(crate) fn mode_from_wire(mode: i32) -> Result<Option<StopMode>> {
    match pb::StopMode::try_from(mode) {
        Ok(pb::StopMode::Unspecified) => Ok(None),
        Ok(pb::StopMode::Stop) => Ok(Some(StopMode::Stop)),
        Ok(pb::StopMode::Hibernate) => Ok(Some(StopMode::Hibernate)),
        Ok(pb::StopMode::Suspend) => Ok(Some(StopMode::Suspend)),
        Ok(pb::StopMode::Deallocate) => Ok(Some(StopMode::Deallocate)),
        Err(_) => Err(Error::invalid_argument(format!("unknown stop mode {mode}"))),
    }
}

/// Reads an instance id from the wire; `kind` says whose fault a bad one is.
pub(crate) fn id_from_wire(id: String, kind: ErrorKind) -> Result<InstanceId> {
    InstanceId::new(id).map_err(|error| Error::new(kind, error.message().to_owned()))
}

pub(crate) fn info_to_wire(info: &ProviderInfo) -> pb::ProviderInfo {
    pb::ProviderInfo {
        name: info.name.clone(),
        version: info.version.clone(),
        api_version: info.api_version.clone(),
        capabilities: Some(pb::Capabilities {
            stop_modes: info
                .capabilities
                .stop_modes
                .iter()
                .map(|mode| mode_to_wire(Some(*mode)))
                .collect(),
            dry_run: info.capabilities.dry_run,
            native_batch: info.capabilities.native_batch,
        }),
    }
}

pub(crate) fn info_from_wire(info: pb::ProviderInfo) -> ProviderInfo {
    let capabilities = info.capabilities.unwrap_or_default();
    let stop_modes = capabilities
        .stop_modes
        .into_iter()
        // A mode this host does not know cannot be asked for; leave it out.
        .filter_map(|mode| mode_from_wire(mode).ok().flatten());
    ProviderInfo::new(
        info.name,
        info.version,
        info.api_version,
        Capabilities::new(stop_modes)
            .with_dry_run(capabilities.dry_run)
            .with_native_batch(capabilities.native_batch),
    )
}

/// The wire form of `instance`, its strings moved rather than copied.
pub(crate) fn instance_to_wire(instance: InstanceInfo) -> pb::InstanceInfo {
    pb::InstanceInfo {
        state: state_to_wire(instance.state),
        billing_stopped: instance.billing_stopped,
        launch_time: instance.launch_time.map(|time| time.to_rfc3339()),
        id: instance.id.into_string(),
        name: instance.name,
        raw_state: instance.raw_state,
        machine_type: instance.machine_type,
        region: instance.region,
        zone: instance.zone,
        tags: instance.tags,
    }
}

pub(crate) fn instance_from_wire(instance: pb::InstanceInfo) -> Result<InstanceInfo> {
    let id = id_from_wire(instance.id, ErrorKind::Plugin)?;
    let launch_time = match instance.launch_time {
        None => None,
        Some(text) => Some(
            DateTime::parse_from_rfc3339(&text)
                .map_err(|error| {
                    Error::new(
                        ErrorKind::Plugin,
                        format!("plugin sent launch time {text:?}, which is not RFC 3339: {error}"),
                    )
                })?
                .with_timezone(&Utc),
        ),
    };
    let mut info = InstanceInfo::new(id, state_from_wire(instance.state), instance.raw_state);
    info.name = instance.name;
    info.billing_stopped = instance.billing_stopped;
    info.machine_type = instance.machine_type;
    info.region = instance.region;
    info.zone = instance.zone;
    info.launch_time = launch_time;
    info.tags = instance.tags;
    Ok(info)
}

pub(crate) fn filter_to_wire(filter: &InstanceFilter) -> pb::InstanceFilter {
    pb::InstanceFilter {
        tags: filter.tags.clone(),
        states: filter
            .states
            .iter()
            .map(|state| state_to_wire(*state))
            .collect(),
        name_prefix: filter.name_prefix.clone(),
    }
}

pub(crate) fn filter_from_wire(filter: Option<pb::InstanceFilter>) -> InstanceFilter {
    let filter = filter.unwrap_or_default();
    let mut model = InstanceFilter::new();
    model.tags = filter.tags;
    for state in filter.states {
        model = model.with_state(state_from_wire(state));
    }
    model.name_prefix = filter.name_prefix;
    model
}

/// A page request from its wire fields: an empty token is the first page, a size of 0 is 1.
pub(crate) fn page_from_wire(size: u32, token: String) -> PageRequest {
    let size = usize::try_from(size).unwrap_or(usize::MAX);
    if token.is_empty() {
        PageRequest::first(size)
    } else {
        PageRequest::after(size, token)
    }
}

/// The wire fields of a page request: its size (saturating at `u32::MAX`) and token.
pub(crate) fn page_to_wire(page: &PageRequest) -> (u32, String) {
    (
        u32::try_from(page.size).unwrap_or(u32::MAX),
        page.token.clone().unwrap_or_default(),
    )
}

/// Fails with [`ErrorKind::Unsupported`] for a mode the protocol cannot carry: sending it as
/// unspecified would ask for the provider's default instead.
pub(crate) fn options_to_wire(opts: &StopOptions) -> Result<pb::StopOptions> {
    let mode = match opts.mode {
        None => pb::StopMode::Unspecified,
        Some(mode) => wire_mode(mode).ok_or_else(|| {
            Error::new(
                ErrorKind::Unsupported,
                format!("the plugin protocol cannot carry stop mode {mode}"),
            )
        })?,
    };
    Ok(pb::StopOptions {
        mode: mode as i32,
        force: opts.force,
        dry_run: opts.dry_run,
        allow_fallback: opts.allow_fallback,
    })
}

pub(crate) fn options_from_wire(opts: Option<pb::StopOptions>) -> Result<StopOptions> {
    let opts = opts.unwrap_or_default();
    let mut model = StopOptions::default()
        .with_force(opts.force)
        .with_dry_run(opts.dry_run)
        .with_allow_fallback(opts.allow_fallback);
    model.mode = mode_from_wire(opts.mode)?;
    Ok(model)
}

pub(crate) fn change_to_wire(change: &StateChange) -> pb::StateChange {
    pb::StateChange {
        id: change.id.to_string(),
        previous: state_to_wire(change.previous),
        current: state_to_wire(change.current),
        mode: mode_to_wire(change.mode),
        operation: change.operation.clone().unwrap_or_default(),
    }
}

pub(crate) fn change_from_wire(change: pb::StateChange) -> Result<StateChange> {
    let id = id_from_wire(change.id, ErrorKind::Plugin)?;
    let mut model = StateChange::new(
        id,
        state_from_wire(change.previous),
        state_from_wire(change.current),
    );
    model.mode = mode_from_wire(change.mode)
        .map_err(|error| Error::new(ErrorKind::Plugin, error.message().to_owned()))?;
    model.operation = Some(change.operation).filter(|operation| !operation.is_empty());
    Ok(model)
}

fn kind_from_name(name: &str) -> Option<ErrorKind> {
    ErrorKind::ALL
        .into_iter()
        .find(|kind| kind.as_str().eq_ignore_ascii_case(name))
}

pub(crate) fn batch_to_wire(results: &BatchResults) -> pb::BatchResponse {
    let items = results
        .iter()
        .map(|(id, result)| pb::BatchItem {
            id: id.to_string(),
            result: Some(match result {
                Ok(change) => pb::batch_item::Result::Change(change_to_wire(change)),
                Err(error) => pb::batch_item::Result::Error(pb::ItemError {
                    kind: error.kind().as_str().to_owned(),
                    message: error.message().to_owned(),
                    provider: error.provider().map(str::to_owned),
                    retry_after_ms: error
                        .retry_after()
                        .map(|after| after.as_millis().min(u128::from(u64::MAX)) as u64),
                }),
            }),
        })
        .collect();
    pb::BatchResponse { items }
}

/// Reads a batch answer for `asked`: one item per id, in order, or the whole answer is a
/// protocol error.
pub(crate) fn batch_from_wire(
    asked: &[InstanceId],
    response: pb::BatchResponse,
) -> Result<BatchResults> {
    if response.items.len() != asked.len() {
        return Err(Error::new(
            ErrorKind::Plugin,
            format!(
                "plugin answered a batch of {} ids with {} results",
                asked.len(),
                response.items.len()
            ),
        ));
    }
    asked
        .iter()
        .zip(response.items)
        .map(|(id, item)| {
            if item.id != id.as_str() {
                return Err(Error::new(
                    ErrorKind::Plugin,
                    format!("plugin answered for {:?} where {id} was expected", item.id),
                ));
            }
            let result = match item.result {
                Some(pb::batch_item::Result::Change(change)) => change_from_wire(change),
                Some(pb::batch_item::Result::Error(error)) => Err(item_error_from_wire(error)),
                None => Err(Error::new(
                    ErrorKind::Plugin,
                    format!("plugin sent no result for {id}"),
                )),
            };
            Ok((id.clone(), result))
        })
        .collect()
}

fn item_error_from_wire(error: pb::ItemError) -> Error {
    let kind = kind_from_name(&error.kind).unwrap_or(ErrorKind::Internal);
    let mut model = Error::new(kind, error.message);
    if let Some(provider) = error.provider {
        model = model.with_provider(provider);
    }
    if let Some(millis) = error.retry_after_ms {
        model = model.with_retry_after(Duration::from_millis(millis));
    }
    model
}

fn code_for(kind: ErrorKind) -> Code {
    match kind {
        ErrorKind::NotFound => Code::NotFound,
        ErrorKind::InvalidArgument => Code::InvalidArgument,
        ErrorKind::InvalidState => Code::FailedPrecondition,
        ErrorKind::PermissionDenied => Code::PermissionDenied,
        ErrorKind::Unauthenticated => Code::Unauthenticated,
        ErrorKind::Throttled => Code::ResourceExhausted,
        ErrorKind::Unavailable => Code::Unavailable,
        ErrorKind::Timeout => Code::DeadlineExceeded,
        ErrorKind::Unsupported => Code::Unimplemented,
        // The kind itself travels in the details; a kind added later is Internal by code.
        _ => Code::Internal,
    }
}

/// An [`Error`] as a gRPC status: the code follows the kind, and the details carry the kind
/// itself (`ErrorInfo`), the provider and the `retry_after` (`RetryInfo`).
pub fn error_to_status(error: &Error) -> Status {
    let mut metadata = HashMap::new();
    if let Some(provider) = error.provider() {
        metadata.insert("provider".to_owned(), provider.to_owned());
    }
    let mut details = ErrorDetails::with_error_info(
        error.kind().as_str().to_ascii_uppercase(),
        ERROR_DOMAIN,
        metadata,
    );
    if let Some(after) = error.retry_after() {
        details.set_retry_info(Some(after));
    }
    Status::with_error_details(code_for(error.kind()), error.message(), details)
}

/// A gRPC status as an [`Error`]: the kind from the `ErrorInfo` when the plugin sent one (any
/// Snoozebot plugin does), else from the status code. Without details, statuses that mean the
/// plugin could not be reached or broke down (`Unavailable`, `Unknown`, `Internal`,
/// `Cancelled`, `DataLoss`) are [`ErrorKind::Plugin`].
pub fn status_to_error(status: &Status) -> Error {
    let info = status
        .get_details_error_info()
        .filter(|info| info.domain == ERROR_DOMAIN);
    let kind = info
        .as_ref()
        .and_then(|info| kind_from_name(&info.reason))
        .unwrap_or(match status.code() {
            Code::NotFound => ErrorKind::NotFound,
            Code::InvalidArgument | Code::OutOfRange => ErrorKind::InvalidArgument,
            Code::FailedPrecondition | Code::AlreadyExists | Code::Aborted => {
                ErrorKind::InvalidState
            }
            Code::PermissionDenied => ErrorKind::PermissionDenied,
            Code::Unauthenticated => ErrorKind::Unauthenticated,
            Code::ResourceExhausted => ErrorKind::Throttled,
            Code::DeadlineExceeded => ErrorKind::Timeout,
            Code::Unavailable => ErrorKind::Unavailable,
            Code::Unimplemented => ErrorKind::Unsupported,
            Code::Ok | Code::Unknown | Code::Internal | Code::Cancelled | Code::DataLoss => {
                ErrorKind::Plugin
            }
        });
    let message = if info.is_some() {
        status.message().to_owned()
    } else {
        format!("{:?}: {}", status.code(), status.message())
    };
    let mut error = Error::new(kind, message);
    if let Some(provider) = info.as_ref().and_then(|info| info.metadata.get("provider")) {
        error = error.with_provider(provider.clone());
    }
    if let Some(after) = status
        .get_details_retry_info()
        .and_then(|retry| retry.retry_delay)
    {
        error = error.with_retry_after(after);
    }
    error
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_survives_the_status_round_trip_with_provider_and_retry_after() {
        for kind in ErrorKind::ALL {
            let error = Error::new(kind, format!("native code for {kind}"))
                .with_provider("aws")
                .with_retry_after(Duration::from_millis(1500));
            let back = status_to_error(&error_to_status(&error));
            assert_eq!(back.kind(), kind);
            assert_eq!(back.message(), error.message());
            assert_eq!(back.provider(), Some("aws"));
            assert_eq!(back.retry_after(), Some(Duration::from_millis(1500)));
        }
    }

    #[test]
    fn plain_statuses_from_other_languages_map_by_code() {
        let error = status_to_error(&Status::not_found("no such VM"));
        assert_eq!(error.kind(), ErrorKind::NotFound);
        assert!(error.message().contains("no such VM"));
        // The transient codes are retryable, as gRPC means them, with or without details.
        for (status, kind) in [
            (
                Status::unavailable("backend restarting"),
                ErrorKind::Unavailable,
            ),
            (Status::resource_exhausted("quota"), ErrorKind::Throttled),
            (Status::deadline_exceeded("slow"), ErrorKind::Timeout),
        ] {
            let error = status_to_error(&status);
            assert_eq!(error.kind(), kind, "{status:?}");
            assert!(error.is_retryable(), "{status:?}");
        }
        let error = status_to_error(&Status::internal("nil pointer"));
        assert_eq!(error.kind(), ErrorKind::Plugin);
    }

    #[test]
    fn every_state_and_mode_crosses_the_wire() {
        for state in InstanceState::ALL {
            assert_eq!(state_from_wire(state_to_wire(state)), state, "{state}");
        }
        for mode in StopMode::ALL {
            let options = options_to_wire(&StopOptions::default().with_mode(mode)).unwrap();
            assert_eq!(mode_from_wire(options.mode).unwrap(), Some(mode), "{mode}");
            assert_eq!(
                mode_from_wire(mode_to_wire(Some(mode))).unwrap(),
                Some(mode)
            );
        }
        assert_eq!(mode_from_wire(mode_to_wire(None)).unwrap(), None);
    }

    #[test]
    fn instances_round_trip() {
        let mut info = InstanceInfo::new(
            InstanceId::new("i-0abc").unwrap(),
            InstanceState::Stopped,
            "stopped",
        );
        info.name = Some("web".into());
        info.zone = Some("eu-west-1a".into());
        info.launch_time = Some(
            DateTime::parse_from_rfc3339("2026-11-28T06:00:00Z")
                .unwrap()
                .with_timezone(&Utc),
        );
        info.tags.insert("env".into(), "dev".into());
        assert_eq!(
            instance_from_wire(instance_to_wire(info.clone())).unwrap(),
            info
        );
    }

    #[test]
    fn a_bad_id_from_a_plugin_is_a_plugin_error() {
        let wire = pb::InstanceInfo {
            id: "two words".into(),
            ..Default::default()
        };
        assert_eq!(
            instance_from_wire(wire).unwrap_err().kind(),
            ErrorKind::Plugin
        );
    }

    #[test]
    fn batches_must_answer_every_id_in_order() {
        let asked = [InstanceId::new("a").unwrap(), InstanceId::new("b").unwrap()];
        let results: BatchResults = vec![
            (
                asked[0].clone(),
                Err(Error::not_found("gone").with_retry_after(Duration::from_secs(1))),
            ),
            (
                asked[1].clone(),
                Ok(StateChange::new(
                    asked[1].clone(),
                    InstanceState::Running,
                    InstanceState::Stopping,
                )
                .with_mode(StopMode::Hibernate)),
            ),
        ];
        let back = batch_from_wire(&asked, batch_to_wire(&results)).unwrap();
        assert_eq!(back[0].1.as_ref().unwrap_err().kind(), ErrorKind::NotFound);
        assert_eq!(back[1].1.as_ref().unwrap().mode, Some(StopMode::Hibernate));

        let mut reordered = batch_to_wire(&results);
        reordered.items.reverse();
        assert_eq!(
            batch_from_wire(&asked, reordered).unwrap_err().kind(),
            ErrorKind::Plugin
        );
        let err = batch_from_wire(&asked[..1], batch_to_wire(&results)).unwrap_err();
        assert!(
            err.message().contains("batch of 1 ids with 2 results"),
            "{err}"
        );
    }
}
