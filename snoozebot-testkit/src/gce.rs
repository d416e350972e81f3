//! [`FakeGce`]: a Compute Engine REST server on 127.0.0.1 for tests (feature `gce-fake`).
//!
//! It serves the instance and zone-operation paths a provider uses, with JSON in the shapes of
//! the recorded GCE payloads (`fixtures/gce/`): instances whose stops, starts and suspends take
//! time (RUNNING → STOPPING → TERMINATED, RUNNING → SUSPENDING → SUSPENDED), zone operations
//! that go PENDING → RUNNING → DONE, filter expressions on labels and status, paging with
//! `maxResults`/`pageToken`, aggregated lists, the Google error envelope, and scripted faults.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::loopback::{LoopbackServer, lock};

const BASE: &str = "https://www.googleapis.com/compute/v1";

/// A fake Compute Engine API; stops serving when dropped.
#[derive(Debug)]
pub struct FakeGce {
    state: Arc<Mutex<Fleet>>,
    server: LoopbackServer,
}

#[derive(Debug, Default)]
struct Fleet {
    instances: BTreeMap<(String, String, String), Instance>,
    operations: HashMap<String, Operation>,
    next_id: u64,
    transition: Duration,
    faults: VecDeque<(u16, String)>,
    failing_operations: VecDeque<(String, String)>,
    requests: usize,
    mutations: Vec<String>,
    credentials: Vec<String>,
}

#[derive(Debug, Clone)]
struct Instance {
    id: u64,
    status: String,
    labels: BTreeMap<String, String>,
    /// A transition under way: the status it settles in, and when.
    settles: Option<(String, Instant)>,
    last_start: String,
}

#[derive(Debug, Clone)]
struct Operation {
    id: u64,
    project: String,
    zone: String,
    instance: String,
    target_id: u64,
    kind: String,
    inserted: Instant,
    insert_time: String,
    done_at: Instant,
    error: Option<(String, String)>,
}

fn now_rfc3339() -> String {
    chrono::DateTime::<chrono::Utc>::from(std::time::SystemTime::now()).to_rfc3339()
}

fn error_envelope(code: u16, reason: &str, message: &str) -> Response {
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = json!({
        "error": {
            "code": code,
            "message": message,
            "errors": [{"message": message, "domain": "global", "reason": reason}],
        }
    });
    let mut response = (status, Json(body)).into_response();
    if code == 429
        && let Ok(value) = axum::http::HeaderValue::from_str("3")
    {
        // GCE asks throttled callers to wait; the fake always asks for 3 s.
        response
            .headers_mut()
            .insert(axum::http::header::RETRY_AFTER, value);
    }
    response
}

impl Instance {
    fn settle(&mut self, now: Instant) {
        if let Some((status, due)) = &self.settles
            && now >= *due
        {
            self.status = status.clone();
            self.settles = None;
        }
    }

    fn to_json(&self, project: &str, zone: &str, name: &str) -> Value {
        let zone_url = format!("{BASE}/projects/{project}/zones/{zone}");
        json!({
            "kind": "compute#instance",
            "id": self.id.to_string(),
            "creationTimestamp": "2026-07-07T13:56:07.063-07:00",
            "name": name,
            "machineType": format!("{zone_url}/machineTypes/e2-micro"),
            "status": self.status,
            "zone": zone_url,
            "canIpForward": false,
            "selfLink": format!("{zone_url}/instances/{name}"),
            "labels": self.labels,
            "labelFingerprint": "vezUS-42LLM=",
            "deletionProtection": false,
            "fingerprint": "y4QbKpCUrgY=",
            "lastStartTimestamp": self.last_start,
        })
    }
}

impl Operation {
    fn status(&self, now: Instant) -> &'static str {
        if now >= self.done_at {
            "DONE"
        } else if now.duration_since(self.inserted) * 3 < self.done_at.duration_since(self.inserted)
        {
            "PENDING"
        } else {
            "RUNNING"
        }
    }

    fn to_json(&self, now: Instant) -> Value {
        let zone_url = format!("{BASE}/projects/{}/zones/{}", self.project, self.zone);
        let name = format!("operation-{}", self.id);
        let status = self.status(now);
        let mut body = json!({
            "kind": "compute#operation",
            "id": self.id.to_string(),
            "name": name,
            "zone": zone_url,
            "operationType": self.kind,
            "targetLink": format!("{zone_url}/instances/{}", self.instance),
            "targetId": self.target_id.to_string(),
            "status": status,
            "user": "user@example.com",
            "progress": if status == "DONE" { 100 } else { 0 },
            "insertTime": self.insert_time,
            "selfLink": format!("{zone_url}/operations/{name}"),
        });
        if status == "DONE"
            && let Some((code, message)) = &self.error
        {
            body["error"] = json!({"errors": [{"code": code, "message": message}]});
            body["httpErrorStatusCode"] = json!(400);
            body["httpErrorMessage"] = json!("BAD REQUEST");
        }
        body
    }
}

/// A GCE filter expression as the fake understands it: clauses joined by `AND`, each a set of
/// `field = "value"` alternatives joined by `OR`, on `status`, `name` and `labels.KEY`.
fn matches_filter(filter: &str, name: &str, instance: &Instance) -> bool {
    filter
        .split(" AND ")
        .map(|clause| clause.trim().trim_start_matches('(').trim_end_matches(')'))
        .filter(|clause| !clause.is_empty())
        .all(|clause| {
            clause.split(" OR ").any(|alternative| {
                let Some((field, value)) = alternative.split_once('=') else {
                    return false;
                };
                let field = field.trim().trim_start_matches('(');
                let value = value.trim().trim_end_matches(')').trim_matches('"');
                match field {
                    "status" => instance.status == value,
                    "name" => name == value,
                    _ => field.strip_prefix("labels.").is_some_and(|key| {
                        instance.labels.get(key).map(String::as_str) == Some(value)
                    }),
                }
            })
        })
}

#[derive(Debug, serde::Deserialize)]
struct ListQuery {
    filter: Option<String>,
    #[serde(rename = "maxResults")]
    max_results: Option<usize>,
    #[serde(rename = "pageToken")]
    page_token: Option<String>,
}

type Shared = Arc<Mutex<Fleet>>;

/// Counts the request and takes a scripted fault, if any.
fn arrive(fleet: &mut Fleet) -> Option<Response> {
    fleet.requests += 1;
    fleet
        .faults
        .pop_front()
        .map(|(code, reason)| error_envelope(code, &reason, &format!("injected {reason}")))
}

fn not_found(project: &str, zone: &str, name: &str) -> Response {
    error_envelope(
        404,
        "notFound",
        &format!("The resource 'projects/{project}/zones/{zone}/instances/{name}' was not found"),
    )
}

async fn get_instance(
    State(state): State<Shared>,
    Path((project, zone, name)): Path<(String, String, String)>,
) -> Response {
    let mut fleet = lock(&state);
    if let Some(fault) = arrive(&mut fleet) {
        return fault;
    }
    let now = Instant::now();
    match fleet
        .instances
        .get_mut(&(project.clone(), zone.clone(), name.clone()))
    {
        Some(instance) => {
            instance.settle(now);
            Json(instance.to_json(&project, &zone, &name)).into_response()
        }
        None => not_found(&project, &zone, &name),
    }
}

fn page(items: Vec<Value>, query: &ListQuery) -> (Vec<Value>, Option<String>) {
    let start = query
        .page_token
        .as_deref()
        .and_then(|token| token.parse::<usize>().ok())
        .unwrap_or(0);
    let size = query.max_results.unwrap_or(500).clamp(1, 500);
    let end = (start + size).min(items.len());
    let next = (end < items.len()).then(|| end.to_string());
    (
        items
            .get(start..end)
            .map(<[Value]>::to_vec)
            .unwrap_or_default(),
        next,
    )
}

async fn list_instances(
    State(state): State<Shared>,
    Path((project, zone)): Path<(String, String)>,
    Query(query): Query<ListQuery>,
) -> Response {
    let mut fleet = lock(&state);
    if let Some(fault) = arrive(&mut fleet) {
        return fault;
    }
    let now = Instant::now();
    let filter = query.filter.clone().unwrap_or_default();
    let items: Vec<Value> = fleet
        .instances
        .iter_mut()
        .filter(|((p, z, _), _)| *p == project && *z == zone)
        .filter_map(|((p, z, name), instance)| {
            instance.settle(now);
            matches_filter(&filter, name, instance).then(|| instance.to_json(p, z, name))
        })
        .collect();
    let (items, next) = page(items, &query);
    let mut body = json!({
        "kind": "compute#instanceList",
        "id": format!("projects/{project}/zones/{zone}/instances"),
        "items": items,
        "selfLink": format!("{BASE}/projects/{project}/zones/{zone}/instances"),
    });
    if let Some(next) = next {
        body["nextPageToken"] = json!(next);
    }
    Json(body).into_response()
}

async fn aggregated_list(
    State(state): State<Shared>,
    Path(project): Path<String>,
    Query(query): Query<ListQuery>,
) -> Response {
    let mut fleet = lock(&state);
    if let Some(fault) = arrive(&mut fleet) {
        return fault;
    }
    let now = Instant::now();
    let filter = query.filter.clone().unwrap_or_default();
    let matching: Vec<(String, Value)> = fleet
        .instances
        .iter_mut()
        .filter(|((p, _, _), _)| *p == project)
        .filter_map(|((p, z, name), instance)| {
            instance.settle(now);
            matches_filter(&filter, name, instance)
                .then(|| (z.clone(), instance.to_json(p, z, name)))
        })
        .collect();
    let zones: Vec<String> = matching.iter().map(|(zone, _)| zone.clone()).collect();
    let start = query
        .page_token
        .as_deref()
        .and_then(|t| t.parse::<usize>().ok())
        .unwrap_or(0);
    let size = query.max_results.unwrap_or(500).clamp(1, 500);
    let end = (start + size).min(matching.len());
    let mut items = serde_json::Map::new();
    for (zone, instance) in matching.get(start..end).unwrap_or_default() {
        let scope = items
            .entry(format!("zones/{zone}"))
            .or_insert_with(|| json!({"instances": []}));
        if let Some(list) = scope["instances"].as_array_mut() {
            list.push(instance.clone());
        }
    }
    if items.is_empty() {
        let zone = zones
            .first()
            .cloned()
            .unwrap_or_else(|| "us-central1-a".to_owned());
        items.insert(
            format!("zones/{zone}"),
            json!({"warning": {"code": "NO_RESULTS_ON_PAGE", "message": "There are no results for scope 'zones/{zone}' on this page."}}),
        );
    }
    let mut body = json!({
        "kind": "compute#instanceAggregatedList",
        "id": format!("projects/{project}/aggregated/instances"),
        "items": items,
        "selfLink": format!("{BASE}/projects/{project}/aggregated/instances"),
    });
    if end < matching.len() {
        body["nextPageToken"] = json!(end.to_string());
    }
    Json(body).into_response()
}

async fn mutate(
    State(state): State<Shared>,
    Path((project, zone, name, action)): Path<(String, String, String, String)>,
) -> Response {
    let mut fleet = lock(&state);
    if let Some(fault) = arrive(&mut fleet) {
        return fault;
    }
    fleet
        .mutations
        .push(format!("{project}/{zone}/{name}:{action}"));
    let now = Instant::now();
    let transition = fleet.transition;
    let failure = fleet.failing_operations.pop_front();
    let key = (project.clone(), zone.clone(), name.clone());
    let Some(instance) = fleet.instances.get_mut(&key) else {
        return not_found(&project, &zone, &name);
    };
    instance.settle(now);
    let (moving, settled, allowed): (&str, &str, &[&str]) = match action.as_str() {
        "stop" => (
            "STOPPING",
            "TERMINATED",
            &["RUNNING", "STOPPING", "TERMINATED", "STOPPED", "SUSPENDED"],
        ),
        "suspend" => (
            "SUSPENDING",
            "SUSPENDED",
            &["RUNNING", "SUSPENDING", "SUSPENDED"],
        ),
        "start" => (
            "STAGING",
            "RUNNING",
            &[
                "TERMINATED",
                "STOPPED",
                "RUNNING",
                "STAGING",
                "PROVISIONING",
            ],
        ),
        "resume" => ("STAGING", "RUNNING", &["SUSPENDED", "RUNNING"]),
        _ => return error_envelope(404, "notFound", &format!("unknown method {action}")),
    };
    if !allowed.contains(&instance.status.as_str()) {
        return error_envelope(
            400,
            "resourceNotReady",
            &format!(
                "The resource 'projects/{project}/zones/{zone}/instances/{name}' is not ready"
            ),
        );
    }
    let target_id = instance.id;
    if failure.is_none() && instance.status != settled && instance.status != moving {
        instance.status = moving.to_owned();
        instance.settles = Some((settled.to_owned(), now + transition));
        if settled == "RUNNING" {
            instance.last_start = now_rfc3339();
        }
    }
    fleet.next_id += 1;
    let operation = Operation {
        id: fleet.next_id,
        project,
        zone,
        instance: name,
        target_id,
        kind: action,
        inserted: now,
        insert_time: now_rfc3339(),
        done_at: now + transition,
        error: failure,
    };
    let body = operation.to_json(now);
    fleet
        .operations
        .insert(format!("operation-{}", operation.id), operation);
    Json(body).into_response()
}

async fn get_operation(
    State(state): State<Shared>,
    Path((project, zone, name)): Path<(String, String, String)>,
) -> Response {
    let mut fleet = lock(&state);
    if let Some(fault) = arrive(&mut fleet) {
        return fault;
    }
    match fleet.operations.get(&name) {
        Some(operation) if operation.project == project && operation.zone == zone => {
            Json(operation.to_json(Instant::now())).into_response()
        }
        _ => error_envelope(
            404,
            "notFound",
            &format!(
                "The resource 'projects/{project}/zones/{zone}/operations/{name}' was not found"
            ),
        ),
    }
}

/// `operations/{name}/wait`: answers when the operation is done, or after at most 2 s.
async fn wait_operation(
    State(state): State<Shared>,
    Path((project, zone, name)): Path<(String, String, String)>,
) -> Response {
    let done_at = lock(&state)
        .operations
        .get(&name)
        .map(|operation| operation.done_at);
    if let Some(done_at) = done_at {
        let deadline = Instant::now() + Duration::from_secs(2);
        tokio::time::sleep_until(done_at.min(deadline)).await;
    }
    get_operation(State(state), Path((project, zone, name))).await
}

impl FakeGce {
    /// Starts the fake on a free 127.0.0.1 port.
    ///
    /// # Panics
    ///
    /// If no port can be bound: a test cannot go on without its fake.
    pub async fn start() -> FakeGce {
        let state: Shared = Arc::new(Mutex::new(Fleet {
            transition: Duration::from_millis(100),
            ..Fleet::default()
        }));
        let shared = Arc::clone(&state);
        let server = LoopbackServer::start("fake GCE server", move |_| {
            let instance = "/compute/v1/projects/{project}/zones/{zone}/instances/{instance}";
            Router::new()
                .route(instance, get(get_instance))
                .route(&format!("{instance}/{{action}}"), post(mutate))
                .route(
                    "/compute/v1/projects/{project}/zones/{zone}/instances",
                    get(list_instances),
                )
                .route(
                    "/compute/v1/projects/{project}/aggregated/instances",
                    get(aggregated_list),
                )
                .route(
                    "/compute/v1/projects/{project}/zones/{zone}/operations/{operation}",
                    get(get_operation),
                )
                .route(
                    "/compute/v1/projects/{project}/zones/{zone}/operations/{operation}/wait",
                    post(wait_operation),
                )
                .layer(axum::middleware::from_fn_with_state(
                    Arc::clone(&shared),
                    record_credentials,
                ))
                .with_state(shared)
        })
        .await;
        FakeGce { state, server }
    }

    /// The endpoint to give the client: `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        self.server.endpoint()
    }

    /// Adds an instance in `status` (`RUNNING`, `TERMINATED`, ...) with labels.
    pub fn add_instance(
        &self,
        project: &str,
        zone: &str,
        name: &str,
        status: &str,
        labels: &[(&str, &str)],
    ) {
        let mut fleet = lock(&self.state);
        fleet.next_id += 1;
        let instance = Instance {
            id: 1_726_110_852_075_018_505 + fleet.next_id,
            status: status.to_owned(),
            labels: labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            settles: None,
            last_start: "2026-07-07T13:56:15.147-07:00".to_owned(),
        };
        fleet.instances.insert(
            (project.to_owned(), zone.to_owned(), name.to_owned()),
            instance,
        );
    }

    /// How long stops, starts and suspends take, and their operations (default 100 ms).
    pub fn set_transition_time(&self, transition: Duration) {
        lock(&self.state).transition = transition;
    }

    /// Answers the next `times` requests with an error envelope of `status` and `reason`
    /// (`429`/`rateLimitExceeded`, `503`/`backendError`, ...). A 429 carries `Retry-After: 3`.
    pub fn fail_next(&self, status: u16, reason: &str, times: usize) {
        let mut fleet = lock(&self.state);
        for _ in 0..times {
            fleet.faults.push_back((status, reason.to_owned()));
        }
    }

    /// Makes the next mutation's operation end `DONE` with this error, the instance unchanged.
    pub fn fail_next_operation(&self, code: &str, message: &str) {
        lock(&self.state)
            .failing_operations
            .push_back((code.to_owned(), message.to_owned()));
    }

    /// How many requests arrived so far.
    pub fn request_count(&self) -> usize {
        lock(&self.state).requests
    }

    /// Every power action that arrived (after any scripted fault), in order, as
    /// `project/zone/name:action` (`proj/us-central1-a/web-1:stop`).
    pub fn mutations(&self) -> Vec<String> {
        lock(&self.state).mutations.clone()
    }

    /// The credential each request carried, in order: `authorization: VALUE`,
    /// `x-goog-api-key: VALUE`, or `none`.
    pub fn credentials_seen(&self) -> Vec<String> {
        lock(&self.state).credentials.clone()
    }
}

async fn record_credentials(
    State(state): State<Shared>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let headers = request.headers();
    let credential = ["authorization", "x-goog-api-key"]
        .into_iter()
        .find_map(|name| {
            let value = headers.get(name)?;
            Some(format!(
                "{name}: {}",
                String::from_utf8_lossy(value.as_bytes())
            ))
        })
        .unwrap_or_else(|| "none".to_owned());
    lock(&state).credentials.push(credential);
    next.run(request).await
}
