//! How results are printed: tables for people, JSON documents or JSON lines for programs, and
//! progress while waiting (a line that updates on a terminal, a line per instance otherwise).

use std::io::IsTerminal;
use std::sync::Mutex;

use serde_json::{Value, json};
use snoozebot_core::{InstanceId, InstanceInfo, InstanceState, Result, StateChange};

use crate::cli::Output;
use crate::commands::print;

/// A change the cloud accepted, or one that was waited for until it settled.
#[derive(Debug)]
pub enum Done {
    /// Accepted; not waited for.
    Changed(StateChange),
    /// Accepted and settled: the instance as it ended.
    Settled(StateChange, InstanceInfo),
}

impl Done {
    fn change(&self) -> &StateChange {
        match self {
            Done::Changed(change) | Done::Settled(change, _) => change,
        }
    }

    fn now(&self) -> InstanceState {
        match self {
            Done::Changed(change) => change.current,
            Done::Settled(_, info) => info.state,
        }
    }
}

/// Prints instances.
pub fn instances(instances: &[InstanceInfo], format: Output) {
    let rows = instances.iter().map(|instance| {
        vec![
            instance.id.to_string(),
            instance.name.clone().unwrap_or_default(),
            instance.state.to_string(),
            instance.machine_type.clone().unwrap_or_default(),
            instance
                .zone
                .clone()
                .or_else(|| instance.region.clone())
                .unwrap_or_default(),
        ]
    });
    let values = instances.iter().map(instance_json);
    emit(
        format,
        values,
        &["ID", "NAME", "STATE", "TYPE", "ZONE"],
        rows,
    );
}

fn instance_json(instance: &InstanceInfo) -> Value {
    serde_json::to_value(instance).unwrap_or(Value::Null)
}

/// Prints what a stop or start did to each instance.
pub fn changes(results: &[(InstanceId, Result<Done>)], format: Output) {
    let as_json = |(id, result): &(InstanceId, Result<Done>)| match result {
        Ok(done) => {
            let change = done.change();
            json!({
                "id": id.as_str(),
                "previous": change.previous,
                "current": done.now(),
                "mode": change.mode,
                "settled": matches!(done, Done::Settled(..)),
            })
        }
        Err(error) => json!({
            "id": id.as_str(),
            "error": {"kind": error.kind(), "message": error.to_string()},
        }),
    };
    let rows = results.iter().map(|(id, result)| match result {
        Ok(done) => {
            let change = done.change();
            vec![
                id.to_string(),
                format!("{} -> {}", change.previous, done.now()),
                change.mode.map(|mode| mode.to_string()).unwrap_or_default(),
                String::new(),
            ]
        }
        Err(error) => vec![
            id.to_string(),
            "failed".to_owned(),
            String::new(),
            error.to_string(),
        ],
    });
    emit(
        format,
        results.iter().map(as_json),
        &["ID", "STATE", "MODE", "ERROR"],
        rows,
    );
}

/// Prints JSON objects: as JSON, or as a table of the `fields` named (upper-cased as headers).
pub fn objects(objects: &[Value], format: Output, fields: &[&str]) {
    let cell = |value: &Value| match value {
        Value::Null => String::new(),
        Value::String(text) => text.clone(),
        other => other.to_string(),
    };
    let header: Vec<String> = fields.iter().map(|field| field.to_uppercase()).collect();
    let header: Vec<&str> = header.iter().map(String::as_str).collect();
    let rows = objects
        .iter()
        .map(|object| fields.iter().map(|field| cell(&object[*field])).collect());
    emit(format, objects.iter().cloned(), &header, rows);
}

/// Prints in `format`: one JSON document of `values`, a line per value, or a table of `rows`.
fn emit(
    format: Output,
    values: impl Iterator<Item = Value>,
    header: &[&str],
    rows: impl Iterator<Item = Vec<String>>,
) {
    match format {
        Output::Json => print(&format!("{}\n", Value::Array(values.collect()))),
        Output::Jsonl => print(&values.map(|value| format!("{value}\n")).collect::<String>()),
        Output::Table => print(&table(header, &rows.collect::<Vec<_>>())),
    }
}

/// Columns padded to their widest cell; the last one is not padded.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|title| title.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut text = String::new();
    let mut line = |cells: &[&str]| {
        let mut out = String::new();
        for (n, cell) in cells.iter().enumerate() {
            if n + 1 == cells.len() {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<width$}  ", width = widths[n]));
            }
        }
        text.push_str(out.trim_end());
        text.push('\n');
    };
    line(header);
    for row in rows {
        line(&row.iter().map(String::as_str).collect::<Vec<_>>());
    }
    text
}

/// Progress of a `--wait`, on stderr.
pub struct Progress {
    total: usize,
    done: Mutex<usize>,
    terminal: bool,
}

impl Progress {
    /// For `total` instances.
    pub fn new(total: usize) -> Self {
        Progress {
            total,
            done: Mutex::new(0),
            terminal: std::io::stderr().is_terminal(),
        }
    }

    /// One more instance settled (or failed to).
    pub fn settled(
        &self,
        id: &InstanceId,
        state: std::result::Result<InstanceState, &snoozebot_core::Error>,
    ) {
        let mut done = match self.done.lock() {
            Ok(done) => done,
            Err(poisoned) => poisoned.into_inner(),
        };
        *done += 1;
        if self.terminal {
            let width = 30;
            let filled = (*done * width).checked_div(self.total).unwrap_or(width);
            eprint!(
                "\rwaiting [{}{}] {}/{}",
                "#".repeat(filled),
                " ".repeat(width - filled.min(width)),
                *done,
                self.total
            );
        } else {
            match state {
                Ok(state) => eprintln!("{id} {state}"),
                Err(error) => eprintln!("{id} failed: {error}"),
            }
        }
    }

    /// Ends the progress line.
    pub fn finish(&self) {
        if self.terminal && self.total > 0 {
            eprintln!();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_pad_every_column_but_the_last() {
        let text = table(
            &["ID", "STATE"],
            &[
                vec!["mock-0000".to_owned(), "running".to_owned()],
                vec!["m".to_owned(), "stopped".to_owned()],
            ],
        );
        assert_eq!(
            text,
            "ID         STATE\nmock-0000  running\nm          stopped\n"
        );
    }
}
