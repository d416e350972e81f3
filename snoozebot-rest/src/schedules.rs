//! The schedule routes (feature `schedules`): the schedules, the plan now, applying it, and the
//! audit trail, over a [`Scheduler`] given with
//! [`HttpOptions::with_scheduler`](crate::HttpOptions::with_scheduler).

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use snoozebot_core::ErrorKind;
use snoozebot_schedule::{Action, Applied, RunPlan, Scheduler};
use utoipa::{IntoParams, ToSchema};

use crate::api::AppState;
use crate::problem::{ApiError, Problem, QueryParams};

pub(crate) const TAG_SCHEDULES: &str = "schedules";

type ApiResult<T> = Result<Json<T>, ApiError>;

fn scheduler(state: &AppState) -> Result<&Arc<Scheduler>, ApiError> {
    state.scheduler.as_ref().ok_or_else(|| {
        ApiError::status(
            axum::http::StatusCode::NOT_FOUND,
            ErrorKind::NotFound,
            "this server runs no schedules: configure [schedules] or [scheduler]",
        )
    })
}

fn failed(error: impl std::fmt::Display) -> ApiError {
    ApiError::status(
        axum::http::StatusCode::INTERNAL_SERVER_ERROR,
        ErrorKind::Internal,
        error.to_string(),
    )
}

/// A named schedule.
#[derive(Debug, Serialize, ToSchema)]
pub struct ScheduleView {
    /// Its name (the value of the schedule tag that selects it).
    pub name: String,
    /// Its time zone.
    pub timezone: String,
    /// Its boundaries: `DAYS HH:MM running|stopped`.
    pub transitions: Vec<String>,
    /// Dates it is stopped all day.
    pub days_off: Vec<String>,
    /// Whether hands-on changes are undone on every run.
    pub enforced: bool,
    /// Whether what was started by hand before a period is left running at its end.
    pub retain_running: bool,
    /// The stop mode, when not the provider's default.
    pub stop_mode: Option<String>,
}

/// `GET /api/schedules`: the named schedules.
#[utoipa::path(
    get,
    path = "/api/schedules",
    tag = TAG_SCHEDULES,
    summary = "The named schedules",
    responses(
        (status = 200, description = "The schedules", body = Vec<ScheduleView>),
        (status = 404, description = "No schedules configured", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["reader"]), ("api_key" = ["reader"])),
)]
pub(crate) async fn list_schedules(State(state): State<AppState>) -> ApiResult<Vec<ScheduleView>> {
    let scheduler = scheduler(&state)?;
    Ok(Json(
        scheduler
            .schedules()
            .named_with_overrides()
            .map(|(schedule, overrides)| ScheduleView {
                name: schedule.name().to_owned(),
                timezone: schedule.zone().to_owned(),
                transitions: schedule
                    .transitions()
                    .iter()
                    .map(|t| format!("{} {} {}", t.days, t.at, t.to))
                    .collect(),
                days_off: schedule.days_off().map(|day| day.to_string()).collect(),
                enforced: overrides.enforced,
                retain_running: overrides.retain_running,
                stop_mode: overrides.stop_mode.map(|mode| mode.to_string()),
            })
            .collect(),
    ))
}

/// One instance of a plan.
#[derive(Debug, Serialize, ToSchema)]
pub struct PlanItemView {
    /// Its provider.
    pub provider: String,
    /// The instance.
    pub id: String,
    /// Its schedule.
    pub schedule: String,
    /// Its state now.
    pub current: String,
    /// The state its schedule wants.
    pub desired: String,
    /// `none`, `start`, `stop`, `stop (hibernate)`, …
    pub action: String,
    /// Why.
    pub reason: String,
}

/// An instance whose schedule tag does not read, or a provider that could not be listed.
#[derive(Debug, Serialize, ToSchema)]
pub struct Skipped {
    /// The provider.
    pub provider: String,
    /// The instance (absent for a provider).
    pub id: Option<String>,
    /// Why it was skipped.
    pub reason: String,
}

/// A plan: what a run does now.
#[derive(Debug, Serialize, ToSchema)]
pub struct PlanView {
    /// When it was planned (RFC 3339).
    pub at: String,
    /// Every scheduled instance.
    pub items: Vec<PlanItemView>,
    /// How many items have an action.
    pub actions: usize,
    /// What was not looked at.
    pub skipped: Vec<Skipped>,
}

impl From<&RunPlan> for PlanView {
    fn from(plan: &RunPlan) -> Self {
        PlanView {
            at: plan.at.map(|at| at.to_string()).unwrap_or_default(),
            actions: plan.actions().count(),
            items: plan
                .items
                .iter()
                .map(|item| PlanItemView {
                    provider: item.provider.clone(),
                    id: item.id.to_string(),
                    schedule: item.schedule.clone(),
                    current: item.current.to_string(),
                    desired: item.desired.to_string(),
                    action: item.action.to_string(),
                    reason: item.reason.clone(),
                })
                .collect(),
            skipped: plan
                .invalid
                .iter()
                .map(|(provider, id, reason)| Skipped {
                    provider: provider.clone(),
                    id: Some(id.to_string()),
                    reason: reason.clone(),
                })
                .chain(plan.unreachable.iter().map(|(provider, reason)| Skipped {
                    provider: provider.clone(),
                    id: None,
                    reason: reason.clone(),
                }))
                .collect(),
        }
    }
}

/// `GET /api/schedules/plan`: what a run would do now; nothing is changed.
#[utoipa::path(
    get,
    path = "/api/schedules/plan",
    tag = TAG_SCHEDULES,
    summary = "The plan now: each scheduled instance, the state wanted, why, the action",
    responses(
        (status = 200, description = "The plan", body = PlanView),
        (status = 404, description = "No schedules configured", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["reader"]), ("api_key" = ["reader"])),
)]
pub(crate) async fn plan(State(state): State<AppState>) -> ApiResult<PlanView> {
    let plan = scheduler(&state)?.plan().await.map_err(failed)?;
    Ok(Json(PlanView::from(&plan)))
}

/// One applied action.
#[derive(Debug, Serialize, ToSchema)]
pub struct AppliedView {
    /// Its provider.
    pub provider: String,
    /// The instance.
    pub id: String,
    /// The action.
    pub action: String,
    /// `ok` or `failed`.
    pub outcome: String,
    /// The provider's error, when it failed.
    pub error: Option<String>,
}

/// What `POST /api/schedules/apply` did.
#[derive(Debug, Serialize, ToSchema)]
pub struct ApplyView {
    /// The plan applied.
    pub plan: PlanView,
    /// Each action's outcome.
    pub applied: Vec<AppliedView>,
}

fn applied_view(applied: &Applied) -> AppliedView {
    AppliedView {
        provider: applied.item.provider.clone(),
        id: applied.item.id.to_string(),
        action: applied.item.action.to_string(),
        outcome: if applied.error.is_some() {
            "failed"
        } else {
            "ok"
        }
        .to_owned(),
        error: applied.error.clone(),
    }
}

/// `POST /api/schedules/apply`: plans and applies now (after a run in progress), recording
/// every action.
#[utoipa::path(
    post,
    path = "/api/schedules/apply",
    tag = TAG_SCHEDULES,
    summary = "Plans and applies now; every action is recorded",
    responses(
        (status = 200, description = "What was done (see each outcome)", body = ApplyView),
        (status = 404, description = "No schedules configured", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["operator"]), ("api_key" = ["operator"])),
)]
pub(crate) async fn apply(State(state): State<AppState>) -> ApiResult<ApplyView> {
    let (plan, applied) = scheduler(&state)?.apply().await.map_err(failed)?;
    debug_assert!(applied.iter().all(|a| a.item.action != Action::None));
    Ok(Json(ApplyView {
        plan: PlanView::from(&plan),
        applied: applied.iter().map(applied_view).collect(),
    }))
}

/// Query of `GET /api/schedules/history`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct HistoryQuery {
    /// How many events, newest first (default 100, at most 1000).
    limit: Option<usize>,
}

/// One recorded action.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventView {
    /// When (RFC 3339).
    pub at: String,
    /// The run.
    pub run: String,
    /// The provider.
    pub provider: String,
    /// The instance.
    pub instance: String,
    /// The schedule.
    pub schedule: String,
    /// The action.
    pub action: String,
    /// Why.
    pub reason: String,
    /// `ok` or `failed`.
    pub outcome: String,
    /// The error, when it failed.
    pub error: Option<String>,
}

/// `GET /api/schedules/history`: the audit trail (schedule runs and agents' decisions), newest
/// first.
#[utoipa::path(
    get,
    path = "/api/schedules/history",
    tag = TAG_SCHEDULES,
    summary = "The recorded actions, newest first",
    params(HistoryQuery),
    responses(
        (status = 200, description = "The events", body = Vec<EventView>),
        (status = 404, description = "No schedules configured", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["reader"]), ("api_key" = ["reader"])),
)]
pub(crate) async fn history(
    State(state): State<AppState>,
    QueryParams(query): QueryParams<HistoryQuery>,
) -> ApiResult<Vec<EventView>> {
    let limit = query.limit.unwrap_or(100).clamp(1, 1000);
    // The trail is one: a server with agents and no schedules has it too.
    let events = match (&state.scheduler, &state.agents) {
        (None, Some((agents, _))) => agents.history(limit).await.map_err(failed)?,
        _ => scheduler(&state)?.history(limit).await.map_err(failed)?,
    };
    Ok(Json(
        events
            .into_iter()
            .map(|event| EventView {
                at: event.at.to_string(),
                run: event.run,
                provider: event.provider,
                instance: event.instance,
                schedule: event.schedule,
                action: event.action,
                reason: event.reason,
                outcome: event.outcome,
                error: event.error,
            })
            .collect(),
    ))
}
