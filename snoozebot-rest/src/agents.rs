//! The agent routes (feature `schedules`): agents on instances register, send heartbeats and
//! report idle and active with their own [`AgentKeys`](crate::AgentKeys) key, which speaks for
//! its instance only; readers list the agents and what the server decided.

use std::sync::Arc;
use std::time::Duration;

use axum::Extension;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use snoozebot_core::{Error, ErrorKind};
use snoozebot_schedule::jiff::Timestamp;
use snoozebot_schedule::{AgentError, AgentRecord, Agents, Registration, Report};
use utoipa::{IntoParams, ToSchema};

use crate::api::{AppState, PresentedKey};
use crate::problem::{ApiError, Body, PathParams, Problem};

pub(crate) const TAG_AGENTS: &str = "agents";

/// The most signals a report may name, and the longest of each.
const MAX_BUSY: usize = 32;
const MAX_WORD: usize = 64;

type ApiResult<T> = Result<Json<T>, ApiError>;

fn agents(state: &AppState) -> Result<&(Arc<Agents>, crate::AgentKeys), ApiError> {
    state.agents.as_ref().ok_or_else(|| {
        ApiError::status(
            StatusCode::NOT_FOUND,
            ErrorKind::NotFound,
            "this server takes no agents: configure [agents] secret",
        )
    })
}

/// The agents, if the presented key is the agent key of `provider`'s `instance`.
fn speaking_for<'a>(
    state: &'a AppState,
    path: &AgentPath,
    key: &PresentedKey,
) -> Result<&'a Agents, ApiError> {
    let (agents, keys) = agents(state)?;
    let Some(key) = key.0.as_deref() else {
        return Err(ApiError::unauthorized(
            "an agent key is required: Authorization: Bearer <key> (snoozebot agent key PROVIDER INSTANCE)",
        ));
    };
    // Another instance's key, an API key and garbage look alike: none speaks for this one.
    if !keys.verify(&path.provider, &path.instance, key) {
        tracing::info!(provider = %path.provider, instance = %path.instance, "agent call refused: not this instance's key");
        return Err(ApiError::unauthorized(format!(
            "not the agent key of {}/{}",
            path.provider, path.instance
        )));
    }
    Ok(agents)
}

impl From<AgentError> for ApiError {
    fn from(error: AgentError) -> Self {
        let message = error.to_string();
        match error {
            AgentError::UnknownProvider(_) => {
                ApiError::status(StatusCode::NOT_FOUND, ErrorKind::NotFound, message)
            }
            AgentError::NotRegistered { .. } => ApiError::status(
                StatusCode::CONFLICT,
                ErrorKind::InvalidState,
                format!("{message}: register first"),
            ),
            AgentError::BadInstance(..) => {
                ApiError::status(StatusCode::BAD_REQUEST, ErrorKind::InvalidArgument, message)
            }
            AgentError::Provider(error) => ApiError::from(error),
            AgentError::Contended(_) => ApiError::from(
                Error::new(ErrorKind::Unavailable, message)
                    .with_retry_after(Duration::from_secs(1)),
            ),
            _ => ApiError::status(
                StatusCode::INTERNAL_SERVER_ERROR,
                ErrorKind::Internal,
                message,
            ),
        }
    }
}

/// The path of one agent's routes.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub(crate) struct AgentPath {
    /// The server's provider the instance belongs to.
    provider: String,
    /// The instance id; percent-encode `/`.
    instance: String,
}

/// What the server knows of an agent and decided about its machine.
#[derive(Debug, Serialize, ToSchema)]
pub struct AgentView {
    /// The provider.
    pub provider: String,
    /// The instance.
    pub instance: String,
    /// The machine's host name, as the agent said.
    pub hostname: String,
    /// The agent's version, as it said.
    pub version: String,
    /// `active`, `idle` (kept running: see `note`), `stopping` (at `stop_at`), `stopped`,
    /// `lost`.
    pub state: String,
    /// Why, in words.
    pub note: String,
    /// When it last registered (RFC 3339).
    pub registered_at: String,
    /// When it was last heard from.
    pub last_seen: String,
    /// Since when the machine is idle.
    pub idle_since: Option<String>,
    /// When the machine is stopped, while `stopping`: the agent warns its users.
    pub stop_at: Option<String>,
    /// Until when stopping is postponed.
    pub postponed_until: Option<String>,
    /// How often the server wants a heartbeat, in seconds.
    pub heartbeat_seconds: u64,
}

fn view(record: AgentRecord, agents: &Agents) -> AgentView {
    let text = |at: Option<Timestamp>| at.map(|at| at.to_string());
    AgentView {
        provider: record.provider,
        instance: record.instance,
        hostname: record.hostname,
        version: record.version,
        state: record.state.to_string(),
        note: record.note,
        registered_at: record.registered_at.to_string(),
        last_seen: record.last_seen.to_string(),
        idle_since: text(record.idle_since),
        stop_at: text(record.stop_at),
        postponed_until: text(record.postponed_until),
        heartbeat_seconds: agents.policy().heartbeat.as_secs().max(1),
    }
}

/// `GET /api/agents`: every registered agent.
#[utoipa::path(
    get,
    path = "/api/agents",
    tag = TAG_AGENTS,
    summary = "The registered agents and what was decided about their machines",
    responses(
        (status = 200, description = "The agents", body = Vec<AgentView>),
        (status = 404, description = "No agents configured", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["reader"]), ("api_key" = ["reader"])),
)]
pub(crate) async fn list_agents(State(state): State<AppState>) -> ApiResult<Vec<AgentView>> {
    let (agents, _) = agents(&state)?;
    let records = agents.agents().await?;
    Ok(Json(
        records
            .into_iter()
            .map(|record| view(record, agents))
            .collect(),
    ))
}

/// `GET /api/agents/{provider}/{instance}`: one agent.
#[utoipa::path(
    get,
    path = "/api/agents/{provider}/{instance}",
    tag = TAG_AGENTS,
    summary = "One agent and what was decided about its machine",
    params(AgentPath),
    responses(
        (status = 200, description = "The agent", body = AgentView),
        (status = 404, description = "No such agent", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["reader"]), ("api_key" = ["reader"])),
)]
pub(crate) async fn get_agent(
    State(state): State<AppState>,
    PathParams(path): PathParams<AgentPath>,
) -> ApiResult<AgentView> {
    let (agents, _) = agents(&state)?;
    match agents.agent(&path.provider, &path.instance).await? {
        Some(record) => Ok(Json(view(record, agents))),
        None => Err(ApiError::status(
            StatusCode::NOT_FOUND,
            ErrorKind::NotFound,
            format!(
                "no agent is registered for {}/{}",
                path.provider, path.instance
            ),
        )),
    }
}

/// Body of `POST …/register`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RegisterRequest {
    /// The machine's host name.
    #[schema(max_length = 255)]
    hostname: String,
    /// The agent's version.
    #[schema(max_length = 64)]
    version: String,
}

fn bounded(what: &str, text: &str, max: usize) -> Result<(), ApiError> {
    if text.len() > max || text.chars().any(char::is_control) {
        return Err(ApiError::status(
            StatusCode::BAD_REQUEST,
            ErrorKind::InvalidArgument,
            format!("{what}: at most {max} bytes, no control characters"),
        ));
    }
    Ok(())
}

/// `POST /api/agents/{provider}/{instance}/register`: an agent starts (again).
#[utoipa::path(
    post,
    path = "/api/agents/{provider}/{instance}/register",
    tag = TAG_AGENTS,
    summary = "Registers the agent of this instance (its instance must exist); it is active",
    params(AgentPath),
    request_body = RegisterRequest,
    responses((status = 200, description = "Registered", body = AgentView)),
    security(("bearer" = ["agent"])),
)]
pub(crate) async fn register(
    State(state): State<AppState>,
    PathParams(path): PathParams<AgentPath>,
    Extension(key): Extension<PresentedKey>,
    Body(request): Body<RegisterRequest>,
) -> ApiResult<AgentView> {
    let agents = speaking_for(&state, &path, &key)?;
    bounded("hostname", &request.hostname, 255)?;
    bounded("version", &request.version, 64)?;
    let record = agents
        .register(
            &path.provider,
            &path.instance,
            Registration {
                hostname: request.hostname,
                version: request.version,
            },
        )
        .await?;
    Ok(Json(view(record, agents)))
}

/// Body of a heartbeat, an idle or an active report.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReportRequest {
    /// How long the machine has been idle, in seconds; absent: busy.
    #[serde(default)]
    idle_seconds: Option<u64>,
    /// What keeps it busy (`cpu`, `network`, `probe build`, …).
    #[serde(default)]
    #[schema(max_items = 32)]
    busy: Vec<String>,
    /// Until when its users postponed stopping (RFC 3339).
    #[serde(default)]
    postponed_until: Option<String>,
}

impl ReportRequest {
    fn report(self) -> Result<Report, ApiError> {
        if self.busy.len() > MAX_BUSY {
            return Err(ApiError::status(
                StatusCode::BAD_REQUEST,
                ErrorKind::InvalidArgument,
                format!("busy: at most {MAX_BUSY} signals"),
            ));
        }
        for word in &self.busy {
            bounded("busy", word, MAX_WORD)?;
        }
        let postponed_until = self
            .postponed_until
            .map(|text| {
                text.parse::<Timestamp>().map_err(|error| {
                    ApiError::status(
                        StatusCode::BAD_REQUEST,
                        ErrorKind::InvalidArgument,
                        format!("postponed_until is not an RFC 3339 time: {error}"),
                    )
                })
            })
            .transpose()?;
        Ok(Report {
            idle_for: self.idle_seconds.map(Duration::from_secs),
            busy: self.busy,
            postponed_until,
        })
    }
}

async fn report(
    state: &AppState,
    path: &AgentPath,
    key: &PresentedKey,
    report: Report,
) -> ApiResult<AgentView> {
    let agents = speaking_for(state, path, key)?;
    let record = agents
        .report(&path.provider, &path.instance, report)
        .await?;
    Ok(Json(view(record, agents)))
}

/// `POST /api/agents/{provider}/{instance}/heartbeat`: the agent is alive, and says how the
/// machine is.
#[utoipa::path(
    post,
    path = "/api/agents/{provider}/{instance}/heartbeat",
    tag = TAG_AGENTS,
    summary = "A heartbeat with the machine's state; the answer says what the server decided",
    params(AgentPath),
    request_body = ReportRequest,
    responses(
        (status = 200, description = "What the server decided", body = AgentView),
        (status = 409, description = "Not registered: register first", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["agent"])),
)]
pub(crate) async fn heartbeat(
    State(state): State<AppState>,
    PathParams(path): PathParams<AgentPath>,
    Extension(key): Extension<PresentedKey>,
    Body(request): Body<ReportRequest>,
) -> ApiResult<AgentView> {
    report(&state, &path, &key, request.report()?).await
}

/// `POST /api/agents/{provider}/{instance}/idle`: the machine has been idle for its nap time.
#[utoipa::path(
    post,
    path = "/api/agents/{provider}/{instance}/idle",
    tag = TAG_AGENTS,
    summary = "The machine is idle (idle_seconds required): stopped after the warning if the policy allows",
    params(AgentPath),
    request_body = ReportRequest,
    responses(
        (status = 200, description = "What the server decided", body = AgentView),
        (status = 409, description = "Not registered: register first", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["agent"])),
)]
pub(crate) async fn idle(
    State(state): State<AppState>,
    PathParams(path): PathParams<AgentPath>,
    Extension(key): Extension<PresentedKey>,
    Body(request): Body<ReportRequest>,
) -> ApiResult<AgentView> {
    let report_of = request.report()?;
    if report_of.idle_for.is_none() {
        return Err(ApiError::status(
            StatusCode::BAD_REQUEST,
            ErrorKind::InvalidArgument,
            "an idle report says how long: idle_seconds",
        ));
    }
    report(&state, &path, &key, report_of).await
}

/// `POST /api/agents/{provider}/{instance}/active`: the machine is busy again.
#[utoipa::path(
    post,
    path = "/api/agents/{provider}/{instance}/active",
    tag = TAG_AGENTS,
    summary = "The machine is busy again: a pending stop is cancelled",
    params(AgentPath),
    request_body = ReportRequest,
    responses(
        (status = 200, description = "What the server decided", body = AgentView),
        (status = 409, description = "Not registered: register first", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["agent"])),
)]
pub(crate) async fn active(
    State(state): State<AppState>,
    PathParams(path): PathParams<AgentPath>,
    Extension(key): Extension<PresentedKey>,
    Body(request): Body<ReportRequest>,
) -> ApiResult<AgentView> {
    let report_of = Report {
        idle_for: None,
        ..request.report()?
    };
    report(&state, &path, &key, report_of).await
}
