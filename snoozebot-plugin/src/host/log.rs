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

/// Logs one line of the plugin's stderr at its level; `held_back` lines before it were not
/// logged (over the rate budget), and a non-zero count is said with it.
pub(crate) fn forward_line(plugin: &str, line: &str, held_back: u64) {
    let (level, message, fields) = parse(line);
    let held_back = (held_back > 0).then_some(held_back);
    match level {
        Level::Trace => {
            tracing::trace!(target: "snoozebot::plugin", plugin, fields, held_back, "{message}")
        }
        Level::Debug => {
            tracing::debug!(target: "snoozebot::plugin", plugin, fields, held_back, "{message}")
        }
        Level::Info => {
            tracing::info!(target: "snoozebot::plugin", plugin, fields, held_back, "{message}")
        }
        Level::Warn => {
            tracing::warn!(target: "snoozebot::plugin", plugin, fields, held_back, "{message}")
        }
        Level::Error => {
            tracing::error!(target: "snoozebot::plugin", plugin, fields, held_back, "{message}")
        }
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
