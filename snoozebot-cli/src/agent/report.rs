//! Reporting mode: the agent registers with a central `snoozebot serve`, sends a heartbeat with
//! the machine's state on the server's interval and each change at once, and tells the
//! machine's users what the server decided. Every answer is bounded; a server that is down or
//! refuses is retried with backoff, never fatal.

use std::time::{Duration, SystemTime};

use serde::Deserialize;
use serde_json::{Value, json};
use snoozebot_idle::Event;
use snoozebot_schedule::jiff::Timestamp;

use super::{Watch, reconnect_backoff};
use crate::config::Loaded;
use crate::exit::{Failure, Outcome};

/// The most of an answer read: an agent's record is a few hundred bytes.
const MAX_ANSWER: usize = 64 * 1024;

/// A heartbeat interval the server may ask for, at least and at most.
const HEARTBEAT_RANGE: (u64, u64) = (1, 3600);

/// Speaks to the server for one instance.
pub(super) struct Reporter {
    client: reqwest::Client,
    base: reqwest::Url,
    provider: String,
    key: String,
}

/// What the server answered.
#[derive(Debug, Deserialize)]
struct Answer {
    state: String,
    #[serde(default)]
    note: String,
    #[serde(default)]
    stop_at: Option<String>,
    #[serde(default)]
    heartbeat_seconds: Option<u64>,
}

/// Why a call did not get an answer.
#[derive(Debug)]
enum CallError {
    /// The server does not know this agent (it lost its store, or never saw it): register.
    NotRegistered,
    /// The server refused: a key or config mistake that retrying does not mend soon.
    Refused(String),
    /// No answer: the server is down, slow, or answered garbage.
    Unreachable(String),
}

impl Reporter {
    /// The reporter of `[agent] server` and `key`.
    pub(super) fn new(loaded: &Loaded, server: &str, provider: &str) -> Result<Self, Failure> {
        let error = |what: String| super::config_error(loaded, &what);
        let base = super::server_url(server).map_err(error)?;
        let key = loaded
            .config
            .agent
            .key
            .as_ref()
            .ok_or_else(|| {
                error(
                    "key is this instance's agent key (`snoozebot agent key` on the server)".into(),
                )
            })?
            .resolve(loaded.base())
            .map_err(|why| error(format!("key: {why}")))?;
        Self::with_timeout(base, provider, key, Duration::from_secs(15))
            .map_err(|e| error(format!("server: {e}")))
    }

    /// A reporter whose every call is given up after `timeout`.
    fn with_timeout(
        base: reqwest::Url,
        provider: &str,
        key: String,
        timeout: Duration,
    ) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .user_agent(concat!("snoozebot-agent/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Reporter {
            client,
            base,
            provider: provider.to_owned(),
            key,
        })
    }

    fn url(&self, instance: &str, action: &str) -> reqwest::Url {
        let mut url = self.base.clone();
        if let Ok(mut segments) = url.path_segments_mut() {
            // The instance is one segment: a `/` in it is percent-encoded.
            segments
                .pop_if_empty()
                .extend(["api", "agents", &self.provider, instance, action]);
        }
        url
    }

    async fn call(&self, instance: &str, action: &str, body: Value) -> Result<Answer, CallError> {
        let response = self
            .client
            .post(self.url(instance, action))
            .bearer_auth(&self.key)
            .json(&body)
            .send()
            .await
            .map_err(|error| CallError::Unreachable(error.to_string()))?;
        let status = response.status();
        let bytes = bounded_body(response).await?;
        if status.is_success() {
            return serde_json::from_slice(&bytes)
                .map_err(|error| CallError::Unreachable(format!("the server's answer: {error}")));
        }
        let detail = serde_json::from_slice::<Value>(&bytes)
            .ok()
            .and_then(|problem| problem["detail"].as_str().map(str::to_owned))
            .unwrap_or_else(|| format!("{status}"));
        match status.as_u16() {
            409 => Err(CallError::NotRegistered),
            408 | 429 | 500..=599 => Err(CallError::Unreachable(detail)),
            _ => Err(CallError::Refused(format!("{status}: {detail}"))),
        }
    }
}

async fn bounded_body(mut response: reqwest::Response) -> Result<Vec<u8>, CallError> {
    let mut bytes = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|error| CallError::Unreachable(error.to_string()))?
    {
        if bytes.len() + chunk.len() > MAX_ANSWER {
            return Err(CallError::Unreachable(format!(
                "the server's answer is over {MAX_ANSWER} bytes"
            )));
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

/// What the machine is, as the monitor last said.
#[derive(Default)]
struct Now {
    /// Idle since (by the agent's clock), or busy.
    idle_since: Option<tokio::time::Instant>,
    busy: Vec<String>,
}

impl Now {
    fn body(&self, postponed: Option<SystemTime>) -> Value {
        let postponed_until = postponed
            .and_then(|until| Timestamp::try_from(until).ok())
            .map(|until| until.to_string());
        json!({
            "idle_seconds": self.idle_since.map(|since| since.elapsed().as_secs()),
            "busy": self.busy,
            "postponed_until": postponed_until,
        })
    }
}

/// Reports until SIGTERM or SIGINT (exit 0), or until the server refuses the agent for good
/// (exit 3 with the server's reason).
pub(super) async fn run(
    watch: &Watch,
    reporter: Reporter,
    mut heard: tokio::sync::mpsc::UnboundedReceiver<Event>,
) -> Result<Outcome, Failure> {
    let instance = watch.id.to_string();
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_owned())
        .unwrap_or_default();
    let registration = json!({"hostname": hostname, "version": env!("CARGO_PKG_VERSION")});
    let shutdown = crate::serve::stop_signal();
    tokio::pin!(shutdown);
    let mut now = Now::default();
    let mut registered = false;
    let mut failures = 0u32;
    let mut heartbeat = Duration::from_secs(30);
    let mut next_heartbeat = tokio::time::Instant::now();
    // What the machine's users were last told.
    let mut told: Option<String> = None;
    tracing::info!(%instance, provider = %reporter.provider, server = %reporter.base, "reporting to the server");
    loop {
        let answer = if registered {
            tokio::select! {
                () = &mut shutdown => return Ok(Outcome::Done),
                event = heard.recv() => {
                    let action = match event {
                        Some(Event::Idle { idle_for }) => {
                            now.idle_since = tokio::time::Instant::now().checked_sub(idle_for);
                            now.busy.clear();
                            "idle"
                        }
                        Some(Event::Active { busy }) => {
                            now.idle_since = None;
                            now.busy = busy.iter().map(ToString::to_string).collect();
                            "active"
                        }
                        None => return Err(Failure::new(Outcome::Failed, "the monitor stopped")),
                    };
                    reporter.call(&instance, action, now.body(watch.postponed_until())).await
                }
                () = tokio::time::sleep_until(next_heartbeat) => {
                    reporter.call(&instance, "heartbeat", now.body(watch.postponed_until())).await
                }
            }
        } else {
            tokio::select! {
                () = &mut shutdown => return Ok(Outcome::Done),
                () = tokio::time::sleep_until(next_heartbeat) => {}
            }
            let answer = reporter
                .call(&instance, "register", registration.clone())
                .await;
            if answer.is_ok() {
                registered = true;
                tracing::info!(%instance, "registered with the server");
                // The state the machine is in now, at once.
                let action = if now.idle_since.is_some() {
                    "idle"
                } else {
                    "heartbeat"
                };
                reporter
                    .call(&instance, action, now.body(watch.postponed_until()))
                    .await
            } else {
                answer
            }
        };
        match answer {
            Ok(answer) => {
                failures = 0;
                if let Some(seconds) = answer.heartbeat_seconds {
                    heartbeat =
                        Duration::from_secs(seconds.clamp(HEARTBEAT_RANGE.0, HEARTBEAT_RANGE.1));
                }
                next_heartbeat = tokio::time::Instant::now() + heartbeat;
                tell(watch, &answer, &mut told);
            }
            Err(CallError::NotRegistered) => {
                tracing::info!("the server does not know this agent; registering again");
                registered = false;
                next_heartbeat = tokio::time::Instant::now();
            }
            Err(CallError::Refused(reason)) if !registered => {
                return Err(Failure::new(
                    Outcome::Config,
                    format!("the server refused this agent: {reason}"),
                ));
            }
            Err(CallError::Refused(reason) | CallError::Unreachable(reason)) => {
                let wait = reconnect_backoff().delay(failures);
                failures = failures.saturating_add(1);
                tracing::warn!(%reason, retry_in = ?wait, "cannot report to the server");
                next_heartbeat = tokio::time::Instant::now() + wait;
            }
        }
    }
}

/// Tells the machine's users of a stop the server decided, or that it no longer stands.
fn tell(watch: &Watch, answer: &Answer, told: &mut Option<String>) {
    let id = &watch.id;
    let message = match (answer.state.as_str(), &answer.stop_at) {
        ("stopping", Some(at)) => Some(format!(
            "idle: the server stops {id} at {at} (`snoozebot agent postpone 2h` keeps it running)"
        )),
        ("stopped", _) => Some(format!("the server is stopping {id} now")),
        _ if told.is_some() => Some(format!("not stopping {id}: {}", answer.note)),
        _ => None,
    };
    if message.is_none() || *told == message {
        return;
    }
    if let Some(message) = &message {
        watch.announce(message);
    }
    *told = message.filter(|_| matches!(answer.state.as_str(), "stopping" | "stopped"));
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A server on 127.0.0.1 that answers every request with `answer` (or never, if `None`):
    /// its URL, and the paths it was asked for.
    async fn peer(
        answer: Option<Vec<u8>>,
    ) -> (reqwest::Url, tokio::sync::mpsc::UnboundedReceiver<String>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = reqwest::Url::parse(&format!("http://{}/base/", listener.local_addr().unwrap()))
            .unwrap();
        let (asked, paths) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            loop {
                let Ok((mut socket, _)) = listener.accept().await else {
                    return;
                };
                let answer = answer.clone();
                let asked = asked.clone();
                tokio::spawn(async move {
                    let mut request = vec![0u8; 16 * 1024];
                    let read = socket.read(&mut request).await.unwrap_or(0);
                    let head = String::from_utf8_lossy(&request[..read]).into_owned();
                    let _ = asked.send(head.split(' ').nth(1).unwrap_or_default().to_owned());
                    match answer {
                        Some(answer) => {
                            let _ = socket.write_all(&answer).await;
                        }
                        None => tokio::time::sleep(Duration::from_secs(3600)).await,
                    }
                });
            }
        });
        (url, paths)
    }

    fn http(status: &str, body: &[u8]) -> Vec<u8> {
        let mut answer = format!(
            "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
            body.len()
        )
        .into_bytes();
        answer.extend_from_slice(body);
        answer
    }

    async fn call(answer: Option<Vec<u8>>) -> (Result<Answer, CallError>, String) {
        let (url, mut paths) = peer(answer).await;
        let reporter =
            Reporter::with_timeout(url, "aws", "sba_key".into(), Duration::from_millis(500))
                .unwrap();
        let result = reporter
            .call("res/group/vm-1", "heartbeat", json!({}))
            .await;
        (result, paths.recv().await.unwrap_or_default())
    }

    #[tokio::test]
    async fn a_hostile_server_is_a_prompt_typed_error() {
        let (answer, path) = call(Some(http(
            "200 OK",
            br#"{"state":"stopping","stop_at":"2026-12-01T20:05:00Z","heartbeat_seconds":5}"#,
        )))
        .await;
        let answer = answer.unwrap();
        assert_eq!(
            (answer.state.as_str(), answer.heartbeat_seconds),
            ("stopping", Some(5))
        );
        assert_eq!(
            path, "/base/api/agents/aws/res%2Fgroup%2Fvm-1/heartbeat",
            "one segment"
        );

        let started = std::time::Instant::now();
        for (answer, why) in [
            (
                Some(http("200 OK", b"<html>garbage")),
                "the server's answer",
            ),
            (
                Some(http("200 OK", &vec![b' '; 10 * 1024 * 1024])),
                "over 65536 bytes",
            ),
            (Some(b"\xff\xfe not http at all\r\n\r\n".to_vec()), ""),
            (None, ""),
            (Some(http("503 Service Unavailable", b"{}")), ""),
        ] {
            match call(answer).await.0 {
                Err(CallError::Unreachable(reason)) => assert!(reason.contains(why), "{reason}"),
                other => panic!("{why}: {other:?}"),
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{:?}",
            started.elapsed()
        );

        assert!(matches!(
            call(Some(http(
                "409 Conflict",
                br#"{"detail":"register first"}"#
            )))
            .await
            .0,
            Err(CallError::NotRegistered)
        ));
        match call(Some(http(
            "401 Unauthorized",
            br#"{"detail":"not the agent key of aws/x"}"#,
        )))
        .await
        .0
        {
            Err(CallError::Refused(reason)) => {
                assert!(reason.contains("not the agent key"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
    }
}
