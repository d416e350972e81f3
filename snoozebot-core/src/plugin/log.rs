//! A plugin's stderr in the host's `tracing`: hclog JSON lines (`{"@level":"info",
//! "@message":...}`, what go-plugin plugins write) and `[LEVEL] message` lines keep their level;
//! other lines are logged at `DEBUG`.

use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Level {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

fn level_named(name: &str) -> Option<Level> {
    match name.to_ascii_lowercase().as_str() {
        "trace" => Some(Level::Trace),
        "debug" => Some(Level::Debug),
        "info" => Some(Level::Info),
        "warn" | "warning" => Some(Level::Warn),
        "error" | "fatal" | "panic" => Some(Level::Error),
        _ => None,
    }
}

/// Reads one stderr line: its level, message, and any other JSON fields as `key=value` text.
fn parse(line: &str) -> (Level, String, String) {
    if line.starts_with('{')
        && let Ok(Value::Object(mut fields)) = serde_json::from_str::<Value>(line)
    {
        let level = fields
            .remove("@level")
            .and_then(|level| level.as_str().and_then(level_named))
            .unwrap_or(Level::Info);
        let message = match fields.remove("@message") {
            Some(Value::String(message)) => message,
            Some(other) => other.to_string(),
            None => String::new(),
        };
        fields.remove("@timestamp");
        // The plugin name already says where the line came from.
        fields.remove("@module");
        let extra: Vec<String> = fields
            .iter()
            .map(|(key, value)| match value {
                Value::String(text) => format!("{key}={text}"),
                other => format!("{key}={other}"),
            })
            .collect();
        return (level, message, extra.join(" "));
    }
    if let Some(rest) = line.strip_prefix('[')
        && let Some((name, message)) = rest.split_once(']')
        && let Some(level) = level_named(name)
    {
        return (level, message.trim_start().to_owned(), String::new());
    }
    (Level::Debug, line.to_owned(), String::new())
}

pub(crate) fn forward_line(plugin: &str, line: &str) {
    let (level, message, fields) = parse(line);
    match level {
        Level::Trace => tracing::trace!(target: "snoozebot::plugin", plugin, fields, "{message}"),
        Level::Debug => tracing::debug!(target: "snoozebot::plugin", plugin, fields, "{message}"),
        Level::Info => tracing::info!(target: "snoozebot::plugin", plugin, fields, "{message}"),
        Level::Warn => tracing::warn!(target: "snoozebot::plugin", plugin, fields, "{message}"),
        Level::Error => tracing::error!(target: "snoozebot::plugin", plugin, fields, "{message}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hclog_json_keeps_level_message_and_fields() {
        let (level, message, fields) = parse(
            r#"{"@level":"warn","@message":"slow API","@timestamp":"2026-11-28T06:00:00Z","region":"eu-west-1","attempt":2}"#,
        );
        assert_eq!(level, Level::Warn);
        assert_eq!(message, "slow API");
        assert_eq!(fields, "attempt=2 region=eu-west-1");
    }

    #[test]
    fn bracketed_levels_and_plain_lines() {
        assert_eq!(parse("[ERROR] boom").0, Level::Error);
        assert_eq!(parse("[ERROR] boom").1, "boom");
        assert_eq!(parse("[INFO]started").1, "started");
        assert_eq!(
            parse("panic: nil map"),
            (Level::Debug, "panic: nil map".into(), String::new())
        );
        assert_eq!(parse("[not a level] x").0, Level::Debug);
        assert_eq!(parse("{not json").0, Level::Debug);
    }
}

/// The plugin side: `tracing` events as hclog JSON lines on stderr, the format go-plugin hosts
/// (and ours) read back with their level.
pub(crate) mod hclog {
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

    /// Installs the hclog layer as the global subscriber, unless the plugin set one itself.
    pub fn install() {
        use tracing_subscriber::layer::SubscriberExt;
        let level = match std::env::var(LEVEL_ENV).as_deref() {
            Ok("off") => return,
            Ok("trace") => tracing_subscriber::filter::LevelFilter::TRACE,
            Ok("debug") => tracing_subscriber::filter::LevelFilter::DEBUG,
            Ok("warn") => tracing_subscriber::filter::LevelFilter::WARN,
            Ok("error") => tracing_subscriber::filter::LevelFilter::ERROR,
            _ => tracing_subscriber::filter::LevelFilter::INFO,
        };
        let subscriber = tracing_subscriber::registry().with(HclogLayer.with_filter(level));
        let _ = tracing::subscriber::set_global_default(subscriber);
    }
}
