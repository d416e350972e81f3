//! The handlers, their request and response bodies, and their OpenAPI descriptions.
//!
//! Each handler's `security` names the role it needs; the router reads the roles back from the
//! generated document, so what the document says is what is enforced.

use std::sync::Arc;
use std::time::Duration;

use axum::Extension;
use axum::Json;
use axum::extract::State;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::auth::Role;
use super::problem::{ApiError, Body, OptionalBody, PathParams, Problem, QueryParams};
use snoozebot_core::CloudProvider;
use snoozebot_core::manager::{DiscoveredProvider, LoadOptions, LoadedProvider, PluginManager};
use snoozebot_core::{Error, ErrorKind};
use snoozebot_core::{
    InstanceFilter, InstanceId, InstanceInfo, InstanceState, PageRequest, StateChange, StopMode,
    StopOptions, checked_batch,
};

/// Who is calling, as the auth layer found: put in the request's extensions.
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    pub(crate) role: Option<Role>,
}

/// The key presented on an agent route, for its handler to check against the path.
#[derive(Debug, Clone)]
#[cfg_attr(not(feature = "schedules"), allow(dead_code))]
pub(crate) struct PresentedKey(pub(crate) Option<String>);

/// What every handler shares.
#[derive(Clone)]
pub(crate) struct AppState {
    pub(crate) manager: Arc<PluginManager>,
    /// The scheduler behind the schedule routes, if this server runs schedules.
    #[cfg(feature = "schedules")]
    pub(crate) scheduler: Option<Arc<snoozebot_schedule::Scheduler>>,
    /// The agents behind the agent routes, and their keys.
    #[cfg(feature = "schedules")]
    pub(crate) agents: Option<(Arc<snoozebot_schedule::Agents>, crate::AgentKeys)>,
    /// [`HttpOptions::load_registered_on_use`](crate::HttpOptions::load_registered_on_use).
    pub(crate) load_registered_on_use: bool,
    /// The OpenAPI document, serialized once.
    pub(crate) document: Arc<String>,
    pub(crate) limits: Limits,
}

/// Page and batch limits.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub(crate) default_page_size: usize,
    pub(crate) max_page_size: usize,
    pub(crate) max_batch: usize,
}

type ApiResult<T> = Result<Json<T>, ApiError>;

const TAG_PLUGINS: &str = "plugins";
const TAG_INSTANCES: &str = "instances";

// ---------------------------------------------------------------------------------------------
// Plugins

/// `GET /api/plugins`: the loaded providers.
#[utoipa::path(
    get,
    path = "/api/plugins",
    tag = TAG_PLUGINS,
    summary = "The loaded providers, with what they say about themselves and their health",
    responses((status = 200, description = "The loaded providers", body = Vec<LoadedProvider>)),
    security(("bearer" = ["reader"]), ("api_key" = ["reader"])),
)]
pub(crate) async fn list_plugins(State(state): State<AppState>) -> ApiResult<Vec<LoadedProvider>> {
    Ok(Json(state.manager.list().await))
}

/// Query of `GET /api/plugins/discover`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct DiscoverQuery {
    /// Load every loadable provider found that is not loaded yet (role `admin`).
    #[serde(default)]
    autoload: bool,
}

/// One provider that autoload tried to load and could not.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct AutoloadFailure {
    /// The provider's name.
    name: String,
    /// Why it did not load.
    problem: Problem,
}

/// Answer of `GET /api/plugins/discover`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct DiscoverResponse {
    /// Every provider that could be loaded (and those that cannot, with their problem).
    plugins: Vec<DiscoveredProvider>,
    /// With `autoload`: the providers that failed to load.
    autoload_failures: Vec<AutoloadFailure>,
}

/// `GET /api/plugins/discover`.
#[utoipa::path(
    get,
    path = "/api/plugins/discover",
    tag = TAG_PLUGINS,
    summary = "Every provider that could be loaded: registered ones and plugin executables",
    description = "With `autoload=true` (role `admin`), loads each loadable provider that is not loaded yet; failures are listed, not fatal.",
    params(DiscoverQuery),
    responses((status = 200, description = "What was found", body = DiscoverResponse)),
    security(("bearer" = ["reader"]), ("api_key" = ["reader"])),
)]
pub(crate) async fn discover(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    QueryParams(query): QueryParams<DiscoverQuery>,
) -> ApiResult<DiscoverResponse> {
    if query.autoload && caller.role < Some(Role::Admin) {
        return Err(forbidden(Role::Admin, "autoload"));
    }
    let found = state.manager.discover().await?;
    let mut autoload_failures = Vec::new();
    if query.autoload {
        for plugin in found
            .iter()
            .filter(|plugin| !plugin.loaded && plugin.problem.is_none())
        {
            if let Err(error) = state.manager.load(&plugin.name).await {
                autoload_failures.push(AutoloadFailure {
                    name: plugin.name.clone(),
                    problem: Problem::from_error(&error),
                });
            }
        }
    }
    let plugins = if query.autoload {
        state.manager.discover().await?
    } else {
        found
    };
    Ok(Json(DiscoverResponse {
        plugins,
        autoload_failures,
    }))
}

pub(crate) fn forbidden(needed: Role, what: &str) -> ApiError {
    ApiError::from(Error::new(
        ErrorKind::PermissionDenied,
        format!("{what} needs the {needed} role"),
    ))
}

/// Body of `POST /api/plugins/load`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct LoadRequest {
    /// The provider's name.
    #[schema(min_length = 1, max_length = 64)]
    plugin_name: String,
    /// The time limit for one attempt to load it, in seconds (1 to 600; default 30).
    #[serde(default)]
    #[schema(minimum = 1, maximum = 600)]
    timeout_seconds: Option<u64>,
    /// How many times to try again after a retryable failure (0 to 10; default 2).
    #[serde(default)]
    #[schema(minimum = 0, maximum = 10)]
    retries: Option<u32>,
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::from(Error::invalid_argument(message))
}

/// `POST /api/plugins/load`.
#[utoipa::path(
    post,
    path = "/api/plugins/load",
    tag = TAG_PLUGINS,
    summary = "Loads a provider (starts a plugin executable), or returns it if already loaded",
    request_body = LoadRequest,
    responses((status = 200, description = "The loaded provider", body = LoadedProvider)),
    security(("bearer" = ["admin"]), ("api_key" = ["admin"])),
)]
pub(crate) async fn load(
    State(state): State<AppState>,
    Body(request): Body<LoadRequest>,
) -> ApiResult<LoadedProvider> {
    let mut options = LoadOptions::default();
    if let Some(seconds) = request.timeout_seconds {
        if !(1..=600).contains(&seconds) {
            return Err(invalid("timeout_seconds must be between 1 and 600"));
        }
        options = options.with_timeout(Duration::from_secs(seconds));
    }
    if let Some(retries) = request.retries {
        if retries > 10 {
            return Err(invalid("retries must be between 0 and 10"));
        }
        options = options.with_max_attempts(retries + 1);
    }
    state
        .manager
        .load_with(&request.plugin_name, &options)
        .await?;
    loaded(&state, &request.plugin_name).await.map(Json)
}

async fn loaded(state: &AppState, name: &str) -> Result<LoadedProvider, ApiError> {
    // Asking for it by name first gives the manager's own "unknown name" error.
    state.manager.get(name)?;
    state
        .manager
        .list()
        .await
        .into_iter()
        .find(|provider| provider.name == name)
        .ok_or_else(|| ApiError::from(Error::not_found(format!("provider {name:?} is not loaded"))))
}

/// Body of `POST /api/plugins/unload`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct UnloadRequest {
    /// The provider's name.
    #[schema(min_length = 1, max_length = 64)]
    plugin_name: String,
    /// Unload even with calls in flight through this API (they then fail). Without it, such
    /// an unload is refused with `409`.
    #[serde(default)]
    force: bool,
}

/// Answer of `POST /api/plugins/unload`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct UnloadResponse {
    /// The provider's name.
    plugin_name: String,
    /// Calls that were in flight and were cut (only with `force`).
    interrupted_calls: usize,
}

/// `POST /api/plugins/unload`.
#[utoipa::path(
    post,
    path = "/api/plugins/unload",
    tag = TAG_PLUGINS,
    summary = "Unloads a provider (stops its plugin process); unloading what is not loaded does nothing",
    request_body = UnloadRequest,
    responses((status = 200, description = "Unloaded", body = UnloadResponse)),
    security(("bearer" = ["admin"]), ("api_key" = ["admin"])),
)]
pub(crate) async fn unload(
    State(state): State<AppState>,
    Body(request): Body<UnloadRequest>,
) -> ApiResult<UnloadResponse> {
    let name = &request.plugin_name;
    // The manager refuses atomically; the count is only what the answer reports.
    let interrupted_calls = if request.force {
        let busy = state.manager.in_flight(name);
        state.manager.force_unload(name).await?;
        busy
    } else {
        state.manager.unload(name).await.map_err(|error| {
            if error.kind() == ErrorKind::InvalidState {
                Error::invalid_state(format!(
                    "{}; unload with \"force\": true to cut them",
                    error.message()
                ))
            } else {
                error
            }
        })?;
        0
    };
    Ok(Json(UnloadResponse {
        plugin_name: request.plugin_name,
        interrupted_calls,
    }))
}

/// `GET /api/plugins/{name}`.
#[utoipa::path(
    get,
    path = "/api/plugins/{name}",
    tag = TAG_PLUGINS,
    summary = "One loaded provider",
    params(ProviderPath),
    responses((status = 200, description = "The provider", body = LoadedProvider)),
    security(("bearer" = ["reader"]), ("api_key" = ["reader"])),
)]
pub(crate) async fn get_plugin(
    State(state): State<AppState>,
    PathParams(ProviderPath { name }): PathParams<ProviderPath>,
) -> ApiResult<LoadedProvider> {
    loaded(&state, &name).await.map(Json)
}

// ---------------------------------------------------------------------------------------------
// Instances

/// The loaded provider `name`; each call through it holds the manager's lease, and goes
/// through the manager's middleware stack.
async fn provider(state: &AppState, name: &str) -> Result<Arc<dyn CloudProvider>, ApiError> {
    match state.manager.get(name) {
        Err(_) if state.load_registered_on_use && state.manager.is_registered(name) => {
            Ok(state.manager.load(name).await?)
        }
        found => Ok(found?),
    }
}

fn instance_id(id: &str) -> Result<InstanceId, ApiError> {
    InstanceId::new(id).map_err(ApiError::from)
}

/// The path of a provider's routes.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub(crate) struct ProviderPath {
    /// The provider's name.
    name: String,
}

/// The path of one instance's routes.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub(crate) struct InstancePath {
    /// The provider's name.
    name: String,
    /// The instance id; percent-encode `/` (GCE `project/zone/name`, Azure resource ids).
    id: String,
}

/// A page of instances.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct InstancePage {
    /// The instances, in the provider's order.
    instances: Vec<InstanceInfo>,
    /// Pass as `page_token` for the next page; absent on the last.
    #[serde(skip_serializing_if = "Option::is_none")]
    next_page_token: Option<String>,
}

/// Reads the instance query by hand: `tag` and `state` repeat.
fn instance_query(
    pairs: Vec<(String, String)>,
    limits: Limits,
) -> Result<(InstanceFilter, PageRequest), ApiError> {
    let mut filter = InstanceFilter::new();
    let mut page_size = limits.default_page_size;
    let mut after = None;
    for (name, value) in pairs {
        match name.as_str() {
            "tag" => {
                let (key, value) = value
                    .split_once('=')
                    .ok_or_else(|| invalid(format!("tag {value:?} is not KEY=VALUE")))?;
                filter = filter.with_tag(key, value);
            }
            "state" => {
                let state: InstanceState =
                    serde_json::from_value(serde_json::Value::String(value.clone()))
                        .map_err(|_| invalid(format!("unknown state {value:?}")))?;
                filter = filter.with_state(state);
            }
            "name_prefix" => filter = filter.with_name_prefix(value),
            "page_size" => {
                page_size = value
                    .parse::<usize>()
                    .ok()
                    .filter(|size| (1..=limits.max_page_size).contains(size))
                    .ok_or_else(|| {
                        invalid(format!(
                            "page_size must be a number from 1 to {}",
                            limits.max_page_size
                        ))
                    })?;
            }
            "page_token" => {
                // The provider's own token, wrapped so that any token is URL-safe.
                let token = base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(value.as_bytes())
                    .ok()
                    .and_then(|bytes| String::from_utf8(bytes).ok())
                    .filter(|token| !token.is_empty())
                    .ok_or_else(|| invalid("page_token is not one this API gave"))?;
                after = Some(token);
            }
            other => return Err(invalid(format!("unknown query parameter {other:?}"))),
        }
    }
    let page = match after {
        Some(token) => PageRequest::after(page_size, token),
        None => PageRequest::first(page_size),
    };
    Ok((filter, page))
}

/// `GET /api/providers/{name}/instances`.
#[utoipa::path(
    get,
    path = "/api/providers/{name}/instances",
    tag = TAG_INSTANCES,
    summary = "The provider's instances, filtered and paged",
    description = "One page of the provider's own listing (one or a few cloud list calls, not the whole fleet): instances come in the provider's order, and `page_token` continues where the previous page ended. A page may hold fewer than `page_size` instances and still have a next one. Providers that cannot page natively order by id and continue after the last id, so instances added or removed meanwhile do not shift the pages.",
    params(
        ProviderPath,
        ("tag" = Option<Vec<String>>, Query, description = "KEY=VALUE; repeat for several, all must match", pattern = "^[^=]+=.*$"),
        ("state" = Option<Vec<InstanceState>>, Query, description = "Any of these states; repeat for several"),
        ("name_prefix" = Option<String>, Query, description = "Only names starting with this"),
        ("page_size" = Option<u32>, Query, description = "1 to 500 (default 100)", minimum = 1, maximum = 500),
        ("page_token" = Option<String>, Query, description = "From the previous page's next_page_token", pattern = "^[A-Za-z0-9_-]+$"),
    ),
    responses((status = 200, description = "A page of instances", body = InstancePage)),
    security(("bearer" = ["reader"]), ("api_key" = ["reader"])),
)]
pub(crate) async fn list_instances(
    State(state): State<AppState>,
    PathParams(ProviderPath { name }): PathParams<ProviderPath>,
    QueryParams(pairs): QueryParams<Vec<(String, String)>>,
) -> ApiResult<InstancePage> {
    let (filter, page) = instance_query(pairs, state.limits)?;
    let provider = provider(&state, &name).await?;
    let page = provider.list_instances_page(&filter, &page).await?;
    Ok(Json(InstancePage {
        instances: page.instances,
        next_page_token: page
            .next_token
            .map(|token| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(token)),
    }))
}

/// `GET /api/providers/{name}/instances/{id}`.
#[utoipa::path(
    get,
    path = "/api/providers/{name}/instances/{id}",
    tag = TAG_INSTANCES,
    summary = "One instance",
    params(InstancePath),
    responses((status = 200, description = "The instance", body = InstanceInfo)),
    security(("bearer" = ["reader"]), ("api_key" = ["reader"])),
)]
pub(crate) async fn get_instance(
    State(state): State<AppState>,
    PathParams(InstancePath { name, id }): PathParams<InstancePath>,
) -> ApiResult<InstanceInfo> {
    let id = instance_id(&id)?;
    let provider = provider(&state, &name).await?;
    Ok(Json(provider.get_instance(&id).await?))
}

/// Body of a stop: all optional.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct StopRequest {
    /// The stop mode; absent: the provider's default, which always ends compute billing.
    #[serde(default)]
    mode: Option<StopMode>,
    /// Skip the graceful shutdown.
    #[serde(default)]
    force: bool,
    /// Only check that the stop would be allowed.
    #[serde(default)]
    dry_run: bool,
    /// If the mode is refused for this instance (hibernation not enabled), use the default.
    #[serde(default)]
    allow_fallback: bool,
}

impl StopRequest {
    fn options(&self) -> StopOptions {
        let options = StopOptions::default()
            .with_force(self.force)
            .with_dry_run(self.dry_run)
            .with_allow_fallback(self.allow_fallback);
        match self.mode {
            Some(mode) => options.with_mode(mode),
            None => options,
        }
    }
}

/// `POST /api/providers/{name}/instances/{id}/stop`.
#[utoipa::path(
    post,
    path = "/api/providers/{name}/instances/{id}/stop",
    tag = TAG_INSTANCES,
    summary = "Stops one instance",
    params(InstancePath),
    request_body(content = Option<StopRequest>, description = "Optional; defaults to the provider's default stop"),
    responses((status = 200, description = "What changed", body = StateChange)),
    security(("bearer" = ["operator"]), ("api_key" = ["operator"])),
)]
pub(crate) async fn stop_instance(
    State(state): State<AppState>,
    PathParams(InstancePath { name, id }): PathParams<InstancePath>,
    OptionalBody(request): OptionalBody<StopRequest>,
) -> ApiResult<StateChange> {
    let id = instance_id(&id)?;
    let provider = provider(&state, &name).await?;
    Ok(Json(provider.stop_instance(&id, &request.options()).await?))
}

/// `POST /api/providers/{name}/instances/{id}/start`.
#[utoipa::path(
    post,
    path = "/api/providers/{name}/instances/{id}/start",
    tag = TAG_INSTANCES,
    summary = "Starts one instance",
    params(InstancePath),
    responses((status = 200, description = "What changed", body = StateChange)),
    security(("bearer" = ["operator"]), ("api_key" = ["operator"])),
)]
pub(crate) async fn start_instance(
    State(state): State<AppState>,
    PathParams(InstancePath { name, id }): PathParams<InstancePath>,
) -> ApiResult<StateChange> {
    let id = instance_id(&id)?;
    let provider = provider(&state, &name).await?;
    Ok(Json(provider.start_instance(&id).await?))
}

/// Body of a batch stop.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct BatchStopRequest {
    /// The instance ids (1 to 500).
    #[schema(min_items = 1, max_items = 500)]
    ids: Vec<String>,
    /// The stop mode; absent: the provider's default.
    #[serde(default)]
    mode: Option<StopMode>,
    /// Skip the graceful shutdown.
    #[serde(default)]
    force: bool,
    /// Only check that the stops would be allowed.
    #[serde(default)]
    dry_run: bool,
    /// If the mode is refused for an instance, use the default.
    #[serde(default)]
    allow_fallback: bool,
}

/// Body of a batch start.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct BatchStartRequest {
    /// The instance ids (1 to 500).
    #[schema(min_items = 1, max_items = 500)]
    ids: Vec<String>,
}

/// One id's outcome in a batch: `change` or `error`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct BatchResult {
    /// The id as given.
    id: String,
    /// What changed, when it worked.
    #[serde(skip_serializing_if = "Option::is_none")]
    change: Option<StateChange>,
    /// Why not, when it did not.
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<Problem>,
}

/// The outcome of a batch, one result per id, in the order given.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct BatchResponse {
    /// One per id.
    results: Vec<BatchResult>,
}

fn check_batch(ids: &[String], limits: Limits) -> Result<(), ApiError> {
    if ids.is_empty() || ids.len() > limits.max_batch {
        return Err(invalid(format!(
            "a batch takes 1 to {} ids, not {}",
            limits.max_batch,
            ids.len()
        )));
    }
    Ok(())
}

/// Runs `call` on the valid ids; invalid ids get their own error, in place.
async fn batch<F>(ids: Vec<String>, call: F) -> BatchResponse
where
    F: AsyncFnOnce(Vec<InstanceId>) -> Vec<(InstanceId, snoozebot_core::Result<StateChange>)>,
{
    let outcomes = checked_batch(&ids, |id| InstanceId::new(id.as_str()), call).await;
    let results = ids
        .into_iter()
        .zip(outcomes)
        .map(|(id, outcome)| match outcome {
            Ok(change) => BatchResult {
                id,
                change: Some(change),
                error: None,
            },
            Err(error) => BatchResult {
                id,
                change: None,
                error: Some(Problem::from_error(&error)),
            },
        })
        .collect();
    BatchResponse { results }
}

/// `POST /api/providers/{name}/instances/stop`.
#[utoipa::path(
    post,
    path = "/api/providers/{name}/instances/stop",
    tag = TAG_INSTANCES,
    summary = "Stops several instances; one result per id",
    params(ProviderPath),
    request_body = BatchStopRequest,
    responses((status = 200, description = "One result per id, in order", body = BatchResponse)),
    security(("bearer" = ["operator"]), ("api_key" = ["operator"])),
)]
pub(crate) async fn stop_instances(
    State(state): State<AppState>,
    PathParams(ProviderPath { name }): PathParams<ProviderPath>,
    Body(request): Body<BatchStopRequest>,
) -> ApiResult<BatchResponse> {
    check_batch(&request.ids, state.limits)?;
    let provider = provider(&state, &name).await?;
    let options = StopRequest {
        mode: request.mode,
        force: request.force,
        dry_run: request.dry_run,
        allow_fallback: request.allow_fallback,
    }
    .options();
    Ok(Json(
        batch(request.ids, async |ids| {
            provider.stop_instances(&ids, &options).await
        })
        .await,
    ))
}

/// `POST /api/providers/{name}/instances/start`.
#[utoipa::path(
    post,
    path = "/api/providers/{name}/instances/start",
    tag = TAG_INSTANCES,
    summary = "Starts several instances; one result per id",
    params(ProviderPath),
    request_body = BatchStartRequest,
    responses((status = 200, description = "One result per id, in order", body = BatchResponse)),
    security(("bearer" = ["operator"]), ("api_key" = ["operator"])),
)]
pub(crate) async fn start_instances(
    State(state): State<AppState>,
    PathParams(ProviderPath { name }): PathParams<ProviderPath>,
    Body(request): Body<BatchStartRequest>,
) -> ApiResult<BatchResponse> {
    check_batch(&request.ids, state.limits)?;
    let provider = provider(&state, &name).await?;
    Ok(Json(
        batch(request.ids, async |ids| {
            provider.start_instances(&ids).await
        })
        .await,
    ))
}
