//! The EC2 calls: the SDK client made on first use, DescribeInstances, and the batched
//! StopInstances/StartInstances with their per-id failures.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use aws_sdk_ec2::Client;
use aws_sdk_ec2::types::Instance;
use snoozebot_core::{
    BatchResults, Error, ErrorKind, InstanceId, InstanceInfo, InstanceState, Result, StateChange,
    StopMode, checked_batch,
};
use tokio::sync::OnceCell;

use crate::PROVIDER_NAME;
use crate::builder::AwsSettings;
use crate::error::{code_of, map_sdk_error};
use crate::model::{instance_info, map_state, state_change, validate_instance_id};

use crate::provider::AwsProvider;

/// What a batch call asks of EC2.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Action {
    Stop {
        hibernate: bool,
        /// Stop instances that cannot hibernate instead of refusing them.
        fall_back: bool,
        force: bool,
        dry_run: bool,
    },
    Start,
}

impl Action {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Action::Stop { .. } => "StopInstances",
            Action::Start => "StartInstances",
        }
    }

    fn hibernates(self) -> bool {
        matches!(
            self,
            Action::Stop {
                hibernate: true,
                ..
            }
        )
    }

    /// The plain stop that replaces a hibernation the caller allowed to fall back.
    pub(crate) fn fallback(self) -> Option<Action> {
        match self {
            Action::Stop {
                hibernate: true,
                fall_back: true,
                force,
                dry_run,
            } => Some(Action::Stop {
                hibernate: false,
                fall_back: false,
                force,
                dry_run,
            }),
            _ => None,
        }
    }

    /// The mode a change made by this action applied.
    fn mode(self) -> Option<StopMode> {
        match self {
            Action::Stop {
                hibernate: true, ..
            } => Some(StopMode::Hibernate),
            Action::Stop { .. } => Some(StopMode::Stop),
            Action::Start => None,
        }
    }
}

/// What DescribeInstances said of an instance just before a batch was sent: the previous state
/// to report (a batch resent after a refusal that EC2 had partly carried out would otherwise
/// report the state the first send left), and whether it can hibernate.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Before {
    pub(crate) state: InstanceState,
    pub(crate) hibernation_configured: bool,
}

/// A batch's instances as described before sending it, and the ids EC2 does not know.
#[derive(Debug, Default)]
pub(crate) struct Described {
    pub(crate) found: HashMap<InstanceId, Before>,
    pub(crate) missing: HashMap<InstanceId, Error>,
}

/// A failed EC2 call: the mapped error and the native code.
pub(crate) struct CallFailure {
    pub(crate) error: Error,
    pub(crate) code: Option<String>,
}

/// Codes that blame particular instances of a batch: the others are still worth sending.
pub(crate) fn blames_instances(code: Option<&str>) -> bool {
    matches!(
        code,
        Some(
            "InvalidInstanceID.NotFound"
                | "InvalidInstanceID.Malformed"
                | "InvalidInstanceID"
                | "IncorrectInstanceState"
                | "IncorrectState"
                | "OperationNotPermitted"
                | "UnsupportedHibernationConfiguration"
                | "UnsupportedOperation"
        )
    )
}

/// The EC2 instance ids an error message names (`The instance IDs 'i-1, i-2' do not exist`).
pub(crate) fn ids_named_in(message: &str) -> HashSet<InstanceId> {
    message
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
        .filter_map(|token| InstanceId::new(token).ok())
        .filter(|id| validate_instance_id(id).is_ok())
        .collect()
}

impl AwsProvider {
    pub(crate) fn new(settings: AwsSettings) -> Self {
        AwsProvider {
            settings: Arc::new(settings),
            client: Arc::new(OnceCell::new()),
        }
    }

    pub(crate) fn with_client(
        settings: AwsSettings,
        client: Client,
        region: Option<String>,
    ) -> Self {
        let cell = OnceCell::new();
        // A fresh cell cannot be full.
        let _ = cell.set((client, region));
        AwsProvider {
            settings: Arc::new(settings),
            client: Arc::new(cell),
        }
    }

    /// The SDK client, made on first use.
    pub async fn client(&self) -> Result<&Client> {
        Ok(&self.client_and_region().await?.0)
    }

    pub(crate) async fn client_and_region(&self) -> Result<&(Client, Option<String>)> {
        self.client
            .get_or_try_init(|| self.settings.connect())
            .await
    }

    /// Describes `ids` (all known to be well-formed). EC2 refuses the whole call when one of
    /// them does not exist (`InvalidInstanceID.NotFound`, naming them).
    pub(crate) async fn describe(
        &self,
        ids: &[InstanceId],
    ) -> std::result::Result<Vec<InstanceInfo>, CallFailure> {
        let region = self
            .client_and_region()
            .await
            .ok()
            .and_then(|(_, region)| region.as_deref());
        Ok(self
            .describe_ec2(ids)
            .await?
            .iter()
            .filter_map(|instance| instance_info(instance, region))
            .collect())
    }

    /// DescribeInstances for `ids`, EC2's own instances.
    async fn describe_ec2(
        &self,
        ids: &[InstanceId],
    ) -> std::result::Result<Vec<Instance>, CallFailure> {
        let (client, _) = self
            .client_and_region()
            .await
            .map_err(|error| CallFailure { error, code: None })?;
        let mut reservations = client
            .describe_instances()
            .set_instance_ids(Some(ids.iter().map(ToString::to_string).collect()))
            .into_paginator()
            .items()
            .send();
        let mut found = Vec::new();
        while let Some(reservation) = reservations.next().await {
            let reservation = reservation.map_err(|error| CallFailure {
                code: code_of(&error),
                error: map_sdk_error("DescribeInstances", error),
            })?;
            found.extend(reservation.instances().iter().cloned());
        }
        Ok(found)
    }

    /// Describes a batch before it is sent, in chunks: the ids EC2 names as unknown are set
    /// aside and the rest described again (each such answer removes at least one, so this
    /// ends). `None` when a describe fails otherwise (the caller may lack the permission):
    /// the batch is then sent as it is, with the previous states EC2 reports.
    pub(crate) async fn describe_before(&self, ids: &[InstanceId]) -> Option<Described> {
        let mut described = Described::default();
        for chunk in ids.chunks(self.settings.batch_size) {
            let mut asking = chunk.to_vec();
            while !asking.is_empty() {
                match self.describe_ec2(&asking).await {
                    Ok(instances) => {
                        for instance in &instances {
                            let Some(id) = instance
                                .instance_id()
                                .and_then(|id| InstanceId::new(id).ok())
                            else {
                                continue;
                            };
                            let before = Before {
                                state: map_state(instance.state()).0,
                                hibernation_configured: instance
                                    .hibernation_options()
                                    .and_then(|options| options.configured())
                                    .unwrap_or(false),
                            };
                            described.found.insert(id, before);
                        }
                        break;
                    }
                    Err(failure)
                        if failure.code.as_deref() == Some("InvalidInstanceID.NotFound") =>
                    {
                        let named = ids_named_in(failure.error.message());
                        let asked = asking.len();
                        asking.retain(|id| {
                            let unknown = named.contains(id);
                            if unknown {
                                described.missing.insert(id.clone(), failure.error.clone());
                            }
                            !unknown
                        });
                        if asking.len() == asked {
                            return None;
                        }
                    }
                    Err(failure) => {
                        tracing::debug!(
                            error = %failure.error,
                            "cannot describe a batch before sending it; reporting the previous states EC2 answers"
                        );
                        return None;
                    }
                }
            }
        }
        Some(described)
    }

    /// One StopInstances/StartInstances call for `ids`; `before` is what the batch's describe
    /// found, if it ran.
    pub(crate) async fn call(
        &self,
        action: Action,
        ids: &[InstanceId],
        before: Option<&Described>,
    ) -> std::result::Result<HashMap<InstanceId, StateChange>, CallFailure> {
        let client = self
            .client()
            .await
            .map_err(|error| CallFailure { error, code: None })?;
        let wire_ids: Vec<String> = ids.iter().map(ToString::to_string).collect();
        let changes = match action {
            Action::Stop {
                hibernate,
                force,
                dry_run,
                ..
            } => client
                .stop_instances()
                .set_instance_ids(Some(wire_ids))
                .hibernate(hibernate)
                .force(force)
                .dry_run(dry_run)
                .send()
                .await
                .map(|output| output.stopping_instances().to_vec())
                .map_err(|error| (code_of(&error), map_sdk_error(action.name(), error))),
            Action::Start => client
                .start_instances()
                .set_instance_ids(Some(wire_ids))
                .send()
                .await
                .map(|output| output.starting_instances().to_vec())
                .map_err(|error| (code_of(&error), map_sdk_error(action.name(), error))),
        };
        match changes {
            Ok(changes) => Ok(changes
                .iter()
                .filter_map(state_change)
                .map(|change| with_mode(settled_noop(action, change), action))
                .map(|change| (change.id.clone(), change))
                .collect()),
            // "Would have succeeded": report each instance as it is (as described before
            // the batch, or now), unchanged.
            Err((Some(code), _)) if code == "DryRunOperation" => {
                let states: Vec<(InstanceId, InstanceState)> = match before {
                    Some(before) => ids
                        .iter()
                        .filter_map(|id| Some((id.clone(), before.found.get(id)?.state)))
                        .collect(),
                    None => self
                        .describe(ids)
                        .await?
                        .into_iter()
                        .map(|info| (info.id, info.state))
                        .collect(),
                };
                Ok(states
                    .into_iter()
                    .map(|(id, state)| {
                        let change = StateChange::new(id.clone(), state, state);
                        (id, with_mode(change, action))
                    })
                    .collect())
            }
            Err((code, error)) => Err(CallFailure { error, code }),
        }
    }

    /// Runs `action` on `ids` (well-formed, distinct) in as few calls as EC2 allows: when a
    /// call fails because of particular instances, those get the error and the rest are sent
    /// again — split on the ids the error names, or in halves when it names none.
    ///
    /// A batch of more than one, or a hibernation, is described first ([`Self::describe_before`]):
    /// unknown ids are answered without a call, instances not configured for hibernation are
    /// refused or (with the fallback) stopped in a call of their own, and every change reports
    /// the state before this batch, however often EC2 had to be asked.
    pub(crate) async fn run_batch(
        &self,
        action: Action,
        ids: Vec<InstanceId>,
    ) -> HashMap<InstanceId, Result<StateChange>> {
        let mut settled = HashMap::with_capacity(ids.len());
        let before = if ids.len() > 1 || action.hibernates() {
            self.describe_before(&ids).await
        } else {
            None
        };
        let mut work: Vec<(Action, Vec<InstanceId>)> = Vec::new();
        let mut plan = |action: Action, ids: &[InstanceId]| {
            work.extend(
                ids.chunks(self.settings.batch_size)
                    .map(|chunk| (action, chunk.to_vec())),
            );
        };
        match &before {
            None => plan(action, &ids),
            Some(before) => {
                let (mut sent, mut plain) = (Vec::new(), Vec::new());
                for id in ids {
                    if let Some(error) = before.missing.get(&id) {
                        settled.insert(id, Err(error.clone()));
                    } else if action.hibernates()
                        && before
                            .found
                            .get(&id)
                            .is_some_and(|b| !b.hibernation_configured)
                    {
                        if action.fallback().is_some() {
                            plain.push(id);
                        } else {
                            let error = not_configured_for_hibernation(&id);
                            settled.insert(id, Err(error));
                        }
                    } else {
                        sent.push(id);
                    }
                }
                plan(action, &sent);
                if let Some(stop) = action.fallback() {
                    plan(stop, &plain);
                }
            }
        }
        while let Some((action, group)) = work.pop() {
            if group.is_empty() {
                continue;
            }
            match self.call(action, &group, before.as_ref()).await {
                Ok(mut changes) => {
                    for id in group {
                        let result = changes.remove(&id).ok_or_else(|| {
                            Error::internal(format!(
                                "{}: EC2 did not report instance {id}",
                                action.name()
                            ))
                            .with_provider(PROVIDER_NAME)
                        });
                        settled.insert(id, result);
                    }
                }
                Err(failure) if blames_instances(failure.code.as_deref()) && group.len() > 1 => {
                    let named = ids_named_in(failure.error.message());
                    let (blamed, rest): (Vec<_>, Vec<_>) =
                        group.iter().cloned().partition(|id| named.contains(id));
                    if blamed.is_empty() || rest.len() == group.len() {
                        let half = group.len() / 2;
                        work.push((action, group[half..].to_vec()));
                        work.push((action, group[..half].to_vec()));
                    } else {
                        for id in blamed {
                            settled.insert(id, Err(failure.error.clone()));
                        }
                        work.push((action, rest));
                    }
                }
                Err(failure) => {
                    for id in group {
                        settled.insert(id, Err(failure.error.clone()));
                    }
                }
            }
        }
        if let Some(before) = before {
            for (id, result) in &mut settled {
                if let (Ok(change), Some(was)) = (result, before.found.get(id)) {
                    change.previous = was.state;
                    *change = settled_noop(action, change.clone());
                }
            }
        }
        settled
    }

    /// Validates ids locally, runs the well-formed ones, and answers in the order asked.
    pub(crate) async fn batch(&self, action: Action, ids: &[InstanceId]) -> BatchResults {
        let results = checked_batch(
            ids,
            |id| validate_instance_id(id).map(|()| id.clone()),
            async |valid: Vec<InstanceId>| {
                self.run_batch(action, valid).await.into_iter().collect()
            },
        )
        .await;
        ids.iter().cloned().zip(results).collect()
    }
}

fn with_mode(change: StateChange, action: Action) -> StateChange {
    match action.mode() {
        Some(mode) => change.with_mode(mode),
        None => change,
    }
}

/// The refusal of a hibernation for an instance DescribeInstances says was not launched for
/// it, as EC2 would answer (`UnsupportedHibernationConfiguration`), without asking EC2.
fn not_configured_for_hibernation(id: &InstanceId) -> Error {
    Error::new(
        ErrorKind::Unsupported,
        format!(
            "StopInstances: instance {id} is not configured for hibernation \
             (HibernationOptions.Configured is false); allow the fallback to stop it instead"
        ),
    )
    .with_provider(PROVIDER_NAME)
}

/// Keeps stop and start idempotent in what they report: an instance that was already in the
/// target state did not move. (EC2 reports `stopped → stopped`; moto reports `stopped →
/// stopping`, which would read as a second stop having started.)
pub(crate) fn settled_noop(action: Action, mut change: StateChange) -> StateChange {
    let target = match action {
        Action::Stop { .. } => InstanceState::Stopped,
        Action::Start => InstanceState::Running,
    };
    if change.previous == target {
        change.current = target;
    }
    change
}

pub(crate) fn ec2_state_names(states: &[InstanceState]) -> Vec<String> {
    states
        .iter()
        .filter_map(|state| match state {
            InstanceState::Pending => Some("pending"),
            InstanceState::Running => Some("running"),
            InstanceState::Stopping => Some("stopping"),
            InstanceState::Stopped => Some("stopped"),
            InstanceState::Terminating => Some("shutting-down"),
            InstanceState::Terminated => Some("terminated"),
            // No EC2 state has these names (nor states newer than this crate).
            _ => None,
        })
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_messages_name_the_instances_they_blame() {
        let named = ids_named_in("The instance IDs 'i-1a2b3c4d, i-0123456789abcdef0' do not exist");
        let expected: HashSet<_> = ["i-1a2b3c4d", "i-0123456789abcdef0"]
            .into_iter()
            .map(|id| InstanceId::new(id).unwrap())
            .collect();
        assert_eq!(named, expected);
        assert!(ids_named_in("Request limit exceeded.").is_empty());
    }
}
