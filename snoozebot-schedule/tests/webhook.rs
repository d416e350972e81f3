//! Webhook events to a receiver on 127.0.0.1: every applied run posted (JSON or Slack), a
//! failed post retried, and a receiver that hangs never holding back a run.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::Value;
use snoozebot_core::{Backoff, CloudProvider, InstanceState};
use snoozebot_schedule::store::MemoryStore;
use snoozebot_schedule::{
    Fleet, Limits, Overrides, Reconciler, Schedule, Schedules, Webhook, WebhookFormat,
    WebhookOptions, parse_period,
};
use snoozebot_testkit::{MockInstance, MockProvider};
use tokio::sync::mpsc;

/// Answers the first `failures` posts 500, the rest 200; hands every body over.
async fn receiver(failures: usize) -> (String, mpsc::UnboundedReceiver<Value>) {
    let (bodies, received) = mpsc::unbounded_channel();
    let seen = Arc::new(AtomicUsize::new(0));
    let app = axum::Router::new()
        .route(
            "/hook",
            axum::routing::post(
                move |State((bodies, seen)): State<(
                    mpsc::UnboundedSender<Value>,
                    Arc<AtomicUsize>,
                )>,
                      Json(body): Json<Value>| async move {
                    let _ = bodies.send(body);
                    if seen.fetch_add(1, Ordering::SeqCst) < failures {
                        StatusCode::INTERNAL_SERVER_ERROR
                    } else {
                        StatusCode::OK
                    }
                },
            ),
        )
        .with_state((bodies, seen));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, received)
}

fn fleet() -> [Fleet; 1] {
    let mock = (0..3)
        .fold(MockProvider::builder(), |builder, n| {
            builder.instance(
                MockInstance::new(&format!("mock-{n}"))
                    .state(InstanceState::Running)
                    .tag("snoozebot-schedule", "office"),
            )
        })
        .build();
    [Fleet {
        name: "mock".into(),
        provider: Arc::new(mock) as Arc<dyn CloudProvider>,
    }]
}

fn reconciler(webhook: &Webhook) -> Reconciler {
    let office = Schedule::from_periods(
        "office",
        "UTC",
        &[parse_period("Mon-Fri 08:00-19:00").unwrap()],
        [],
    )
    .unwrap();
    let schedules = Arc::new(Schedules::new().with_schedule(office, Overrides::default()));
    Reconciler::new(
        schedules,
        Arc::new(MemoryStore::default()),
        Limits::default(),
    )
    .with_notifier(Arc::new(webhook.clone()))
}

fn quick(format: WebhookFormat) -> WebhookOptions {
    WebhookOptions {
        format,
        attempts: 3,
        backoff: Backoff::new(Duration::from_millis(10), Duration::from_millis(50)),
        timeout: Duration::from_secs(5),
    }
}

#[tokio::test]
async fn an_applied_run_is_posted_and_a_refused_post_is_retried() {
    let (url, mut received) = receiver(1).await;
    let webhook = Webhook::spawn(&url, quick(WebhookFormat::Json)).unwrap();
    let reconciler = reconciler(&webhook);
    let fleets = fleet();
    let plan = reconciler
        .plan(&fleets, "2026-12-01T20:00:00Z".parse().unwrap())
        .await
        .unwrap();
    reconciler.apply(&fleets, &plan).await.unwrap();
    webhook.clone().finish(Duration::from_secs(10)).await;
    let first = received.recv().await.unwrap();
    let second = received.recv().await.unwrap();
    assert_eq!(first, second, "the retry posts the same run");
    let events = first["events"].as_array().unwrap();
    assert_eq!(events.len(), 3);
    assert!(
        events
            .iter()
            .all(|event| event["action"] == "stop" && event["outcome"] == "ok")
    );
    assert!(
        received.try_recv().is_err(),
        "posted again after it was accepted"
    );
    // A run with nothing to do posts nothing.
    let quiet = reconciler
        .plan(&fleets, "2026-12-01T20:05:00Z".parse().unwrap())
        .await
        .unwrap();
    reconciler.apply(&fleets, &quiet).await.unwrap();
    assert_eq!(webhook.dropped(), 0);
}

#[tokio::test]
async fn the_slack_format_is_a_message_with_a_line_per_action() {
    let (url, mut received) = receiver(0).await;
    let webhook = Webhook::spawn(&url, quick(WebhookFormat::Slack)).unwrap();
    let reconciler = reconciler(&webhook);
    let fleets = fleet();
    let plan = reconciler
        .plan(&fleets, "2026-12-01T20:00:00Z".parse().unwrap())
        .await
        .unwrap();
    reconciler.apply(&fleets, &plan).await.unwrap();
    webhook.finish(Duration::from_secs(10)).await;
    let message = received.recv().await.unwrap();
    let text = message["text"].as_str().unwrap();
    assert!(text.starts_with("snoozebot: 3 actions"), "{text}");
    assert_eq!(
        text.lines()
            .filter(|line| line.starts_with("• stop mock/mock-"))
            .count(),
        3,
        "{text}"
    );
}

#[test]
fn a_url_that_is_not_http_is_refused_without_repeating_it() {
    for url in ["ftp://hooks.example.com/T0/B0/secret", "not a url secret"] {
        let error = Webhook::spawn(url, WebhookOptions::default())
            .unwrap_err()
            .to_string();
        assert!(!error.contains("secret"), "{error}");
    }
}

#[tokio::test]
async fn a_receiver_that_never_answers_holds_back_no_run() {
    // Accepts connections and reads nothing.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            held.push(stream);
        }
    });
    let options = WebhookOptions {
        timeout: Duration::from_secs(60),
        ..quick(WebhookFormat::Json)
    };
    let webhook = Webhook::spawn(&url, options).unwrap();
    let reconciler = reconciler(&webhook);
    let fleets = fleet();
    let plan = reconciler
        .plan(&fleets, "2026-12-01T20:00:00Z".parse().unwrap())
        .await
        .unwrap();
    let applied = tokio::time::timeout(Duration::from_secs(5), reconciler.apply(&fleets, &plan))
        .await
        .expect("the run waited for the webhook")
        .unwrap();
    assert_eq!(applied.len(), 3);
    // Giving up on it at shutdown is bounded too.
    tokio::time::timeout(
        Duration::from_secs(5),
        webhook.finish(Duration::from_millis(200)),
    )
    .await
    .expect("finish waited past its patience");
    hold.abort();
}
