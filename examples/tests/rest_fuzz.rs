//! Fuzzes the example REST server with schemathesis against its own OpenAPI document: no `5xx`,
//! no status, content type, header or body outside the document, schema-invalid input refused,
//! auth enforced.
//!
//! One check is left out: `positive_data_acceptance` (a schema-valid request must be accepted).
//! Instance ids are checked by each provider by rules the document cannot state (EC2's `i-` and
//! hex, Azure resource ids, ...), so a schema-valid id such as `"0"` is rightly a `400`.
//!
//! Needs schemathesis in `.venv` (`scripts/test` installs it from scripts/requirements-test.txt).
#![cfg(feature = "http")]
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use snoozebot_rest::ApiKeys;

fn schemathesis() -> PathBuf {
    let path = PathBuf::from(
        std::env::var("CARGO_MANIFEST_DIR")
            .unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_owned()),
    )
    .join("../.venv/bin/schemathesis");
    assert!(
        path.exists(),
        "schemathesis is missing from .venv; install it with scripts/test, or: \
         python3 -m venv .venv && .venv/bin/pip install -r scripts/requirements-test.txt"
    );
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_server_error_and_no_schema_violation() {
    let tool = schemathesis();
    let server = snoozebot_examples::rest::build(None, ApiKeys::new())
        .await
        .unwrap();
    let loopback = snoozebot_examples::rest::Loopback::start(server.router)
        .await
        .unwrap();
    let base = loopback.base.clone();

    let key = server.admin_key.clone();
    let schema = format!("{base}/api/openapi.json");
    // schemathesis keeps a cache in its working directory: give it one of its own.
    let scratch = tempfile::tempdir().unwrap();
    let workdir = scratch.path().to_owned();
    let output = tokio::task::spawn_blocking(move || {
        let mut child = Command::new(tool)
            .current_dir(workdir)
            .args(["run", &schema])
            .args(["--header", &format!("Authorization: Bearer {key}")])
            .args([
                "--checks",
                "all",
                "--exclude-checks",
                "positive_data_acceptance",
            ])
            .args(["--max-examples", "60", "--workers", "1", "--seed", "1"])
            .env("NO_COLOR", "1")
            .env("SCHEMATHESIS_HOOKS", "")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Stop it, whatever happens, within five minutes.
        let deadline = Instant::now() + Duration::from_secs(300);
        while child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap();
    loopback.stop().await.unwrap();
    server.manager.shutdown().await;

    let report = String::from_utf8_lossy(&output.stdout);
    println!("{report}");
    assert!(
        output.status.success(),
        "schemathesis found problems:\n{report}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(report.contains("passed"), "{report}");
}
