//! The EC2 calls: the SDK client made on first use, DescribeInstances, and the batched
//! StopInstances/StartInstances with their per-id failures.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use aws_sdk_ec2::Client;
use snoozebot_core::{
    BatchResults, Error, InstanceId, InstanceInfo, InstanceState, Result, StateChange,
    checked_batch,
};
use tokio::sync::OnceCell;

use crate::PROVIDER_NAME;
use crate::builder::AwsSettings;
use crate::error::{code_of, map_sdk_error};
use crate::model::{instance_info, state_change, validate_instance_id};

use crate::provider::AwsProvider;

/// What a batch call asks of EC2.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Action {
    Stop {
        hibernate: bool,
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

    /// Describes `ids` (all known to be well-formed); unknown ids are simply absent.
    pub(crate) async fn describe(
        &self,
        ids: &[InstanceId],
    ) -> std::result::Result<Vec<InstanceInfo>, CallFailure> {
        let (client, region) = self
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
            found.extend(
                reservation
                    .instances()
                    .iter()
                    .filter_map(|instance| instance_info(instance, region.as_deref())),
            );
        }
        Ok(found)
    }

    /// One StopInstances/StartInstances call for `ids`.
    pub(crate) async fn call(
        &self,
        action: Action,
        ids: &[InstanceId],
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
                .map(|change| settled_noop(action, change))
                .map(|change| (change.id.clone(), change))
                .collect()),
            // "Would have succeeded": report each instance as it is, unchanged.
            Err((Some(code), _)) if code == "DryRunOperation" => Ok(self
                .describe(ids)
                .await?
                .into_iter()
                .map(|info| {
                    let change = StateChange::new(info.id.clone(), info.state, info.state);
                    (info.id, change)
                })
                .collect()),
            Err((code, error)) => Err(CallFailure { error, code }),
        }
    }

    /// Runs `action` on `ids` (well-formed, distinct) in as few calls as EC2 allows: when a
    /// call fails because of particular instances, those get the error and the rest are sent
    /// again — split on the ids the error names, or in halves when it names none.
    pub(crate) async fn run_batch(
        &self,
        action: Action,
        ids: Vec<InstanceId>,
    ) -> HashMap<InstanceId, Result<StateChange>> {
        let mut settled = HashMap::with_capacity(ids.len());
        let mut work: Vec<Vec<InstanceId>> = ids
            .chunks(self.settings.batch_size)
            .map(<[InstanceId]>::to_vec)
            .collect();
        while let Some(group) = work.pop() {
            if group.is_empty() {
                continue;
            }
            match self.call(action, &group).await {
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
                        work.push(group[half..].to_vec());
                        work.push(group[..half].to_vec());
                    } else {
                        for id in blamed {
                            settled.insert(id, Err(failure.error.clone()));
                        }
                        work.push(rest);
                    }
                }
                Err(failure) => {
                    for id in group {
                        settled.insert(id, Err(failure.error.clone()));
                    }
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
