//! The plan: for each scheduled instance, its current state, what its schedule wants, why, and
//! the action that gets it there — decided before anything is applied, with Instance
//! Scheduler's override rules and limits on how much one run may do.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use jiff::Timestamp;
use snoozebot_core::{InstanceId, InstanceInfo, InstanceState, StopMode};

use crate::spec::{Desired, Schedule, Verdict};

/// How a schedule treats instances people start or stop by hand.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Overrides {
    /// Enforced: put every instance back in the wanted state on every run (an instance
    /// started by hand out of hours is stopped again). Otherwise instances are acted on only
    /// when the schedule changes (at a period's beginning and end), and hands-on changes in
    /// between stand.
    pub enforced: bool,
    /// Retain running: an instance that was already running when a period began (started by
    /// hand before it) is not stopped when the period ends.
    pub retain_running: bool,
    /// How to stop: the provider's default when `None`, else this mode (hibernate, …).
    pub stop_mode: Option<StopMode>,
}

/// What the reconciler remembers of an instance between runs (the store keeps it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Remembered {
    /// The schedule transition last dealt with: a run acts (unless enforced) only when the
    /// deciding transition differs.
    pub transition: Option<Timestamp>,
    /// It was started by hand while its schedule wanted it stopped (for retain-running: it is
    /// not stopped at the end of the period that follows).
    pub retained: bool,
    /// Retain-running left it running at its period's end; a run seeing it running out of
    /// hours then does not take it for a hand start.
    pub kept: bool,
}

/// What to do to an instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Nothing.
    None,
    /// Start it.
    Start,
    /// Stop it (in this mode, or the provider's default).
    Stop(Option<StopMode>),
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::None => f.write_str("none"),
            Action::Start => f.write_str("start"),
            Action::Stop(None) => f.write_str("stop"),
            Action::Stop(Some(mode)) => write!(f, "stop ({mode})"),
        }
    }
}

/// One instance of a plan.
#[derive(Debug, Clone, PartialEq)]
pub struct PlanItem {
    /// Its provider.
    pub provider: String,
    /// The instance.
    pub id: InstanceId,
    /// The schedule that selects it.
    pub schedule: String,
    /// Its state now.
    pub current: InstanceState,
    /// What the schedule wants.
    pub desired: Desired,
    /// The action.
    pub action: Action,
    /// Why this action (or none).
    pub reason: String,
    /// What to remember of it once the action (if any) succeeded.
    pub remember: Remembered,
}

/// A scheduled instance as a run sees it.
#[derive(Debug, Clone, Copy)]
pub struct Candidate<'a> {
    /// Its provider.
    pub provider: &'a str,
    /// The instance as listed.
    pub instance: &'a InstanceInfo,
    /// Its schedule.
    pub schedule: &'a Schedule,
    /// The schedule's override rules.
    pub overrides: Overrides,
}

/// How much one run may do (the blast radius): actions beyond are deferred to the next run,
/// and reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Actions per run, all providers together.
    pub per_run: usize,
    /// Actions per provider per run.
    pub per_provider: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            per_run: 1000,
            per_provider: 500,
        }
    }
}

fn is_stopped(state: InstanceState) -> bool {
    matches!(state, InstanceState::Stopped | InstanceState::Suspended)
}

/// One instance's decision, before limits.
fn decide(
    candidate: &Candidate<'_>,
    verdict: &Verdict,
    memory: Remembered,
) -> (Action, String, Remembered) {
    let current = candidate.instance.state;
    let overrides = candidate.overrides;
    let new_transition = memory.transition != verdict.since || verdict.since.is_none();
    let seen = Remembered {
        transition: verdict.since,
        ..memory
    };
    match current {
        InstanceState::Running | InstanceState::Stopped | InstanceState::Suspended => {}
        InstanceState::Terminating | InstanceState::Terminated => {
            return (
                Action::None,
                format!("{current}: it cannot run again"),
                seen,
            );
        }
        other => {
            // Pending, stopping, suspending, unknown: the next run sees where it settled.
            return (
                Action::None,
                format!("{other}: in transition, looked at again next run"),
                memory,
            );
        }
    }
    let matches = match verdict.desired {
        Desired::Running => current == InstanceState::Running,
        Desired::Stopped => is_stopped(current),
    };
    if matches {
        // A period that begins starts a new cycle: what retain-running kept is forgotten.
        let kept = memory.kept && !(new_transition && verdict.desired == Desired::Running);
        return (
            Action::None,
            format!("{current}, as wanted ({})", verdict.reason),
            Remembered { kept, ..seen },
        );
    }
    if !overrides.enforced && !new_transition {
        // Running while it should be stopped, and not left so by retain-running: started by
        // hand.
        let started_by_hand = verdict.desired == Desired::Stopped && !memory.kept;
        return (
            Action::None,
            format!(
                "{current} by hand since the schedule last changed; not enforced ({})",
                verdict.reason
            ),
            Remembered {
                retained: memory.retained || (overrides.retain_running && started_by_hand),
                ..seen
            },
        );
    }
    let acted = Remembered {
        transition: verdict.since,
        retained: false,
        kept: false,
    };
    match verdict.desired {
        Desired::Running => (Action::Start, verdict.reason.clone(), acted),
        Desired::Stopped if overrides.retain_running && memory.retained => (
            Action::None,
            format!(
                "retain-running: it was started by hand before its period began ({})",
                verdict.reason
            ),
            Remembered {
                kept: true,
                ..acted
            },
        ),
        Desired::Stopped => (
            Action::Stop(overrides.stop_mode),
            verdict.reason.clone(),
            acted,
        ),
    }
}

/// The plan for `candidates` at `now`, given what was remembered of them (by provider and
/// id): an item for every candidate, in provider and id order, with at most `limits` actions.
pub fn plan(
    candidates: &[Candidate<'_>],
    memory: &HashMap<(String, InstanceId), Remembered>,
    now: Timestamp,
    limits: Limits,
) -> Vec<PlanItem> {
    let mut sorted: Vec<&Candidate<'_>> = candidates.iter().collect();
    sorted.sort_by(|a, b| (a.provider, &a.instance.id).cmp(&(b.provider, &b.instance.id)));
    let mut verdicts: HashMap<*const Schedule, Verdict> = HashMap::new();
    let mut per_provider: BTreeMap<&str, usize> = BTreeMap::new();
    let mut total = 0usize;
    let mut items = Vec::with_capacity(sorted.len());
    for candidate in sorted {
        let verdict = verdicts
            .entry(std::ptr::from_ref(candidate.schedule))
            .or_insert_with(|| candidate.schedule.desired_at(now))
            .clone();
        let remembered = memory
            .get(&(candidate.provider.to_owned(), candidate.instance.id.clone()))
            .copied()
            .unwrap_or_default();
        let (mut action, mut reason, mut remember) = decide(candidate, &verdict, remembered);
        if action != Action::None {
            let count = per_provider.entry(candidate.provider).or_default();
            if total >= limits.per_run || *count >= limits.per_provider {
                reason = format!(
                    "{action} deferred: over the limit of {} actions a run ({} per provider)",
                    limits.per_run, limits.per_provider
                );
                action = Action::None;
                // Not dealt with: the next run takes it up again.
                remember = remembered;
            } else {
                *count += 1;
                total += 1;
            }
        }
        items.push(PlanItem {
            provider: candidate.provider.to_owned(),
            id: candidate.instance.id.clone(),
            schedule: candidate.schedule.name().to_owned(),
            current: candidate.instance.state,
            desired: verdict.desired,
            action,
            reason,
            remember,
        });
    }
    items
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::parse_period;
    use proptest::prelude::*;

    fn office() -> Schedule {
        Schedule::from_periods(
            "office",
            "UTC",
            &[parse_period("Mon-Fri 08:00-19:00").unwrap()],
            [],
        )
        .unwrap()
    }

    fn instance(id: &str, state: InstanceState) -> InstanceInfo {
        let mut info = InstanceInfo::new(InstanceId::new(id).unwrap(), state, state.to_string());
        info.tags
            .insert("snoozebot-schedule".into(), "office".into());
        info
    }

    fn utc(text: &str) -> Timestamp {
        format!("{text}:00Z").parse().unwrap()
    }

    /// One run: the plan, then (as if every action succeeded at once) the states and memory it
    /// leaves.
    fn run(
        fleet: &mut [InstanceInfo],
        schedule: &Schedule,
        overrides: Overrides,
        memory: &mut HashMap<(String, InstanceId), Remembered>,
        now: Timestamp,
        limits: Limits,
    ) -> Vec<PlanItem> {
        let candidates: Vec<Candidate<'_>> = fleet
            .iter()
            .map(|instance| Candidate {
                provider: "mock",
                instance,
                schedule,
                overrides,
            })
            .collect();
        let items = plan(&candidates, memory, now, limits);
        for item in &items {
            let instance = fleet.iter_mut().find(|i| i.id == item.id).unwrap();
            match item.action {
                Action::Start => instance.state = InstanceState::Running,
                Action::Stop(_) => instance.state = InstanceState::Stopped,
                Action::None => {}
            }
            memory.insert(("mock".into(), item.id.clone()), item.remember);
        }
        items
    }

    fn actions(items: &[PlanItem]) -> Vec<(String, Action)> {
        items
            .iter()
            .filter(|item| item.action != Action::None)
            .map(|item| (item.id.to_string(), item.action))
            .collect()
    }

    #[test]
    fn a_hand_start_out_of_hours_stands_unless_enforced() {
        let office = office();
        for enforced in [false, true] {
            let overrides = Overrides {
                enforced,
                ..Overrides::default()
            };
            let mut fleet = vec![instance("i-1", InstanceState::Running)];
            let mut memory = HashMap::new();
            // Tuesday 19:00: stopped by the schedule.
            let items = run(
                &mut fleet,
                &office,
                overrides,
                &mut memory,
                utc("2026-12-01T19:05"),
                Limits::default(),
            );
            assert_eq!(actions(&items), [("i-1".to_owned(), Action::Stop(None))]);
            // Someone starts it at 21:00; the 21:05 run.
            fleet[0].state = InstanceState::Running;
            let items = run(
                &mut fleet,
                &office,
                overrides,
                &mut memory,
                utc("2026-12-01T21:05"),
                Limits::default(),
            );
            if enforced {
                assert_eq!(actions(&items), [("i-1".to_owned(), Action::Stop(None))]);
            } else {
                assert!(actions(&items).is_empty(), "{:?}", items[0].reason);
                assert!(
                    items[0].reason.contains("not enforced"),
                    "{}",
                    items[0].reason
                );
            }
            // Wednesday 08:00 either way: running.
            let items = run(
                &mut fleet,
                &office,
                overrides,
                &mut memory,
                utc("2026-12-02T08:01"),
                Limits::default(),
            );
            let expected: Vec<(String, Action)> = if enforced {
                vec![("i-1".to_owned(), Action::Start)]
            } else {
                vec![]
            };
            assert_eq!(actions(&items), expected, "enforced {enforced}");
        }
    }

    #[test]
    fn retain_running_keeps_what_was_started_before_its_period() {
        let office = office();
        let overrides = Overrides {
            retain_running: true,
            ..Overrides::default()
        };
        let mut fleet = vec![
            instance("i-1", InstanceState::Stopped),
            instance("i-2", InstanceState::Stopped),
        ];
        let mut memory = HashMap::new();
        run(
            &mut fleet,
            &office,
            overrides,
            &mut memory,
            utc("2026-12-01T20:00"),
            Limits::default(),
        );
        // i-1 is started by hand at 07:00, before the period.
        fleet[0].state = InstanceState::Running;
        run(
            &mut fleet,
            &office,
            overrides,
            &mut memory,
            utc("2026-12-02T07:05"),
            Limits::default(),
        );
        let items = run(
            &mut fleet,
            &office,
            overrides,
            &mut memory,
            utc("2026-12-02T08:01"),
            Limits::default(),
        );
        assert_eq!(actions(&items), [("i-2".to_owned(), Action::Start)]);
        // At 19:00 only the one the schedule started is stopped.
        let items = run(
            &mut fleet,
            &office,
            overrides,
            &mut memory,
            utc("2026-12-02T19:01"),
            Limits::default(),
        );
        assert_eq!(actions(&items), [("i-2".to_owned(), Action::Stop(None))]);
        assert!(
            items[0].reason.contains("retain-running"),
            "{}",
            items[0].reason
        );
        // The next evening it is stopped like the rest: retained once, not forever.
        run(
            &mut fleet,
            &office,
            overrides,
            &mut memory,
            utc("2026-12-03T08:01"),
            Limits::default(),
        );
        let items = run(
            &mut fleet,
            &office,
            overrides,
            &mut memory,
            utc("2026-12-03T19:01"),
            Limits::default(),
        );
        assert_eq!(actions(&items).len(), 2);
    }

    #[test]
    fn transitions_in_flight_wait_and_limits_defer_the_rest_to_the_next_run() {
        let office = office();
        let mut fleet: Vec<InstanceInfo> = (0..5)
            .map(|i| instance(&format!("i-{i}"), InstanceState::Running))
            .collect();
        fleet[4].state = InstanceState::Stopping;
        let mut memory = HashMap::new();
        let limits = Limits {
            per_run: 3,
            per_provider: 2,
        };
        let items = run(
            &mut fleet,
            &office,
            Overrides::default(),
            &mut memory,
            utc("2026-12-01T19:05"),
            limits,
        );
        assert_eq!(actions(&items).len(), 2, "the per-provider limit");
        assert!(items.iter().any(|item| item.reason.contains("deferred")));
        assert!(items[4].reason.contains("in transition"));
        let items = run(
            &mut fleet,
            &office,
            Overrides::default(),
            &mut memory,
            utc("2026-12-01T19:10"),
            limits,
        );
        assert_eq!(actions(&items).len(), 2, "the deferred ones, next run");
        fleet[4].state = InstanceState::Running;
        let items = run(
            &mut fleet,
            &office,
            Overrides::default(),
            &mut memory,
            utc("2026-12-01T19:15"),
            limits,
        );
        assert_eq!(
            actions(&items),
            [("i-4".to_owned(), Action::Stop(None))],
            "settled, then acted on"
        );
    }

    fn state() -> impl Strategy<Value = InstanceState> {
        prop_oneof![
            Just(InstanceState::Running),
            Just(InstanceState::Stopped),
            Just(InstanceState::Suspended),
            Just(InstanceState::Pending),
            Just(InstanceState::Stopping),
            Just(InstanceState::Terminated),
        ]
    }

    proptest! {
        /// Whatever the fleet, the moment and the rules: a plan right after an apply is empty.
        #[test]
        fn a_plan_right_after_an_apply_is_empty(
            states in proptest::collection::vec(state(), 1..40),
            minutes in 0i64..(14 * 24 * 60),
            enforced: bool,
            retain_running: bool,
            earlier in 0i64..(3 * 24 * 60),
        ) {
            let office = office();
            let overrides = Overrides { enforced, retain_running, stop_mode: None };
            let mut fleet: Vec<InstanceInfo> = states
                .iter()
                .enumerate()
                .map(|(i, state)| instance(&format!("i-{i}"), *state))
                .collect();
            let start = utc("2026-11-30T00:00");
            let now = start.checked_add(jiff::SignedDuration::from_mins(minutes)).unwrap();
            let before = now.checked_sub(jiff::SignedDuration::from_mins(earlier)).unwrap();
            let mut memory = HashMap::new();
            run(&mut fleet, &office, overrides, &mut memory, before, Limits::default());
            run(&mut fleet, &office, overrides, &mut memory, now, Limits::default());
            let again = run(&mut fleet, &office, overrides, &mut memory, now, Limits::default());
            prop_assert!(actions(&again).is_empty(), "{:?}", actions(&again));
        }
    }
}
