//! Schedules for Snoozebot: instances that sleep outside their hours. A schedule is periods of
//! weekdays and times in a time zone, with days off; instances select one by a tag (a named
//! schedule, an inline one, or Cloud Custodian's offhours tags as written). A run computes a
//! [plan](plan::plan) — each instance's current state, the state wanted, why, the action — before
//! anything is applied, with Instance Scheduler's override rules (enforced, retain-running) and
//! limits on how much one run may do. [`Agents`] is a server's side of agents that report their
//! machine idle: it stops them after a warning unless a schedule's on-hours or a postpone keep
//! them, and marks agents lost. Every action is in the [store]'s audit trail.
//!
//! ```
//! use snoozebot_schedule::{Desired, Schedule, parse_period};
//!
//! let office = Schedule::from_periods(
//!     "office",
//!     "Europe/Berlin",
//!     &[parse_period("Mon-Fri 08:00-19:00")?],
//!     ["2026-12-25".parse()?],
//! )?;
//! // Tuesday 1 December 2026, 09:15 in Berlin (08:15 UTC).
//! let verdict = office.desired_at("2026-12-01T08:15:00Z".parse()?);
//! assert_eq!(verdict.desired, Desired::Running);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod agents;
mod parse;
pub mod plan;
mod postgres;
mod reconcile;
mod select;
mod service;
mod spec;
pub mod store;
mod webhook;

pub use agents::{
    AgentError, AgentPolicy, AgentRecord, AgentState, Agents, Registration, Report, Sweep,
};
/// The `jiff` crate, whose timestamps and dates this API takes.
pub use jiff;
pub use parse::{
    CustodianDefaults, CustodianTag, parse_custodian, parse_inline, parse_period, parse_time,
    parse_weekdays,
};
pub use plan::{Action, Candidate, Limits, Overrides, PlanItem, Remembered};
pub use postgres::PostgresStore;
pub use reconcile::{Applied, Fleet, Reconciler, RunPlan};
pub use select::{CustodianConfig, DEFAULT_TAG, Schedules, Selection};
pub use service::{Clock, RunError, Scheduler, next_tick};
pub use spec::{Desired, LocalTime, Period, Schedule, Transition, Verdict, Weekdays};
pub use webhook::{
    Notifier, Webhook, WebhookError, WebhookFormat, WebhookOptions, body as webhook_body,
};

/// A schedule that cannot be read or built: what is wrong, in words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ScheduleError(String);

impl ScheduleError {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        ScheduleError(message.into())
    }
}
