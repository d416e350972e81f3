//! A fake Homelab hypervisor API on 127.0.0.1, to test [`HomelabProvider`] against, built the
//! way the testkit's fake GCE and ARM servers are: an axum router over shared state, VMs that
//! move through their states over (tokio) time, the API's error bodies, scripted faults, and
//! a request counter.
//!
//! [`HomelabProvider`]: crate::homelab::HomelabProvider

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::time::Instant;

#[derive(Debug)]
struct Vm {
    state: String,
    labels: BTreeMap<String, String>,
    /// The state it reaches, and when.
    settles: Option<(String, Instant)>,
}

#[derive(Debug, Default)]
struct Hypervisor {
    vms: BTreeMap<String, Vm>,
    transition: Duration,
    faults: VecDeque<(u16, String)>,
    requests: usize,
}

type Shared = Arc<Mutex<Hypervisor>>;

fn lock(state: &Shared) -> MutexGuard<'_, Hypervisor> {
    state
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn error(status: u16, code: &str, message: &str) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (status, Json(json!({"code": code, "message": message}))).into_response();
    if status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::SERVICE_UNAVAILABLE {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    response
}

impl Hypervisor {
    /// Counts the request and answers a scripted fault, if one is due.
    fn arrive(&mut self) -> Option<Response> {
        self.requests += 1;
        self.faults
            .pop_front()
            .map(|(status, code)| error(status, &code, "scripted fault"))
    }

    fn settle(&mut self) {
        let now = Instant::now();
        for vm in self.vms.values_mut() {
            if let Some((state, due)) = &vm.settles
                && now >= *due
            {
                vm.state = state.clone();
                vm.settles = None;
            }
        }
    }
}

fn describe(name: &str, vm: &Vm) -> Value {
    json!({"name": name, "state": vm.state, "labels": vm.labels, "host": "rack-1", "vcpus": 2})
}

async fn list(State(state): State<Shared>) -> Response {
    let mut hypervisor = lock(&state);
    if let Some(fault) = hypervisor.arrive() {
        return fault;
    }
    hypervisor.settle();
    let vms: Vec<Value> = hypervisor
        .vms
        .iter()
        .map(|(name, vm)| describe(name, vm))
        .collect();
    Json(vms).into_response()
}

async fn get_vm(State(state): State<Shared>, Path(name): Path<String>) -> Response {
    let mut hypervisor = lock(&state);
    if let Some(fault) = hypervisor.arrive() {
        return fault;
    }
    hypervisor.settle();
    match hypervisor.vms.get(&name) {
        Some(vm) => Json(describe(&name, vm)).into_response(),
        None => error(
            404,
            "no_domain",
            &format!("Domain not found: no domain with matching name '{name}'"),
        ),
    }
}

async fn act(
    State(state): State<Shared>,
    Path((name, action)): Path<(String, String)>,
) -> Response {
    let mut hypervisor = lock(&state);
    if let Some(fault) = hypervisor.arrive() {
        return fault;
    }
    hypervisor.settle();
    let due = Instant::now() + hypervisor.transition;
    let Some(vm) = hypervisor.vms.get_mut(&name) else {
        return error(
            404,
            "no_domain",
            &format!("Domain not found: no domain with matching name '{name}'"),
        );
    };
    let running = matches!(vm.state.as_str(), "running" | "blocked" | "idle" | "paused");
    let (allowed, moving, settled) = match action.as_str() {
        "shutdown" => (running, "in shutdown", "shut off"),
        "destroy" => (running || vm.state == "in shutdown", "shut off", "shut off"),
        "managedsave" => (running, "in shutdown", "shut off"),
        "start" => (
            vm.state == "shut off" || vm.state == "crashed",
            "starting",
            "running",
        ),
        _ => return error(400, "invalid_arg", &format!("unknown action '{action}'")),
    };
    if !allowed {
        return error(
            409,
            "operation_invalid",
            &format!("Requested operation is not valid: domain is {}", vm.state),
        );
    }
    vm.state = moving.to_owned();
    vm.settles = Some((settled.to_owned(), due));
    StatusCode::NO_CONTENT.into_response()
}

/// A running fake; it stops serving when dropped.
#[derive(Debug)]
pub struct FakeHomelab {
    state: Shared,
    base: String,
    _stop: oneshot::Sender<()>,
}

impl FakeHomelab {
    /// Starts the fake on a free 127.0.0.1 port.
    ///
    /// # Panics
    ///
    /// If no port can be bound: a test cannot go on without its fake.
    pub async fn start() -> Self {
        let state: Shared = Arc::new(Mutex::new(Hypervisor {
            transition: Duration::from_millis(100),
            ..Hypervisor::default()
        }));
        let router = Router::new()
            .route("/vms", get(list))
            .route("/vms/{name}", get(get_vm))
            .route("/vms/{name}/{action}", post(act))
            .with_state(Arc::clone(&state));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|error| panic!("the fake Homelab cannot bind 127.0.0.1: {error}"));
        let base = format!(
            "http://{}",
            listener
                .local_addr()
                .unwrap_or_else(|error| panic!("the fake Homelab has no address: {error}"))
        );
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, router)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await;
        });
        Self {
            state,
            base,
            _stop: stop,
        }
    }

    /// The API's base URL: `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> &str {
        &self.base
    }

    /// Adds a VM in a libvirt state (`running`, `shut off`, ...) with labels.
    pub fn add_vm(&self, name: &str, state: &str, labels: &[(&str, &str)]) {
        lock(&self.state).vms.insert(
            name.to_owned(),
            Vm {
                state: state.to_owned(),
                labels: labels
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
                settles: None,
            },
        );
    }

    /// How long shutdowns and starts take (default 100 ms).
    pub fn set_transition_time(&self, transition: Duration) {
        lock(&self.state).transition = transition;
    }

    /// Answers the next `times` requests with `status` and error `code` (`busy` → 429 and
    /// 503 carry `Retry-After: 1`).
    pub fn fail_next(&self, status: u16, code: &str, times: usize) {
        let mut hypervisor = lock(&self.state);
        for _ in 0..times {
            hypervisor.faults.push_back((status, code.to_owned()));
        }
    }

    /// How many requests arrived.
    pub fn request_count(&self) -> usize {
        lock(&self.state).requests
    }
}
