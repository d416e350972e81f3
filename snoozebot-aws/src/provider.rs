//! [`AwsProvider`]: the [`CloudProvider`] implementation; the EC2 calls are in `client`, the
//! mappings in `model` and `error`.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use aws_sdk_ec2::Client;
use aws_sdk_ec2::types::Filter;
use snoozebot_core::{
    BatchResults, Capabilities, CloudProvider, Error, ErrorKind, InstanceFilter, InstanceId,
    InstanceInfo, ProviderInfo, Result, StateChange, StopMode, StopOptions,
};
use tokio::sync::OnceCell;

use crate::builder::AwsSettings;
use crate::client::{Action, ec2_state_names};
use crate::error::map_sdk_error;
use crate::model::{instance_info, validate_instance_id};
use crate::{EC2_API_VERSION, PROVIDER_NAME};

/// Stops and starts EC2 instances.
///
/// Built by [`AwsProviderBuilder`](crate::AwsProviderBuilder). The SDK client is made on the
/// first call (credentials and region resolved then), so building a provider costs nothing —
/// which keeps plugin start-up fast.
///
/// What it costs on AWS: a stopped instance is not billed for compute, but its EBS volumes and
/// Elastic IPs are; hibernation also keeps the RAM image on the root volume. Every start is
/// billed for at least one minute (Linux per-second billing has a 60-second minimum).
#[derive(Debug, Clone)]
pub struct AwsProvider {
    pub(crate) settings: Arc<AwsSettings>,
    pub(crate) client: Arc<OnceCell<(Client, Option<String>)>>,
}

#[async_trait]
impl CloudProvider for AwsProvider {
    fn info(&self) -> ProviderInfo {
        ProviderInfo::new(
            PROVIDER_NAME,
            env!("CARGO_PKG_VERSION"),
            EC2_API_VERSION,
            Capabilities::new([StopMode::Stop, StopMode::Hibernate])
                .with_dry_run(true)
                .with_native_batch(true),
        )
    }

    async fn get_instance(&self, id: &InstanceId) -> Result<InstanceInfo> {
        validate_instance_id(id)?;
        let found = self
            .describe(std::slice::from_ref(id))
            .await
            .map_err(|failure| failure.error)?;
        found
            .into_iter()
            .find(|info| &info.id == id)
            .ok_or_else(|| {
                Error::not_found(format!("DescribeInstances: instance {id} does not exist"))
                    .with_provider(PROVIDER_NAME)
            })
    }

    async fn list_instances(&self, filter: &InstanceFilter) -> Result<Vec<InstanceInfo>> {
        let (client, region) = self.client_and_region().await?;
        let mut request = client.describe_instances();
        for (key, value) in &filter.tags {
            request = request.filters(
                Filter::builder()
                    .name(format!("tag:{key}"))
                    .values(value)
                    .build(),
            );
        }
        if !filter.states.is_empty() {
            let names = ec2_state_names(&filter.states);
            if names.is_empty() {
                // Only states EC2 never reports (suspended, ...): nothing can match.
                return Ok(Vec::new());
            }
            request = request.filters(
                Filter::builder()
                    .name("instance-state-name")
                    .set_values(Some(names))
                    .build(),
            );
        }
        if let Some(prefix) = &filter.name_prefix {
            request = request.filters(
                Filter::builder()
                    .name("tag:Name")
                    .values(format!("{prefix}*"))
                    .build(),
            );
        }
        let mut reservations = request.into_paginator().items().send();
        let mut instances = Vec::new();
        while let Some(reservation) = reservations.next().await {
            let reservation =
                reservation.map_err(|error| map_sdk_error("DescribeInstances", error))?;
            instances.extend(
                reservation
                    .instances()
                    .iter()
                    .filter_map(|instance| instance_info(instance, region.as_deref()))
                    // EC2 filters are close but not exact (wildcards in names): check each.
                    .filter(|info| filter.matches(info)),
            );
        }
        Ok(instances)
    }

    async fn stop_instance(&self, id: &InstanceId, opts: &StopOptions) -> Result<StateChange> {
        self.stop_instances(std::slice::from_ref(id), opts)
            .await
            .pop()
            .map_or_else(
                || Err(Error::internal("no result for the stop")),
                |(_, result)| result,
            )
    }

    async fn start_instance(&self, id: &InstanceId) -> Result<StateChange> {
        self.start_instances(std::slice::from_ref(id))
            .await
            .pop()
            .map_or_else(
                || Err(Error::internal("no result for the start")),
                |(_, result)| result,
            )
    }

    async fn stop_instances(&self, ids: &[InstanceId], opts: &StopOptions) -> BatchResults {
        if let Err(error) = self.info().capabilities.check(opts) {
            let error = error.with_provider(PROVIDER_NAME);
            return ids
                .iter()
                .map(|id| (id.clone(), Err(error.clone())))
                .collect();
        }
        let action = Action::Stop {
            hibernate: opts.mode == Some(StopMode::Hibernate),
            fall_back: opts.allow_fallback,
            force: opts.force,
            dry_run: opts.dry_run,
        };
        // Instances DescribeInstances says cannot hibernate are sorted out before calling;
        // this covers EC2 refusing one anyway (it was not described, or not ready yet).
        let mut results = self.batch(action, ids).await;
        if let Some(plain) = action.fallback() {
            let cannot_hibernate: Vec<InstanceId> = results
                .iter()
                .filter(|(_, result)| matches!(result, Err(error) if error.kind() == ErrorKind::Unsupported))
                .map(|(id, _)| id.clone())
                .collect();
            if !cannot_hibernate.is_empty() {
                tracing::info!(
                    count = cannot_hibernate.len(),
                    "hibernation refused; stopping instead"
                );
                let mut fallback: HashMap<InstanceId, Result<StateChange>> = self
                    .batch(plain, &cannot_hibernate)
                    .await
                    .into_iter()
                    .collect();
                for (id, result) in &mut results {
                    if let Some(stopped) = fallback.remove(id) {
                        *result = stopped;
                    }
                }
            }
        }
        results
    }

    async fn start_instances(&self, ids: &[InstanceId]) -> BatchResults {
        self.batch(Action::Start, ids).await
    }
}
