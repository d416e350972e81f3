//! The plugin side: `tracing` events as hclog JSON lines on stderr, the format go-plugin hosts
//! (and ours) read back with their level.

use std::io::Write;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer};

/// The environment variable that sets the plugin's log level (`trace` to `error`, or
/// `off`); default `info`.
pub(crate) const LEVEL_ENV: &str = "SNOOZEBOT_PLUGIN_LOG";

struct Fields(Map<String, Value>);

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(key(field), Value::String(value.to_owned()));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(key(field), Value::from(value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(key(field), Value::from(value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(key(field), Value::from(value));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0
            .insert(key(field), Value::String(format!("{value:?}")));
    }
}

fn key(field: &Field) -> String {
    match field.name() {
        "message" => "@message".to_owned(),
        name => name.to_owned(),
    }
}

fn level_name(level: &Level) -> &'static str {
    match *level {
        Level::TRACE => "trace",
        Level::DEBUG => "debug",
        Level::INFO => "info",
        Level::WARN => "warn",
        Level::ERROR => "error",
    }
}

/// Writes each event as one hclog JSON line to stderr.
struct HclogLayer;

impl<S: Subscriber> Layer<S> for HclogLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut fields = Fields(Map::new());
        fields.0.insert(
            "@level".to_owned(),
            Value::from(level_name(event.metadata().level())),
        );
        fields
            .0
            .insert("@module".to_owned(), Value::from(event.metadata().target()));
        let now = chrono::DateTime::<chrono::Utc>::from(std::time::SystemTime::now());
        fields
            .0
            .insert("@timestamp".to_owned(), Value::from(now.to_rfc3339()));
        event.record(&mut fields);
        let mut line = Value::Object(fields.0).to_string();
        line.push('\n');
        // Nowhere to report a failed write of a log line; stderr being gone means the host is.
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }
}

/// Crates that handle credentials and log them below `WARN` (aws-config logs "loaded base
/// credentials" with the access key id at `INFO`): capped at `WARN` whatever the level, so a
/// plugin's log carries no credential material.
const CREDENTIAL_TARGETS: &[&str] = &[
    "aws_config",
    "aws_credential_types",
    "aws_smithy_runtime",
    "aws_sdk_sso",
    "aws_sdk_ssooidc",
    "aws_sdk_sts",
    "google_cloud_auth",
    "azure_identity",
    "azure_core",
];

/// Installs the hclog layer as the global subscriber, unless the plugin set one itself.
pub(crate) fn install() {
    use tracing_subscriber::layer::SubscriberExt;
    let level = match std::env::var(LEVEL_ENV).as_deref() {
        Ok("off") => return,
        Ok("trace") => tracing_subscriber::filter::LevelFilter::TRACE,
        Ok("debug") => tracing_subscriber::filter::LevelFilter::DEBUG,
        Ok("warn") => tracing_subscriber::filter::LevelFilter::WARN,
        Ok("error") => tracing_subscriber::filter::LevelFilter::ERROR,
        _ => tracing_subscriber::filter::LevelFilter::INFO,
    };
    let mut filter = tracing_subscriber::filter::Targets::new().with_default(level);
    for target in CREDENTIAL_TARGETS {
        filter = filter.with_target(
            *target,
            level.min(tracing_subscriber::filter::LevelFilter::WARN),
        );
    }
    let subscriber = tracing_subscriber::registry().with(HclogLayer.with_filter(filter));
    let _ = tracing::subscriber::set_global_default(subscriber);
}
