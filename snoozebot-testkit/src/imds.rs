//! [`FakeImds`]: the three clouds' instance metadata services on 127.0.0.1 — EC2's IMDSv2
//! (a session token first), the GCE metadata server (`Metadata-Flavor: Google`) and Azure's
//! IMDS (`Metadata: true`) — each answering as one instance, or misbehaving on request.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};

use crate::loopback::{LoopbackServer, lock};

/// Which cloud the fake answers as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FakeCloud {
    /// EC2: this instance id and region.
    Aws {
        /// `i-…`.
        instance_id: String,
        /// `us-east-1`, …
        region: String,
    },
    /// GCE: this project, zone and instance name.
    Gcp {
        /// The project id.
        project: String,
        /// The zone (`us-central1-a`).
        zone: String,
        /// The instance's name.
        name: String,
    },
    /// Azure: this VM.
    Azure {
        /// The subscription.
        subscription_id: String,
        /// The resource group.
        resource_group: String,
        /// The VM's name.
        name: String,
        /// The region (`westeurope`).
        location: String,
    },
}

/// How the fake misbehaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ImdsFault {
    /// Answers as the cloud does.
    #[default]
    None,
    /// Refuses EC2 token requests (`403`, as with IMDS disabled).
    NoToken,
    /// GCE answers without the `Metadata-Flavor: Google` header (something else on the port).
    Unflavored,
    /// Azure answers with a body that is not JSON.
    Garbage,
    /// Answers a body of 10 MiB.
    Huge,
}

#[derive(Debug)]
struct Imds {
    cloud: FakeCloud,
    fault: ImdsFault,
    tokens: Vec<String>,
}

type Shared = Arc<Mutex<Imds>>;

/// A fake metadata service; stops when dropped.
#[derive(Debug)]
pub struct FakeImds {
    state: Shared,
    server: LoopbackServer,
}

fn huge() -> Response {
    "x".repeat(10 * 1024 * 1024).into_response()
}

async fn aws_token(State(state): State<Shared>, headers: HeaderMap) -> Response {
    let mut imds = lock(&state);
    if !matches!(imds.cloud, FakeCloud::Aws { .. }) {
        return StatusCode::NOT_FOUND.into_response();
    }
    if imds.fault == ImdsFault::NoToken
        || !headers.contains_key("x-aws-ec2-metadata-token-ttl-seconds")
    {
        return StatusCode::FORBIDDEN.into_response();
    }
    let token = format!("token-{}", imds.tokens.len());
    imds.tokens.push(token.clone());
    token.into_response()
}

async fn aws_metadata(
    State(state): State<Shared>,
    axum::extract::Path(path): axum::extract::Path<String>,
    headers: HeaderMap,
) -> Response {
    let imds = lock(&state);
    let FakeCloud::Aws {
        instance_id,
        region,
    } = &imds.cloud
    else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let token = headers
        .get("x-aws-ec2-metadata-token")
        .and_then(|value| value.to_str().ok());
    if !token.is_some_and(|token| imds.tokens.iter().any(|issued| issued == token)) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    if imds.fault == ImdsFault::Huge {
        return huge();
    }
    match path.as_str() {
        "instance-id" => instance_id.clone().into_response(),
        "placement/region" => region.clone().into_response(),
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn gcp_metadata(
    State(state): State<Shared>,
    axum::extract::Path(path): axum::extract::Path<String>,
    headers: HeaderMap,
) -> Response {
    let imds = lock(&state);
    let FakeCloud::Gcp {
        project,
        zone,
        name,
    } = &imds.cloud
    else {
        return StatusCode::NOT_FOUND.into_response();
    };
    if headers.get("metadata-flavor").and_then(|v| v.to_str().ok()) != Some("Google") {
        return StatusCode::FORBIDDEN.into_response();
    }
    let body = match path.as_str() {
        "project/project-id" => project.clone(),
        "instance/zone" => format!("projects/123456789/zones/{zone}"),
        "instance/name" => name.clone(),
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    if imds.fault == ImdsFault::Unflavored {
        return body.into_response();
    }
    ([("metadata-flavor", "Google")], body).into_response()
}

async fn azure_metadata(
    State(state): State<Shared>,
    Query(query): Query<std::collections::HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let imds = lock(&state);
    let FakeCloud::Azure {
        subscription_id,
        resource_group,
        name,
        location,
    } = &imds.cloud
    else {
        return StatusCode::NOT_FOUND.into_response();
    };
    if headers.get("metadata").and_then(|v| v.to_str().ok()) != Some("true")
        || !query.contains_key("api-version")
    {
        return StatusCode::BAD_REQUEST.into_response();
    }
    match imds.fault {
        ImdsFault::Garbage => return "<html>not json</html>".into_response(),
        ImdsFault::Huge => return huge(),
        _ => {}
    }
    let resource_id = format!(
        "/subscriptions/{subscription_id}/resourceGroups/{resource_group}/providers/Microsoft.Compute/virtualMachines/{name}"
    );
    axum::Json(serde_json::json!({
        "name": name,
        "location": location,
        "resourceGroupName": resource_group,
        "subscriptionId": subscription_id,
        "resourceId": resource_id,
        "vmId": "02aab8a4-74ef-476e-8182-f6d2ba4166a6",
    }))
    .into_response()
}

impl FakeImds {
    /// Starts a metadata service answering as `cloud`.
    pub async fn start(cloud: FakeCloud) -> FakeImds {
        let state: Shared = Arc::new(Mutex::new(Imds {
            cloud,
            fault: ImdsFault::None,
            tokens: Vec::new(),
        }));
        let shared = Arc::clone(&state);
        let server = LoopbackServer::start("fake metadata service", move |_| {
            Router::new()
                .route("/latest/api/token", put(aws_token))
                .route("/latest/meta-data/{*path}", get(aws_metadata))
                .route("/computeMetadata/v1/{*path}", get(gcp_metadata))
                .route("/metadata/instance/compute", get(azure_metadata))
                .with_state(shared)
        })
        .await;
        FakeImds { state, server }
    }

    /// `http://127.0.0.1:PORT`: the base URL for every cloud's paths.
    pub fn endpoint(&self) -> String {
        self.server.endpoint()
    }

    /// Misbehaves from now on.
    pub fn set_fault(&self, fault: ImdsFault) {
        lock(&self.state).fault = fault;
    }

    /// EC2 session tokens handed out so far.
    pub fn tokens_issued(&self) -> usize {
        lock(&self.state).tokens.len()
    }
}
