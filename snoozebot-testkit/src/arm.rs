//! [`FakeArm`]: an Azure Resource Manager server for VMs on 127.0.0.1, for tests (feature
//! `arm-fake`).
//!
//! It serves the VM paths a provider uses, with JSON in the shapes of the recorded ARM payloads
//! (`fixtures/azure/`): `GET` with `$expand=instanceView`, lists per resource group and per
//! subscription with `nextLink` paging (and, per subscription, `statusOnly=true`: instance views
//! without tags or other properties, as ARM answers it), and the long-running `powerOff`,
//! `deallocate` and `start`: `202` with `Azure-AsyncOperation` and `Location`, operations
//! `InProgress` → `Succeeded` (or `Failed`) over time while the VM moves through
//! `stopping`/`deallocating`/`starting`. ARM error bodies and scripted faults (any status and
//! code, 429 with `Retry-After`, failed operations).
//!
//! Like ARM, it answers `401 AuthenticationFailed` to a request without a bearer token and
//! `400 MissingApiVersionParameter` to one without `api-version`; it records every power
//! action with its query ([`FakeArm::actions`]).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::loopback::{LoopbackServer, lock};

/// A fake ARM endpoint; stops serving when dropped.
#[derive(Debug)]
pub struct FakeArm {
    state: Arc<Mutex<Arm>>,
    server: LoopbackServer,
}

#[derive(Debug, Default)]
struct Arm {
    base: String,
    vms: BTreeMap<(String, String, String), Vm>,
    operations: HashMap<String, ArmOperation>,
    next_id: u64,
    transition: Duration,
    page_size: usize,
    faults: VecDeque<(u16, String)>,
    failing_operations: VecDeque<(String, String)>,
    requests: usize,
    actions: Vec<ArmAction>,
    retry_after_on_accepted: Option<u64>,
    without_async_operation_header: bool,
    subscription_lists_denied: bool,
}

/// A power action the fake received.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ArmAction {
    /// The VM's name.
    pub vm: String,
    /// `powerOff`, `deallocate` or `start`.
    pub action: String,
    /// Its query parameters, `api-version` included.
    pub query: BTreeMap<String, String>,
}

#[derive(Debug, Clone)]
struct Vm {
    power: String,
    tags: BTreeMap<String, String>,
    settles: Option<(String, Instant)>,
}

#[derive(Debug, Clone)]
struct ArmOperation {
    started: String,
    done_at: Instant,
    error: Option<(String, String)>,
}

fn now_rfc3339() -> String {
    chrono::DateTime::<chrono::Utc>::from(std::time::SystemTime::now()).to_rfc3339()
}

fn arm_error(status: u16, code: &str, message: &str) -> Response {
    let status_code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (
        status_code,
        Json(json!({"error": {"code": code, "message": message}})),
    )
        .into_response();
    if status == 429 {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("2"));
    }
    response
}

impl Vm {
    fn settle(&mut self, now: Instant) {
        if let Some((power, due)) = &self.settles
            && now >= *due
        {
            self.power = power.clone();
            self.settles = None;
        }
    }

    fn statuses(&self) -> Value {
        // `deleting` is a provisioning state, not a power state: a VM being deleted.
        let (provisioning, power) = match self.power.as_str() {
            "deleting" => ("deleting", "stopped"),
            power => ("succeeded", power),
        };
        json!([
            {"code": format!("ProvisioningState/{provisioning}"), "level": "Info", "displayStatus": format!("Provisioning {provisioning}")},
            {"code": format!("PowerState/{power}"), "level": "Info", "displayStatus": format!("VM {power}")},
        ])
    }

    fn resource_id(key: &(String, String, String)) -> String {
        let (subscription, group, name) = key;
        format!(
            "/subscriptions/{subscription}/resourceGroups/{group}/providers/Microsoft.Compute/virtualMachines/{name}"
        )
    }

    /// The `statusOnly=true` shape: the instance view and nothing else of the properties, no
    /// tags (ARM leaves them out).
    fn to_status_json(&self, key: &(String, String, String)) -> Value {
        json!({
            "name": key.2,
            "id": Self::resource_id(key),
            "type": "Microsoft.Compute/virtualMachines",
            "location": "eastus",
            "properties": {"instanceView": {"statuses": self.statuses()}},
        })
    }

    fn to_json(&self, key: &(String, String, String), with_view: bool) -> Value {
        let name = &key.2;
        let mut properties = json!({
            "hardwareProfile": {"vmSize": "Standard_B1s"},
            "provisioningState": "Succeeded",
            "vmId": format!("00000000-0000-0000-0000-{:012}", name.len()),
            "timeCreated": "2025-11-16T23:15:37.6402187+00:00",
        });
        if with_view {
            properties["instanceView"] = json!({"statuses": self.statuses()});
        }
        json!({
            "name": name,
            "id": Self::resource_id(key),
            "type": "Microsoft.Compute/virtualMachines",
            "location": "eastus",
            "tags": self.tags,
            "properties": properties,
        })
    }
}

type Shared = Arc<Mutex<Arm>>;

/// What every request meets first, as on ARM: the count, a bearer token, an `api-version`,
/// then any scripted fault.
async fn front_door(State(state): State<Shared>, request: Request, next: Next) -> Response {
    let fault = {
        let mut arm = lock(&state);
        arm.requests += 1;
        let bearer = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .is_some_and(|value| value.starts_with("Bearer ") && value.len() > 7);
        let versioned = request.uri().query().is_some_and(|query| {
            query
                .split('&')
                .any(|pair| pair.starts_with("api-version="))
        });
        if !bearer {
            Some(arm_error(
                401,
                "AuthenticationFailed",
                "Authentication failed. The 'Authorization' header is missing.",
            ))
        } else if !versioned {
            Some(arm_error(
                400,
                "MissingApiVersionParameter",
                "The api-version query parameter (?api-version=) is required for all requests.",
            ))
        } else {
            arm.faults
                .pop_front()
                .map(|(status, code)| arm_error(status, &code, &format!("injected {code}")))
        }
    };
    match fault {
        Some(response) => response,
        None => next.run(request).await,
    }
}

fn not_found(group: &str, name: &str) -> Response {
    arm_error(
        404,
        "ResourceNotFound",
        &format!(
            "The Resource 'Microsoft.Compute/virtualMachines/{name}' under resource group '{group}' was not found."
        ),
    )
}

#[derive(Debug, serde::Deserialize)]
struct VmQuery {
    #[serde(rename = "$expand")]
    expand: Option<String>,
    #[serde(rename = "statusOnly")]
    status_only: Option<String>,
    #[serde(rename = "$skiptoken")]
    skip_token: Option<String>,
    monitor: Option<String>,
}

async fn get_vm(
    State(state): State<Shared>,
    Path((subscription, group, name)): Path<(String, String, String)>,
    Query(query): Query<VmQuery>,
) -> Response {
    let mut arm = lock(&state);
    let key = (subscription, group.clone(), name.clone());
    let now = Instant::now();
    match arm.vms.get_mut(&key) {
        Some(vm) => {
            vm.settle(now);
            let with_view = query.expand.as_deref() == Some("instanceView");
            Json(vm.to_json(&key, with_view)).into_response()
        }
        None => not_found(&group, &name),
    }
}

fn list(
    state: &Shared,
    subscription: &str,
    group: Option<&str>,
    query: &VmQuery,
    path: &str,
) -> Response {
    let mut arm = lock(state);
    let now = Instant::now();
    // ARM takes statusOnly on the subscription-wide list only.
    let status_only = group.is_none() && query.status_only.as_deref() == Some("true");
    let page_size = arm.page_size.max(1);
    let base = arm.base.clone();
    let all: Vec<Value> = arm
        .vms
        .iter_mut()
        .filter(|((s, g, _), _)| s == subscription && group.is_none_or(|group| g == group))
        .map(|(key, vm)| {
            vm.settle(now);
            if status_only {
                vm.to_status_json(key)
            } else {
                vm.to_json(key, false)
            }
        })
        .collect();
    let start = query
        .skip_token
        .as_deref()
        .and_then(|t| t.parse::<usize>().ok())
        .unwrap_or(0);
    let end = (start + page_size).min(all.len());
    let mut body = json!({"value": all.get(start..end).map(<[Value]>::to_vec).unwrap_or_default()});
    if end < all.len() {
        let status_only = if status_only { "&statusOnly=true" } else { "" };
        body["nextLink"] = json!(format!(
            "{base}{path}?api-version=2025-04-01{status_only}&$skiptoken={end}"
        ));
    }
    Json(body).into_response()
}

async fn list_group(
    State(state): State<Shared>,
    Path((subscription, group)): Path<(String, String)>,
    Query(query): Query<VmQuery>,
) -> Response {
    let path = format!(
        "/subscriptions/{subscription}/resourceGroups/{group}/providers/Microsoft.Compute/virtualMachines"
    );
    list(&state, &subscription, Some(&group), &query, &path)
}

async fn list_all(
    State(state): State<Shared>,
    Path(subscription): Path<String>,
    Query(query): Query<VmQuery>,
) -> Response {
    if lock(&state).subscription_lists_denied {
        return arm_error(
            403,
            "AuthorizationFailed",
            &format!(
                "The client does not have authorization to perform action 'Microsoft.Compute/virtualMachines/read' over scope '/subscriptions/{subscription}' or the scope is invalid."
            ),
        );
    }
    let path = format!("/subscriptions/{subscription}/providers/Microsoft.Compute/virtualMachines");
    list(&state, &subscription, None, &query, &path)
}

async fn act(
    State(state): State<Shared>,
    Path((subscription, group, name, action)): Path<(String, String, String, String)>,
    Query(query): Query<BTreeMap<String, String>>,
) -> Response {
    let mut arm = lock(&state);
    arm.actions.push(ArmAction {
        vm: name.clone(),
        action: action.clone(),
        query,
    });
    let now = Instant::now();
    let transition = arm.transition;
    let failure = arm.failing_operations.pop_front();
    let key = (subscription.clone(), group.clone(), name.clone());
    let Some(vm) = arm.vms.get_mut(&key) else {
        return not_found(&group, &name);
    };
    vm.settle(now);
    let (moving, settled) = match action.as_str() {
        "powerOff" => ("stopping", "stopped"),
        "deallocate" => ("deallocating", "deallocated"),
        "start" => ("starting", "running"),
        _ => {
            return arm_error(
                400,
                "InvalidRequestContent",
                &format!("unknown action {action}"),
            );
        }
    };
    if failure.is_none() && vm.power != settled {
        vm.power = moving.to_owned();
        vm.settles = Some((settled.to_owned(), now + transition));
    }
    arm.next_id += 1;
    let id = format!("00000000-0000-0000-0000-{:012}", arm.next_id);
    arm.operations.insert(
        id.clone(),
        ArmOperation {
            started: now_rfc3339(),
            done_at: now + transition,
            error: failure,
        },
    );
    let operation = format!(
        "{}/subscriptions/{subscription}/providers/Microsoft.Compute/locations/eastus/operations/{id}?p=fake&api-version=2025-04-01",
        arm.base
    );
    let mut response = StatusCode::ACCEPTED.into_response();
    let headers = response.headers_mut();
    if !arm.without_async_operation_header
        && let Ok(value) = HeaderValue::from_str(&operation)
    {
        headers.insert("azure-asyncoperation", value);
    }
    if let Some(seconds) = arm.retry_after_on_accepted {
        headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    if let Ok(value) = HeaderValue::from_str(&format!("{operation}&monitor=true")) {
        headers.insert(header::LOCATION, value);
    }
    response
}

async fn operation(
    State(state): State<Shared>,
    Path((_subscription, _location, id)): Path<(String, String, String)>,
    Query(query): Query<VmQuery>,
) -> Response {
    let arm = lock(&state);
    let Some(op) = arm.operations.get(&id).cloned() else {
        return arm_error(404, "NotFound", &format!("operation {id} not found"));
    };
    let done = Instant::now() >= op.done_at;
    if query.monitor.as_deref() == Some("true") {
        // The Location monitor: 202 while running, then the result: 200, or the error.
        return match (done, &op.error) {
            (false, _) => StatusCode::ACCEPTED.into_response(),
            (true, Some((code, message))) => arm_error(409, code, message),
            (true, None) => StatusCode::OK.into_response(),
        };
    }
    let mut body = json!({"startTime": op.started, "status": "InProgress", "name": id});
    if done {
        body["endTime"] = json!(now_rfc3339());
        body["status"] = json!("Succeeded");
        if let Some((code, message)) = op.error {
            body["status"] = json!("Failed");
            body["error"] = json!({"code": code, "message": message});
        }
    }
    Json(body).into_response()
}

impl FakeArm {
    /// Starts the fake on a free 127.0.0.1 port.
    ///
    /// # Panics
    ///
    /// If no port can be bound: a test cannot go on without its fake.
    pub async fn start() -> FakeArm {
        let state: Shared = Arc::new(Mutex::new(Arm {
            transition: Duration::from_millis(100),
            page_size: 50,
            ..Arm::default()
        }));
        let shared = Arc::clone(&state);
        let server = LoopbackServer::start("fake ARM server", move |address| {
            // nextLink and operation URLs are absolute, as ARM's are.
            lock(&shared).base = format!("http://{address}");
            let vm = "/subscriptions/{subscription}/resourceGroups/{group}/providers/Microsoft.Compute/virtualMachines/{name}";
            Router::new()
                .route(vm, get(get_vm))
                .route(&format!("{vm}/{{action}}"), post(act))
                .route(
                    "/subscriptions/{subscription}/resourceGroups/{group}/providers/Microsoft.Compute/virtualMachines",
                    get(list_group),
                )
                .route("/subscriptions/{subscription}/providers/Microsoft.Compute/virtualMachines", get(list_all))
                .route(
                    "/subscriptions/{subscription}/providers/Microsoft.Compute/locations/{location}/operations/{id}",
                    get(operation),
                )
                .layer(middleware::from_fn_with_state(Arc::clone(&shared), front_door))
                .with_state(shared)
        })
        .await;
        FakeArm { state, server }
    }

    /// The ARM endpoint to give the client: `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        self.server.endpoint()
    }

    /// Adds a VM with power state `power` (`running`, `deallocated`, ...; `deleting` for one
    /// being deleted) and tags.
    pub fn add_vm(
        &self,
        subscription: &str,
        group: &str,
        name: &str,
        power: &str,
        tags: &[(&str, &str)],
    ) {
        let vm = Vm {
            power: power.to_owned(),
            tags: tags
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            settles: None,
        };
        lock(&self.state).vms.insert(
            (subscription.to_owned(), group.to_owned(), name.to_owned()),
            vm,
        );
    }

    /// Ends every operation in flight now, as if its transition time had passed: tests order
    /// events with this rather than by sleeping through the transition.
    pub fn finish_operations(&self) {
        let mut fleet = lock(&self.state);
        let now = Instant::now();
        for operation in fleet.operations.values_mut() {
            operation.done_at = operation.done_at.min(now);
        }
        for vm in fleet.vms.values_mut() {
            if let Some((_, due)) = &mut vm.settles {
                *due = (*due).min(now);
            }
        }
    }

    /// How long power operations take (default 100 ms).
    pub fn set_transition_time(&self, transition: Duration) {
        lock(&self.state).transition = transition;
    }

    /// VMs per list page before a `nextLink` (default 50).
    pub fn set_page_size(&self, size: usize) {
        lock(&self.state).page_size = size;
    }

    /// Answers the next `times` requests with an ARM error of `status` and `code`; a 429
    /// carries `Retry-After: 2`.
    pub fn fail_next(&self, status: u16, code: &str, times: usize) {
        let mut arm = lock(&self.state);
        for _ in 0..times {
            arm.faults.push_back((status, code.to_owned()));
        }
    }

    /// Makes the next power operation end `Failed` with this error, the VM unchanged.
    pub fn fail_next_operation(&self, code: &str, message: &str) {
        lock(&self.state)
            .failing_operations
            .push_back((code.to_owned(), message.to_owned()));
    }

    /// Every power action received so far, in order.
    pub fn actions(&self) -> Vec<ArmAction> {
        lock(&self.state).actions.clone()
    }

    /// Puts `Retry-After: seconds` on each `202 Accepted` (None: no header, the default, as in
    /// the recorded exchanges).
    pub fn set_retry_after_on_accepted(&self, seconds: Option<u64>) {
        lock(&self.state).retry_after_on_accepted = seconds;
    }

    /// Leaves `Azure-AsyncOperation` off the `202`, so that only `Location` can be followed.
    pub fn omit_async_operation_header(&self) {
        lock(&self.state).without_async_operation_header = true;
    }

    /// Answers subscription-wide lists `403 AuthorizationFailed`, as ARM does for a principal
    /// whose role is assigned on resource groups only.
    pub fn deny_subscription_lists(&self) {
        lock(&self.state).subscription_lists_denied = true;
    }

    /// How many requests arrived so far.
    pub fn request_count(&self) -> usize {
        lock(&self.state).requests
    }
}
