//! The fake ARM server against the recorded ARM payloads (`fixtures/azure/`): shapes field by
//! field, the recorded powerOff exchange (202 + Azure-AsyncOperation + Location, InProgress →
//! Succeeded, monitor 202 → 200), paging, faults and failed operations.
#![cfg(feature = "arm-fake")]
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use serde_json::Value;
use snoozebot_testkit::arm::FakeArm;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One HTTP/1.1 request with a bearer token; returns the status, the headers (lower-case
/// names) and the body.
async fn call(
    fake: &FakeArm,
    method: &str,
    path_or_url: &str,
) -> (u16, Vec<(String, String)>, Value) {
    call_with(
        fake,
        method,
        path_or_url,
        "Authorization: Bearer fake-token\r\n",
    )
    .await
}

async fn call_with(
    fake: &FakeArm,
    method: &str,
    path_or_url: &str,
    extra_headers: &str,
) -> (u16, Vec<(String, String)>, Value) {
    let address = fake.endpoint().trim_start_matches("http://").to_owned();
    let path = path_or_url.trim_start_matches(&fake.endpoint());
    let mut stream = tokio::net::TcpStream::connect(&address).await.unwrap();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\n{extra_headers}Content-Length: 0\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    let text = String::from_utf8(response).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let mut lines = head.lines();
    let status = lines
        .next()
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        .collect();
    let body = if body.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(body).unwrap()
    };
    (status, headers, body)
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

fn fixture(name: &str) -> Value {
    let path = std::path::Path::new(
        &std::env::var("CARGO_MANIFEST_DIR")
            .unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_owned()),
    )
    .join("fixtures/azure")
    .join(name);
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

mod common;

use common::same_shape;

const VMS: &str =
    "/subscriptions/sub/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines";

#[tokio::test]
async fn vms_lists_and_errors_have_the_recorded_shapes() {
    let fake = FakeArm::start().await;
    fake.add_vm("sub", "rg", "vm1", "running", &[("snoozebot", "idle")]);
    let (status, _, vm) = call(
        &fake,
        "GET",
        &format!("{VMS}/vm1?$expand=instanceView&api-version=2025-04-01"),
    )
    .await;
    assert_eq!(status, 200);
    let recorded = fixture("vm-get-instanceview.json");
    same_shape(
        "vm",
        &vm,
        &recorded,
        &["name", "id", "type", "location", "tags", "properties"],
    );
    same_shape(
        "vm properties",
        &vm["properties"],
        &recorded["properties"],
        &[
            "hardwareProfile",
            "provisioningState",
            "vmId",
            "instanceView",
            "timeCreated",
        ],
    );
    same_shape(
        "power status",
        &vm["properties"]["instanceView"]["statuses"][1],
        &recorded["properties"]["instanceView"]["statuses"][1],
        &["code", "level", "displayStatus"],
    );
    assert_eq!(
        vm["properties"]["instanceView"]["statuses"][1]["code"],
        "PowerState/running"
    );

    fake.set_page_size(1);
    fake.add_vm("sub", "rg", "vm2", "deallocated", &[]);
    let (_, _, page) = call(&fake, "GET", &format!("{VMS}?api-version=2025-04-01")).await;
    same_shape(
        "list",
        &page,
        &fixture("vm-list.json"),
        &["value", "nextLink"],
    );
    let next = page["nextLink"].as_str().unwrap().to_owned();
    assert!(
        next.starts_with(&fake.endpoint()),
        "nextLink must be absolute: {next}"
    );
    let (_, _, last) = call(&fake, "GET", &next).await;
    assert_eq!(last["value"][0]["name"], "vm2");
    assert!(last.get("nextLink").is_none());

    let (status, _, missing) =
        call(&fake, "GET", &format!("{VMS}/nope?api-version=2025-04-01")).await;
    assert_eq!(status, 404);
    same_shape(
        "error",
        &missing["error"],
        &fixture("error-not-found.json")["error"],
        &["code", "message"],
    );
}

#[tokio::test]
async fn power_off_follows_the_recorded_long_running_exchange() {
    let fake = FakeArm::start().await;
    fake.set_transition_time(Duration::from_millis(300));
    fake.add_vm("sub", "rg", "vm1", "running", &[]);
    let recorded = fixture("recorded/vm-poweroff-lro.json");
    let exchanges = recorded["exchanges"].as_array().unwrap();

    let (status, headers, body) = call(
        &fake,
        "POST",
        &format!("{VMS}/vm1/powerOff?api-version=2025-04-01"),
    )
    .await;
    assert_eq!(
        status,
        exchanges[0]["response"]["status"].as_u64().unwrap() as u16
    );
    assert_eq!(body, Value::Null);
    let async_operation = header(&headers, "azure-asyncoperation").unwrap().to_owned();
    let location = header(&headers, "location").unwrap().to_owned();
    assert!(location.contains("monitor=true"));

    let (_, _, in_progress) = call(&fake, "GET", &async_operation).await;
    same_shape(
        "operation",
        &in_progress,
        &fixture("operation-status-inprogress.json"),
        &["startTime", "status", "name"],
    );
    assert_eq!(in_progress["status"], "InProgress");
    let (status, _, _) = call(&fake, "GET", &location).await;
    assert_eq!(status, 202);
    let (_, _, vm) = call(
        &fake,
        "GET",
        &format!("{VMS}/vm1?$expand=instanceView&api-version=2025-04-01"),
    )
    .await;
    assert_eq!(
        vm["properties"]["instanceView"]["statuses"][1]["code"],
        "PowerState/stopping"
    );

    fake.finish_operations();
    let (_, _, succeeded) = call(&fake, "GET", &async_operation).await;
    same_shape(
        "operation",
        &succeeded,
        &fixture("operation-status-succeeded.json"),
        &["startTime", "endTime", "status", "name"],
    );
    assert_eq!(succeeded["status"], "Succeeded");
    let (status, _, empty) = call(&fake, "GET", &location).await;
    assert_eq!((status, empty), (200, Value::Null));
    let (_, _, vm) = call(
        &fake,
        "GET",
        &format!("{VMS}/vm1?$expand=instanceView&api-version=2025-04-01"),
    )
    .await;
    assert_eq!(
        vm["properties"]["instanceView"]["statuses"][1]["code"],
        "PowerState/stopped"
    );
}

#[tokio::test]
async fn faults_and_failed_operations() {
    let fake = FakeArm::start().await;
    fake.set_transition_time(Duration::ZERO);
    fake.add_vm("sub", "rg", "vm1", "running", &[]);
    fake.fail_next(429, "SubscriptionRequestsThrottled", 1);
    let (status, headers, body) =
        call(&fake, "GET", &format!("{VMS}/vm1?api-version=2025-04-01")).await;
    assert_eq!(status, 429);
    assert_eq!(header(&headers, "retry-after"), Some("2"));
    assert_eq!(body["error"]["code"], "SubscriptionRequestsThrottled");

    fake.fail_next_operation("OperationNotAllowed", "The operation is not allowed now");
    let (_, headers, _) = call(
        &fake,
        "POST",
        &format!("{VMS}/vm1/deallocate?api-version=2025-04-01"),
    )
    .await;
    let (_, _, failed) = call(
        &fake,
        "GET",
        header(&headers, "azure-asyncoperation").unwrap(),
    )
    .await;
    assert_eq!(failed["status"], "Failed");
    assert_eq!(failed["error"]["code"], "OperationNotAllowed");
    let (_, _, vm) = call(
        &fake,
        "GET",
        &format!("{VMS}/vm1?$expand=instanceView&api-version=2025-04-01"),
    )
    .await;
    assert_eq!(
        vm["properties"]["instanceView"]["statuses"][1]["code"],
        "PowerState/running"
    );
}

#[tokio::test]
async fn like_arm_it_wants_a_token_and_an_api_version() {
    let fake = FakeArm::start().await;
    fake.add_vm("sub", "rg", "vm1", "running", &[]);
    let url = format!("{VMS}/vm1?api-version=2025-04-01");
    let (status, _, body) = call_with(&fake, "GET", &url, "").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("AuthenticationFailed"))
    );
    let (status, _, body) = call(&fake, "GET", &format!("{VMS}/vm1")).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("MissingApiVersionParameter"))
    );
    assert_eq!(fake.request_count(), 2);
}

#[tokio::test]
async fn status_only_lists_carry_instance_views_without_tags() {
    let fake = FakeArm::start().await;
    fake.add_vm("sub", "rg", "vm1", "deallocated", &[("snoozebot", "idle")]);
    let (_, _, page) = call(
        &fake,
        "GET",
        "/subscriptions/sub/providers/Microsoft.Compute/virtualMachines?api-version=2025-04-01&statusOnly=true",
    )
    .await;
    let vm = &page["value"][0];
    assert!(vm.get("tags").is_none(), "{vm}");
    assert_eq!(
        vm["properties"]["instanceView"]["statuses"][1]["code"],
        "PowerState/deallocated"
    );
    assert!(vm["properties"].get("hardwareProfile").is_none());
    // Per resource group ARM has no statusOnly: the plain list, with tags and no view.
    let (_, _, page) = call(
        &fake,
        "GET",
        &format!("{VMS}?api-version=2025-04-01&statusOnly=true"),
    )
    .await;
    let vm = &page["value"][0];
    assert_eq!(vm["tags"]["snoozebot"], "idle");
    assert!(vm["properties"].get("instanceView").is_none(), "{vm}");
}

#[tokio::test]
async fn the_location_monitor_reports_a_failed_operation_and_actions_are_recorded() {
    let fake = FakeArm::start().await;
    fake.set_transition_time(Duration::ZERO);
    fake.omit_async_operation_header();
    fake.set_retry_after_on_accepted(Some(1));
    fake.add_vm("sub", "rg", "vm1", "running", &[]);
    fake.fail_next_operation("OperationNotAllowed", "not now");
    let (status, headers, _) = call(
        &fake,
        "POST",
        &format!("{VMS}/vm1/deallocate?api-version=2025-04-01&hibernate=true"),
    )
    .await;
    assert_eq!(status, 202);
    assert_eq!(header(&headers, "azure-asyncoperation"), None);
    assert_eq!(header(&headers, "retry-after"), Some("1"));
    let (status, _, body) = call(&fake, "GET", header(&headers, "location").unwrap()).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("OperationNotAllowed"))
    );
    let actions = fake.actions();
    assert_eq!(actions.len(), 1);
    assert_eq!(
        (actions[0].vm.as_str(), actions[0].action.as_str()),
        ("vm1", "deallocate")
    );
    assert_eq!(
        actions[0].query.get("hibernate").map(String::as_str),
        Some("true")
    );
}
