//! The Snoozebot REST API: an axum [`Router`] for plugins and instances that a service mounts
//! in its own app, with API keys and roles, RFC 9457 problem answers and an OpenAPI 3.1
//! document generated from the handlers. Every call goes through the
//! [`PluginManager`], so it is retried, traced and leased as
//! the manager's [`ProviderStack`] says.
//!
//! ```no_run
//! use std::sync::Arc;
//! use snoozebot_core::PluginManager;
//! use snoozebot_rest::{ApiKeys, Role};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let manager = Arc::new(PluginManager::new());
//! let mut keys = ApiKeys::from_file("/etc/snoozebot/api-keys")?; // `ROLE SHA256 [LABEL]` lines
//! let app = snoozebot_rest::router(manager, keys);
//! let listener = snoozebot_rest::bind("127.0.0.1:8080".parse()?)?;
//! snoozebot_rest::serve(listener, app, async { let _ = tokio::signal::ctrl_c().await; }).await?;
//! # Ok(()) }
//! ```
//!
//! | route | role |
//! |---|---|
//! | `GET /api/plugins`, `GET /api/plugins/{name}`, `GET /api/plugins/discover` | reader (`?autoload=true`: admin) |
//! | `POST /api/plugins/load`, `POST /api/plugins/unload` | admin |
//! | `GET /api/providers/{name}/instances[/{id}]` | reader |
//! | `POST /api/providers/{name}/instances/{id}/stop`, `.../start`, `.../instances/stop`, `.../instances/start` | operator |
//! | `GET /api/schedules`, `GET /api/schedules/plan`, `GET /api/schedules/history` (feature `schedules`) | reader |
//! | `POST /api/schedules/apply` (feature `schedules`) | operator |
//! | `GET /api/agents`, `GET /api/agents/{provider}/{instance}` (feature `schedules`) | reader |
//! | `POST /api/agents/{provider}/{instance}/register`, `…/heartbeat`, `…/idle`, `…/active` (feature `schedules`) | that instance's [agent key](AgentKeys) only |
//! | `GET /api/openapi.json` | none |
//!
//! A key is sent as `Authorization: Bearer <key>` or `X-API-Key: <key>`. No key, or an unknown
//! one: `401` with `WWW-Authenticate`; a key whose role is too weak: `403`. Each role may do
//! what the weaker ones may. The role a route needs is written once, in the handler's OpenAPI
//! `security`, and read back from the generated document: the document is what is enforced.
//!
//! Every error is `application/problem+json` ([`Problem`]) carrying the [`ErrorKind`]
//! ([`status_for`] gives the status). Malformed JSON, a wrong content type, a body over the
//! limit, an unknown route or method, a request past its time limit, and too many requests at
//! once are problems too, never a dropped connection. Requests are traced (tower-http) without
//! their keys.
//!
//! [`ErrorKind`]: snoozebot_core::ErrorKind
//! [`ProviderStack`]: snoozebot_core::ProviderStack

#![cfg_attr(docsrs, feature(doc_cfg))]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod admission;
#[cfg(feature = "schedules")]
mod agents;
mod api;
mod auth;
mod problem;
mod refusals;
#[cfg(feature = "schedules")]
mod schedules;
mod serve;
mod tls;

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderName, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::trace::TraceLayer;
use utoipa::OpenApi as _;
use utoipa::openapi::OpenApi;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use auth::{AgentKeys, ApiKeys, KeyRing, Role};
pub use problem::{PROBLEM_JSON, Problem, status_for};
pub use serve::{LISTEN_BACKLOG, ServeOptions, bind, serve_with};
pub use tls::tls_config;

use admission::Admission;
use api::{AppState, Caller, Limits};
use problem::ApiError;
use snoozebot_core::ErrorKind;
use snoozebot_core::manager::PluginManager;

/// The header a key may also be sent in, instead of `Authorization: Bearer`.
pub const API_KEY_HEADER: &str = "x-api-key";

/// How the router protects itself.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct HttpOptions {
    /// The time limit of one request (default 120 s: a stop that follows a cloud's long-running
    /// operation takes a while). Past it: `504`.
    pub request_timeout: Duration,
    /// Instance requests (`/api/providers/...`) handled at once (default 64); more are
    /// answered `503` with `Retry-After: 1`.
    pub max_concurrent_requests: usize,
    /// Of those, requests to one provider at once (default 16), so one slow provider cannot
    /// take them all.
    pub max_concurrent_per_provider: usize,
    /// Plugin and document requests handled at once (default 16), apart from the instance
    /// requests: the admin can unload a provider whose calls fill the instance pool.
    pub max_concurrent_control: usize,
    /// The largest request body, in bytes (default 256 KiB); larger: `413`.
    pub body_limit: usize,
    /// Instances per page when `page_size` is not given (default 100).
    pub default_page_size: usize,
    /// The largest `page_size` (500).
    pub max_page_size: usize,
    /// The most ids in one batch (500).
    pub max_batch: usize,
    /// Load a [registered](PluginManager::register) provider that is not loaded when a
    /// request names it, instead of answering `404` (default off: an admin loads providers).
    /// Providers only a source offers (plugin directories) are never loaded this way.
    pub load_registered_on_use: bool,
    /// The scheduler the schedule routes (`/api/schedules…`) answer from; without one they
    /// answer `404`.
    #[cfg(feature = "schedules")]
    pub scheduler: Option<Arc<snoozebot_schedule::Scheduler>>,
    /// The agents the agent routes (`/api/agents…`) answer for, and the keys they present;
    /// without them those routes answer `404`.
    #[cfg(feature = "schedules")]
    pub agents: Option<(Arc<snoozebot_schedule::Agents>, AgentKeys)>,
}

impl Default for HttpOptions {
    fn default() -> Self {
        Self {
            request_timeout: Duration::from_secs(120),
            max_concurrent_requests: 64,
            max_concurrent_per_provider: 16,
            max_concurrent_control: 16,
            body_limit: 256 * 1024,
            default_page_size: 100,
            max_page_size: 500,
            max_batch: 500,
            load_registered_on_use: false,
            #[cfg(feature = "schedules")]
            scheduler: None,
            #[cfg(feature = "schedules")]
            agents: None,
        }
    }
}

impl HttpOptions {
    /// Sets the time limit of one request.
    pub fn with_request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Sets how many instance requests are handled at once (and no provider more than that).
    pub fn with_max_concurrent_requests(mut self, requests: usize) -> Self {
        self.max_concurrent_requests = requests.max(1);
        self
    }

    /// Sets how many requests to one provider are handled at once.
    pub fn with_max_concurrent_per_provider(mut self, requests: usize) -> Self {
        self.max_concurrent_per_provider = requests.max(1);
        self
    }

    /// Sets how many plugin and document requests are handled at once.
    pub fn with_max_concurrent_control(mut self, requests: usize) -> Self {
        self.max_concurrent_control = requests.max(1);
        self
    }

    /// Sets the largest request body, in bytes.
    pub fn with_body_limit(mut self, bytes: usize) -> Self {
        self.body_limit = bytes;
        self
    }

    /// Sets whether a registered provider is loaded when a request first names it.
    pub fn with_load_registered_on_use(mut self, load: bool) -> Self {
        self.load_registered_on_use = load;
        self
    }

    /// Answers the schedule routes from `scheduler`.
    #[cfg(feature = "schedules")]
    pub fn with_scheduler(mut self, scheduler: Arc<snoozebot_schedule::Scheduler>) -> Self {
        self.scheduler = Some(scheduler);
        self
    }

    /// Answers the agent routes for `agents`, accepting the agent keys `keys` derives.
    #[cfg(feature = "schedules")]
    pub fn with_agents(mut self, agents: Arc<snoozebot_schedule::Agents>, keys: AgentKeys) -> Self {
        self.agents = Some((agents, keys));
        self
    }
}

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "Snoozebot REST API",
        description = "Plugins and instances of the providers a Snoozebot PluginManager hosts. Every error is application/problem+json (RFC 9457) carrying the Snoozebot error kind.",
        license(name = "MIT OR Apache-2.0"),
    ),
    components(schemas(Problem, Role)),
    tags(
        (name = "plugins", description = "Providers: discover, load, unload, health"),
        (name = "instances", description = "Instances of a loaded provider: list, get, stop, start"),
        (name = "schedules", description = "Schedules (feature schedules): the schedules, the plan now, applying it, the history"),
        (name = "agents", description = "Agents on instances (feature schedules): register, heartbeat, idle and active reports with the agent's own key; the agents and the server's decisions"),
        (name = "meta", description = "This document"),
    ),
)]
struct ApiDoc;

/// `GET /api/openapi.json`: this API's OpenAPI 3.1 document.
#[utoipa::path(
    get,
    path = "/api/openapi.json",
    tag = "meta",
    summary = "This API's OpenAPI 3.1 document",
    responses((status = 200, description = "The document", content_type = "application/json")),
    security(()),
)]
async fn openapi_json(State(state): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        state.document.as_str().to_owned(),
    )
        .into_response()
}

/// The generated document, with its security schemes and the problem answers every route can
/// give added to each operation.
fn document(mut openapi: OpenApi) -> OpenApi {
    let components = openapi.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        "bearer",
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .description(Some("An API key: `Authorization: Bearer <key>`"))
                .build(),
        ),
    );
    components.add_security_scheme(
        "api_key",
        SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
            API_KEY_HEADER,
            "The same key in `X-API-Key`",
        ))),
    );
    openapi.info.version = env!("CARGO_PKG_VERSION").to_owned();
    problems::add_to_every_operation(&mut openapi);
    openapi
}

mod problems {
    //! The problem answers of every operation, added to the document in one place.

    use utoipa::openapi::content::ContentBuilder;
    use utoipa::openapi::path::Operation;
    use utoipa::openapi::{OpenApi, Ref, ResponseBuilder};

    const COMMON: [(&str, &str); 8] = [
        (
            "400",
            "Malformed request: bad JSON, a bad id, a bad parameter",
        ),
        ("404", "Unknown route, provider, plugin or instance"),
        ("405", "Method not allowed on this route"),
        ("413", "Request body over the limit"),
        ("415", "Request body is not application/json"),
        ("500", "A bug or a misconfiguration"),
        (
            "503",
            "Too many requests at once, or the provider's cloud is unavailable",
        ),
        ("504", "The request ran past its time limit"),
    ];
    const PROTECTED: [(&str, &str); 2] = [
        ("401", "No API key, or an unknown one"),
        (
            "403",
            "The key's role is too weak, or the cloud refused the provider",
        ),
    ];
    const PROVIDER_CALLS: [(&str, &str); 4] = [
        (
            "409",
            "The instance's state does not allow it, or calls are in flight",
        ),
        ("429", "The cloud is throttling; see Retry-After"),
        (
            "501",
            "The provider does not support the operation or option",
        ),
        (
            "502",
            "The provider failed: its plugin, or its cloud credentials",
        ),
    ];

    fn add(operation: &mut Operation, answers: &[(&str, &str)]) {
        for (status, description) in answers {
            if operation.responses.responses.contains_key(*status) {
                continue;
            }
            let response = ResponseBuilder::new()
                .description(*description)
                .content(
                    super::PROBLEM_JSON,
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("Problem")))
                        .build(),
                )
                .build();
            operation
                .responses
                .responses
                .insert((*status).to_owned(), response.into());
        }
    }

    pub(super) fn add_to_every_operation(openapi: &mut OpenApi) {
        for (path, item) in openapi.paths.paths.iter_mut() {
            for operation in [&mut item.get, &mut item.post].into_iter().flatten() {
                let public = operation.security.as_ref().is_some_and(|requirements| {
                    serde_json::to_value(requirements)
                        .ok()
                        .and_then(|value| value.as_array().cloned())
                        .is_some_and(|all| {
                            all.iter().any(|requirement| {
                                requirement.as_object().is_some_and(|map| map.is_empty())
                            })
                        })
                });
                add(operation, &COMMON);
                if !public {
                    add(operation, &PROTECTED);
                }
                if path.starts_with("/api/providers/")
                    || path.starts_with("/api/plugins")
                    || path.starts_with("/api/agents/")
                {
                    add(operation, &PROVIDER_CALLS);
                }
            }
        }
    }
}

/// What a route asks of its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Need {
    /// Nothing: public.
    Anyone,
    /// An API key of this role or a stronger one.
    Role(Role),
    /// The key of the agent of the instance the path names (checked by the handler, which
    /// reads the path; the scope `agent`).
    Agent,
}

/// What each `(method, path)` needs, read from the document; looked up by the matched path
/// as it is, without a copy per request.
#[derive(Debug, Default)]
struct RoleTable(HashMap<String, Vec<(Method, Need)>>);

impl RoleTable {
    fn insert(&mut self, method: Method, path: String, need: Need) {
        self.0.entry(path).or_default().push((method, need));
    }

    /// What `method` on `path` (a route template) needs; `None` for a route not in the
    /// document.
    fn need(&self, method: &Method, path: &str) -> Option<Need> {
        self.0
            .get(path)?
            .iter()
            .find(|(known, _)| known == method)
            .map(|(_, need)| *need)
    }

    /// How many operations.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.0.values().map(Vec::len).sum()
    }
}

/// The OpenAPI scope of the agent routes.
const AGENT_SCOPE: &str = "agent";

fn role_table(openapi: &OpenApi) -> RoleTable {
    let mut table = RoleTable::default();
    let Ok(document) = serde_json::to_value(openapi) else {
        return table;
    };
    let Some(paths) = document.get("paths").and_then(|paths| paths.as_object()) else {
        return table;
    };
    for (path, item) in paths {
        let Some(item) = item.as_object() else {
            continue;
        };
        for (method, operation) in item {
            let Ok(method) = Method::from_bytes(method.to_ascii_uppercase().as_bytes()) else {
                continue;
            };
            let requirements = operation
                .get("security")
                .and_then(|security| security.as_array());
            let scopes = || {
                requirements
                    .into_iter()
                    .flatten()
                    .filter_map(|requirement| requirement.as_object())
                    .flat_map(|requirement| requirement.values())
                    .filter_map(|scopes| scopes.as_array())
                    .flatten()
                    .filter_map(|scope| scope.as_str())
            };
            let need = match requirements {
                // An empty requirement is anonymous access.
                Some(all)
                    if all
                        .iter()
                        .any(|r| r.as_object().is_some_and(|m| m.is_empty())) =>
                {
                    Need::Anyone
                }
                // Only the agent scope: the agent's key, and nothing else.
                Some(_) if scopes().next().is_some() && scopes().all(|s| s == AGENT_SCOPE) => {
                    Need::Agent
                }
                Some(_) => Need::Role(
                    scopes()
                        .filter_map(|scope| scope.parse::<Role>().ok())
                        .min()
                        // Security without a known role: only admins (fail closed).
                        .unwrap_or(Role::Admin),
                ),
                // No security at all: fail closed too.
                None => Need::Role(Role::Admin),
            };
            table.insert(method, path.clone(), need);
        }
    }
    table
}

#[derive(Clone)]
struct Guard {
    keys: KeyRing,
    roles: Arc<RoleTable>,
}

fn presented_key(request: &Request) -> Option<&str> {
    let headers = request.headers();
    if let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
    {
        let (scheme, key) = value.split_once(' ')?;
        return scheme.eq_ignore_ascii_case("bearer").then_some(key.trim());
    }
    headers
        .get(HeaderName::from_static(API_KEY_HEADER))
        .and_then(|value| value.to_str().ok())
        .map(str::trim)
}

impl Guard {
    /// The answer to a request its route's role does not let through — `401` without a key
    /// the route takes, `403` for a role too weak — or `None`, the request marked with its
    /// [`Caller`] (or, on agents' routes, the key the agent presented).
    fn refusal(&self, request: &mut Request) -> Option<Response> {
        let path = request
            .extensions()
            .get::<MatchedPath>()
            .map_or("", MatchedPath::as_str);
        // HEAD is GET without the body (axum answers it with the GET handler): GET's role.
        let method = match request.method() {
            &Method::HEAD => &Method::GET,
            method => method,
        };
        let need = self
            .roles
            .need(method, path)
            // A route missing from the document: only admins (fail closed).
            .unwrap_or(Need::Role(Role::Admin));
        if need == Need::Agent {
            // The handler checks the agent's key against the instance its path names.
            let key = presented_key(request).map(str::to_owned);
            request.extensions_mut().insert(api::PresentedKey(key));
            return None;
        }
        let keys = self.keys.current();
        let caller = presented_key(request).and_then(|key| keys.identify(key));
        if let Need::Role(needed) = need {
            match caller {
                None => {
                    return Some(
                        ApiError::unauthorized(
                            "an API key is required: Authorization: Bearer <key> or X-API-Key: <key>",
                        )
                        .into_response(),
                    );
                }
                Some((role, label)) if role < needed => {
                    tracing::info!(key = label, %role, %needed, "API call refused: role too weak");
                    return Some(api::forbidden(needed, "this route").into_response());
                }
                Some((_, label)) => tracing::debug!(key = label, "API call"),
            }
        }
        request.extensions_mut().insert(Caller {
            role: caller.map(|(role, _)| role),
        });
        None
    }
}

/// The auth layer on every matched route: [`Guard::refusal`] before the route's handler.
///
/// A tower layer of its own rather than `middleware::from_fn`, which boxes a future and clones
/// a boxed service for every request: the refusal is a ready future, the way through is the
/// route's own.
#[derive(Clone)]
struct Authorize<S> {
    guard: Guard,
    route: S,
}

impl<S> tower::Layer<S> for Guard {
    type Service = Authorize<S>;

    fn layer(&self, route: S) -> Authorize<S> {
        Authorize {
            guard: self.clone(),
            route,
        }
    }
}

impl<S> tower::Service<Request> for Authorize<S>
where
    S: tower::Service<Request, Response = Response, Error = std::convert::Infallible>,
{
    type Response = Response;
    type Error = std::convert::Infallible;
    type Future = futures_util::future::Either<
        std::future::Ready<std::result::Result<Response, std::convert::Infallible>>,
        S::Future,
    >;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::result::Result<(), Self::Error>> {
        self.route.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request) -> Self::Future {
        match self.guard.refusal(&mut request) {
            None => futures_util::future::Either::Right(self.route.call(request)),
            Some(refusal) => futures_util::future::Either::Left(std::future::ready(Ok(refusal))),
        }
    }
}

/// Server errors logged per 10 s; beyond, they are counted into the next line.
static SERVER_ERRORS: snoozebot_core::LogBudget =
    snoozebot_core::LogBudget::new(10, Duration::from_secs(10));

/// The request log's last line: `DEBUG` as a rule; a server error at `WARN`, within a budget
/// that counts the rest (a crowd answered `503` cannot flood the log; shedding itself is
/// counted by the admission layer).
fn log_response(response: &Response, latency: Duration, _span: &tracing::Span) {
    let status = response.status().as_u16();
    let latency_ms = latency.as_secs_f64() * 1000.0;
    let shed = response.extensions().get::<admission::Shed>().is_some();
    if response.status().is_server_error() && !shed {
        if let Some(held_back) = SERVER_ERRORS.admit() {
            tracing::warn!(status, latency_ms, held_back, "request failed");
        }
    } else {
        tracing::debug!(status, latency_ms, "finished processing request");
    }
}

async fn unknown_route(request: Request) -> Response {
    ApiError::status(
        StatusCode::NOT_FOUND,
        ErrorKind::NotFound,
        format!("no route {} {}", request.method(), request.uri().path()),
    )
    .into_response()
}

async fn method_not_allowed(request: Request) -> Response {
    ApiError::status(
        StatusCode::METHOD_NOT_ALLOWED,
        ErrorKind::InvalidArgument,
        format!(
            "{} is not allowed on {}",
            request.method(),
            request.uri().path()
        ),
    )
    .into_response()
}

/// The routes and their document, before the state and the layers.
fn routes() -> (Router<AppState>, OpenApi) {
    let router = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(api::list_plugins))
        .routes(routes!(api::discover))
        .routes(routes!(api::load))
        .routes(routes!(api::unload))
        .routes(routes!(api::get_plugin))
        .routes(routes!(api::list_instances))
        .routes(routes!(api::get_instance))
        .routes(routes!(api::stop_instance))
        .routes(routes!(api::start_instance))
        .routes(routes!(api::stop_instances))
        .routes(routes!(api::start_instances))
        .routes(routes!(openapi_json));
    #[cfg(feature = "schedules")]
    let router = router
        .routes(routes!(schedules::list_schedules))
        .routes(routes!(schedules::plan))
        .routes(routes!(schedules::apply))
        .routes(routes!(schedules::history))
        .routes(routes!(agents::list_agents))
        .routes(routes!(agents::get_agent))
        .routes(routes!(agents::register))
        .routes(routes!(agents::heartbeat))
        .routes(routes!(agents::idle))
        .routes(routes!(agents::active));
    let (router, openapi) = router.split_for_parts();
    (router, document(openapi))
}

/// This API's OpenAPI 3.1 document, as `GET /api/openapi.json` serves it.
pub fn openapi() -> OpenApi {
    routes().1
}

/// The REST API over `manager`, accepting `keys`, with the default [`HttpOptions`].
pub fn router(manager: Arc<PluginManager>, keys: ApiKeys) -> Router {
    router_with(manager, keys, HttpOptions::default())
}

/// The REST API over `manager`, accepting `keys`, protected as `options` say.
pub fn router_with(manager: Arc<PluginManager>, keys: ApiKeys, options: HttpOptions) -> Router {
    router_with_keys(manager, KeyRing::new(keys), options)
}

/// [`router_with`], accepting the keys `keys` holds at each request: replace them (a reload
/// of the keys file) while the server runs.
pub fn router_with_keys(
    manager: Arc<PluginManager>,
    keys: KeyRing,
    options: HttpOptions,
) -> Router {
    let (routes, openapi) = routes();
    let guard = Guard {
        keys,
        roles: Arc::new(role_table(&openapi)),
    };
    let document = Arc::new(serde_json::to_string(&openapi).unwrap_or_else(|_| "{}".to_owned()));
    let state = AppState {
        manager,
        #[cfg(feature = "schedules")]
        scheduler: options.scheduler.clone(),
        #[cfg(feature = "schedules")]
        agents: options.agents.clone(),
        load_registered_on_use: options.load_registered_on_use,
        document,
        limits: Limits {
            default_page_size: options
                .default_page_size
                .clamp(1, options.max_page_size.max(1)),
            max_page_size: options.max_page_size.max(1),
            max_batch: options.max_batch.max(1),
        },
    };
    let admission = Admission::new(
        options.max_concurrent_requests,
        options.max_concurrent_per_provider,
        options.max_concurrent_control,
        options.request_timeout,
    );
    routes
        .route_layer(guard)
        .fallback(unknown_route)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
        // One stack, given to the router once: axum boxes each `layer`'s future on every
        // request, so four separate layers cost four allocations a request more than this.
        // Outermost first: keys hidden from the traces, the trace, the pools and time limit,
        // the body limit.
        .layer(
            tower::ServiceBuilder::new()
                .layer(SetSensitiveRequestHeadersLayer::new([
                    header::AUTHORIZATION,
                    HeaderName::from_static(API_KEY_HEADER),
                ]))
                .layer(
                    TraceLayer::new_for_http()
                        .on_failure(())
                        .on_response(log_response),
                )
                .layer(admission)
                .layer(DefaultBodyLimit::max(options.body_limit)),
        )
}

/// Serves `router` on `listener` with the default [`ServeOptions`] (header-read timeout, a
/// connection cap that makes room by closing idle connections) until `shutdown` completes,
/// then lets the requests in flight finish (graceful shutdown). [`serve_with`] takes options.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with(listener, router, ServeOptions::default(), shutdown).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_role_table_comes_from_the_document() {
        let table = role_table(&openapi());
        let role = |method: Method, path: &str| table.need(&method, path);
        let needs = |role: Role| Some(Need::Role(role));
        assert_eq!(role(Method::GET, "/api/plugins"), needs(Role::Reader));
        assert_eq!(role(Method::POST, "/api/plugins/load"), needs(Role::Admin));
        assert_eq!(
            role(Method::POST, "/api/providers/{name}/instances/{id}/stop"),
            needs(Role::Operator)
        );
        assert_eq!(role(Method::GET, "/api/openapi.json"), Some(Need::Anyone));
        #[cfg(feature = "schedules")]
        {
            assert_eq!(
                role(Method::GET, "/api/schedules/plan"),
                needs(Role::Reader)
            );
            assert_eq!(
                role(Method::POST, "/api/schedules/apply"),
                needs(Role::Operator)
            );
            assert_eq!(role(Method::GET, "/api/agents"), needs(Role::Reader));
            for action in ["register", "heartbeat", "idle", "active"] {
                assert_eq!(
                    role(
                        Method::POST,
                        &format!("/api/agents/{{provider}}/{{instance}}/{action}")
                    ),
                    Some(Need::Agent),
                    "{action}"
                );
            }
        }
        let schedule_routes = if cfg!(feature = "schedules") {
            4 + 6
        } else {
            0
        };
        assert_eq!(table.len(), 12 + schedule_routes);
    }
}
