//! Webhook events: each applied run posted as JSON (or as a Slack message), from a queue of its
//! own, retried with the shared backoff — a slow or dead receiver never holds back a run.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::json;
use snoozebot_core::Backoff;
use tokio::sync::mpsc;

use crate::store::RunRecord;

/// Runs waiting to be posted at most; more are dropped (and counted) rather than held.
const QUEUE: usize = 256;

/// How a webhook's body is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WebhookFormat {
    /// `{"run": …, "events": [{…}]}`, every field of every event.
    #[default]
    Json,
    /// A Slack incoming-webhook message: `{"text": "…"}`, a line per action.
    Slack,
}

/// Hears each applied run (with at least one action). Must not block.
pub trait Notifier: Send + Sync {
    /// A run was applied and recorded.
    fn notify(&self, run: &RunRecord);
}

/// A webhook that cannot be set up.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct WebhookError(String);

/// What the posting task is sent.
#[derive(Debug)]
enum Message {
    Run(RunRecord),
    /// Everything sent before is posted; stop.
    Finish,
}

/// Posts runs to a URL, in order, from a task of its own.
#[derive(Debug, Clone)]
pub struct Webhook {
    queue: mpsc::Sender<Message>,
    dropped: Arc<AtomicU64>,
    poster: Arc<std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>>,
}

/// How a webhook posts.
#[derive(Debug, Clone)]
pub struct WebhookOptions {
    /// The body's format.
    pub format: WebhookFormat,
    /// Attempts per run, the first included (default 4).
    pub attempts: u32,
    /// The delay before each retry (default 1 s doubling to 30 s).
    pub backoff: Backoff,
    /// The time limit of one attempt (default 10 s).
    pub timeout: Duration,
}

impl Default for WebhookOptions {
    fn default() -> Self {
        WebhookOptions {
            format: WebhookFormat::Json,
            attempts: 4,
            backoff: Backoff::new(Duration::from_secs(1), Duration::from_secs(30)),
            timeout: Duration::from_secs(10),
        }
    }
}

/// The body of `run` in `format`.
pub fn body(run: &RunRecord, format: WebhookFormat) -> serde_json::Value {
    match format {
        WebhookFormat::Json => json!({
            "run": run.id,
            "events": run.events.iter().map(|event| json!({
                "at": event.at.to_string(),
                "provider": event.provider,
                "instance": event.instance,
                "schedule": event.schedule,
                "action": event.action,
                "reason": event.reason,
                "outcome": event.outcome,
                "error": event.error,
            })).collect::<Vec<_>>(),
        }),
        WebhookFormat::Slack => {
            let failed = run
                .events
                .iter()
                .filter(|event| event.outcome != "ok")
                .count();
            let mut text = format!(
                "snoozebot: {} action{}{} ({})",
                run.events.len(),
                if run.events.len() == 1 { "" } else { "s" },
                if failed > 0 {
                    format!(", {failed} failed")
                } else {
                    String::new()
                },
                run.id
            );
            for event in &run.events {
                text.push_str(&format!(
                    "\n• {} {}/{} ({}): {}{}",
                    event.action,
                    event.provider,
                    event.instance,
                    event.schedule,
                    event.outcome,
                    event
                        .error
                        .as_deref()
                        .map(|error| format!(" — {error}"))
                        .unwrap_or_default()
                ));
            }
            json!({ "text": text })
        }
    }
}

impl Webhook {
    /// Starts posting to `url`, an `http://` or `https://` URL (on the current tokio runtime).
    /// The error never repeats the URL: a Slack webhook's URL is its secret.
    pub fn spawn(url: &str, options: WebhookOptions) -> Result<Self, WebhookError> {
        let url: reqwest::Url = url
            .parse()
            .ok()
            .filter(|url: &reqwest::Url| matches!(url.scheme(), "http" | "https"))
            .ok_or(WebhookError(
                "the webhook's url is not an http(s) URL".to_owned(),
            ))?;
        let client = reqwest::Client::builder()
            .timeout(options.timeout)
            .user_agent(concat!("snoozebot/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|error| WebhookError(format!("cannot make an HTTP client: {error}")))?;
        let (queue, mut runs) = mpsc::channel::<Message>(QUEUE);
        let poster = tokio::spawn(async move {
            while let Some(Message::Run(run)) = runs.recv().await {
                let payload = body(&run, options.format);
                for attempt in 1..=options.attempts.max(1) {
                    let outcome = client.post(url.clone()).json(&payload).send().await;
                    let failure = match outcome {
                        Ok(response) if response.status().is_success() => break,
                        Ok(response) => response.status().to_string(),
                        Err(error) => error.to_string(),
                    };
                    if attempt == options.attempts.max(1) {
                        tracing::warn!(run = %run.id, %failure, "the webhook refused a run's events; given up");
                    } else {
                        tracing::debug!(run = %run.id, %failure, attempt, "webhook failed; retrying");
                        tokio::time::sleep(options.backoff.delay(attempt)).await;
                    }
                }
            }
        });
        Ok(Webhook {
            queue,
            dropped: Arc::new(AtomicU64::new(0)),
            poster: Arc::new(std::sync::Mutex::new(Some(poster))),
        })
    }

    /// Posts what is queued and stops, waiting at most `patience` (a one-shot command's end,
    /// a server's shutdown); what is left then is dropped. Every clone stops taking runs.
    pub async fn finish(self, patience: Duration) {
        let poster = self
            .poster
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        let Some(poster) = poster else { return };
        let finished = tokio::time::timeout(patience, async {
            let _ = self.queue.send(Message::Finish).await;
            let _ = poster.await;
        })
        .await;
        if finished.is_err() {
            tracing::warn!("the webhook did not finish posting in time; the rest is dropped");
        }
    }

    /// Runs dropped because the queue was full (the receiver too slow or gone).
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

impl Notifier for Webhook {
    fn notify(&self, run: &RunRecord) {
        if run.events.is_empty() {
            return;
        }
        if self.queue.try_send(Message::Run(run.clone())).is_err() {
            let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            tracing::warn!(run = %run.id, dropped, "the webhook's queue is full; this run's events are not posted");
        }
    }
}
