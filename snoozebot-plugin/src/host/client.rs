//! [`PluginClient`]: a provider whose calls go to a supervised plugin process.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use snoozebot_core::{
    BatchResults, CloudProvider, Error, ErrorKind, Health, InstanceFilter, InstanceId,
    InstanceInfo, InstancePage, PageRequest, ProviderInfo, Result, StateChange, StopOptions,
    each_id_fails, single_calls,
};

use super::PluginConfig;
use super::connection::method;
use super::launch::{Running, launch_once};
use super::supervisor::{CrashStreak, Slot, Supervisor, check_health, stop, supervise};
use crate::PluginAddress;
use crate::proto::v1 as pb;
use crate::wire::{
    batch_from_wire, change_from_wire, filter_to_wire, instance_from_wire, options_to_wire,
    page_to_wire, status_to_error,
};

/// A provider served by a plugin executable, supervised.
///
/// When the plugin exits or stops answering health checks, calls in flight fail at once with
/// [`ErrorKind::Unavailable`] and a `retry_after`, calls meanwhile fail fast the same way, and
/// the plugin is started again with backoff, up to [`PluginConfig::max_restarts`] times in a
/// row (then [`ErrorKind::Plugin`]). Dropping the last
/// handle kills the plugin's whole process group; [`shutdown`](Self::shutdown) stops it
/// gracefully.
#[derive(Clone)]
pub struct PluginClient {
    supervisor: Arc<Supervisor>,
}

impl std::fmt::Debug for PluginClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginClient")
            .field("name", &self.supervisor.name)
            .field("path", &self.supervisor.path)
            .finish_non_exhaustive()
    }
}

impl PluginClient {
    /// Checks the binary against `config.trust`, starts it, completes the handshake and asks
    /// it who it is, all within `config.start_timeout`.
    ///
    /// Every failure is [`ErrorKind::Plugin`] (or [`ErrorKind::PermissionDenied`] for a binary
    /// the trust policy refuses), and leaves no process behind.
    pub async fn launch(name: &str, path: &Path, config: PluginConfig) -> Result<Self> {
        let running = launch_once(name, path, &config).await?;
        let supervisor = Arc::new(Supervisor {
            name: name.to_owned(),
            path: path.to_owned(),
            info: Mutex::new(running.info.clone()),
            config,
            slot: Mutex::new(Slot::Running(Arc::clone(&running))),
            closed: AtomicBool::new(false),
            streak: Mutex::new(CrashStreak::new()),
        });
        supervise(Arc::downgrade(&supervisor), &running);
        Ok(PluginClient { supervisor })
    }

    /// The plugin's name.
    pub fn name(&self) -> &str {
        &self.supervisor.name
    }

    /// The process id of the running plugin, if it is running.
    pub fn pid(&self) -> Option<u32> {
        match &*self.supervisor.slot() {
            Slot::Running(running) => u32::try_from(running.process.group.as_raw()).ok(),
            _ => None,
        }
    }

    /// Where the running plugin listens, from its handshake.
    pub fn address(&self) -> Option<PluginAddress> {
        match &*self.supervisor.slot() {
            Slot::Running(running) => Some(running.address.clone()),
            _ => None,
        }
    }

    /// Asks the plugin's health service whether it is serving (also through
    /// [`CloudProvider::health`]).
    async fn health_check(&self) -> Health {
        let running = match self.supervisor.running() {
            Ok(running) => running,
            Err(error) if matches!(&*self.supervisor.slot(), Slot::Failed(_)) => {
                return Health::Failed {
                    reason: error.message().to_owned(),
                };
            }
            Err(error) => {
                return Health::NotServing {
                    reason: error.message().to_owned(),
                };
            }
        };
        match check_health(&running, self.supervisor.config.health_check_timeout).await {
            Ok(()) => Health::Serving,
            Err(reason) => Health::NotServing { reason },
        }
    }

    /// Stops the plugin: asks it to exit (`GRPCController/Shutdown`), waits the grace period,
    /// then kills its process group and reaps it. Calls afterwards fail with
    /// [`ErrorKind::Plugin`].
    pub async fn shutdown(&self) {
        self.supervisor.closed.store(true, Ordering::SeqCst);
        let previous = std::mem::replace(&mut *self.supervisor.slot(), Slot::Closed);
        if let Slot::Running(running) = previous {
            stop(&running, self.supervisor.config.shutdown_grace).await;
        }
    }

    /// Kills the plugin's process group now, without asking it to exit first; calls
    /// afterwards fail with [`ErrorKind::Plugin`]. For drop paths, where nothing can be awaited.
    pub fn kill_now(&self) {
        self.supervisor.closed.store(true, Ordering::SeqCst);
        let previous = std::mem::replace(&mut *self.supervisor.slot(), Slot::Closed);
        if let Slot::Running(running) = previous {
            running.process.kill_group();
        }
    }

    fn error(&self, running: &Running, status: tonic::Status) -> Error {
        if is_broken_connection(&status) || running.connection.is_closed() {
            // The plugin died under the call (or its connection did, which supervision treats
            // the same way): retryable once it is restarted. Stop and start are idempotent, so
            // a call whose effect is unknown may be sent again.
            return Error::new(
                ErrorKind::Unavailable,
                format!(
                    "plugin {}: the connection broke during the call ({status}); it is being restarted",
                    self.supervisor.name
                ),
            )
            .with_provider(self.supervisor.name.clone())
            .with_retry_after(self.supervisor.config.restart_backoff.initial);
        }
        let error = status_to_error(&status);
        if error.provider().is_some() {
            error
        } else {
            error.with_provider(self.supervisor.name.clone())
        }
    }
}

/// Whether `status` is the connection failing under a call rather than an answer (the
/// generated clients keep only the text of a failed readiness check, so the connection itself
/// is asked too). A provider call's broken connection carries its [`h2::Error`].
pub(super) fn is_broken_connection(status: &tonic::Status) -> bool {
    let mut source = std::error::Error::source(status);
    while let Some(error) = source {
        if error.downcast_ref::<h2::Error>().is_some() {
            return true;
        }
        source = error.source();
    }
    false
}

#[async_trait]
impl CloudProvider for PluginClient {
    fn info(&self) -> ProviderInfo {
        match self.supervisor.info.lock() {
            Ok(info) => info.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    async fn get_instance(&self, id: &InstanceId) -> Result<InstanceInfo> {
        let running = self.supervisor.running()?;
        let request = pb::GetInstanceRequest { id: id.to_string() };
        let answer = running
            .connection
            .unary(method!("GetInstance"), &request)
            .await
            .map_err(|status| self.error(&running, status))?;
        instance_from_wire(answer)
    }

    async fn list_instances(&self, filter: &InstanceFilter) -> Result<Vec<InstanceInfo>> {
        let running = self.supervisor.running()?;
        let request = pb::ListInstancesRequest {
            filter: Some(filter_to_wire(filter)),
        };
        let answer: pb::ListInstancesResponse = running
            .connection
            .unary(method!("ListInstances"), &request)
            .await
            .map_err(|status| self.error(&running, status))?;
        answer
            .instances
            .into_iter()
            .map(instance_from_wire)
            .collect()
    }

    /// `ListInstancesPage` on the plugin; a plugin without it (`UNIMPLEMENTED`, e.g. a Go
    /// plugin built on an older proto) is paged by id over `ListInstances`.
    async fn list_instances_page(
        &self,
        filter: &InstanceFilter,
        page: &PageRequest,
    ) -> Result<InstancePage> {
        let running = self.supervisor.running()?;
        let (page_size, page_token) = page_to_wire(page);
        let request = pb::ListInstancesPageRequest {
            filter: Some(filter_to_wire(filter)),
            page_size,
            page_token,
        };
        let answer = running
            .connection
            .unary::<pb::ListInstancesPageResponse>(method!("ListInstancesPage"), &request)
            .await;
        let response = match answer {
            Ok(response) => response,
            Err(status) if status.code() == tonic::Code::Unimplemented => {
                return InstancePage::by_id(self.list_instances(filter).await?, page);
            }
            Err(status) => return Err(self.error(&running, status)),
        };
        let instances = response
            .instances
            .into_iter()
            .map(instance_from_wire)
            .collect::<Result<Vec<_>>>()?;
        let next = Some(response.next_page_token).filter(|token| !token.is_empty());
        Ok(InstancePage::new(instances, next))
    }

    /// `WaitForOperation` on the plugin; one without it (`UNIMPLEMENTED`) has nothing to follow,
    /// and the waiters watch the instance's state.
    async fn wait_for_operation(
        &self,
        id: &InstanceId,
        operation: &str,
        timeout: Duration,
    ) -> Result<()> {
        let running = self.supervisor.running()?;
        let request = pb::WaitForOperationRequest {
            id: id.to_string(),
            operation: operation.to_owned(),
            timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
        };
        let answer = running
            .connection
            .unary::<pb::WaitForOperationResponse>(method!("WaitForOperation"), &request)
            .await;
        match answer {
            Ok(_) => Ok(()),
            Err(status) if status.code() == tonic::Code::Unimplemented => Ok(()),
            Err(status) => Err(self.error(&running, status)),
        }
    }

    async fn stop_instance(&self, id: &InstanceId, opts: &StopOptions) -> Result<StateChange> {
        let options = options_to_wire(opts)?;
        let running = self.supervisor.running()?;
        let request = pb::StopInstanceRequest {
            id: id.to_string(),
            options: Some(options),
        };
        let answer = running
            .connection
            .unary(method!("StopInstance"), &request)
            .await
            .map_err(|status| self.error(&running, status))?;
        change_from_wire(answer)
    }

    async fn start_instance(&self, id: &InstanceId) -> Result<StateChange> {
        let running = self.supervisor.running()?;
        let request = pb::StartInstanceRequest { id: id.to_string() };
        let answer = running
            .connection
            .unary(method!("StartInstance"), &request)
            .await
            .map_err(|status| self.error(&running, status))?;
        change_from_wire(answer)
    }

    async fn stop_instances(&self, ids: &[InstanceId], opts: &StopOptions) -> BatchResults {
        let options = match options_to_wire(opts) {
            Ok(options) => options,
            Err(error) => return snoozebot_core::each_id_fails(ids, &error),
        };
        let request = pb::StopInstancesRequest {
            ids: ids.iter().map(ToString::to_string).collect(),
            options: Some(options),
        };
        let answer = self.batch(ids, method!("StopInstances"), &request).await;
        match answer {
            Some(results) => results,
            None => {
                single_calls(ids, |id| async move { self.stop_instance(&id, opts).await }).await
            }
        }
    }

    async fn health(&self) -> Health {
        self.health_check().await
    }

    /// Stops the plugin process; see [`PluginClient::shutdown`].
    async fn close(&self) {
        self.shutdown().await;
    }

    async fn start_instances(&self, ids: &[InstanceId]) -> BatchResults {
        let request = pb::StartInstancesRequest {
            ids: ids.iter().map(ToString::to_string).collect(),
        };
        let answer = self.batch(ids, method!("StartInstances"), &request).await;
        match answer {
            Some(results) => results,
            None => single_calls(ids, |id| async move { self.start_instance(&id).await }).await,
        }
    }
}

impl PluginClient {
    /// Makes one batch call and reads one result per id; a call that fails as a whole is each
    /// id's failure. `None` when the plugin does not implement the batch RPC (`UNIMPLEMENTED`:
    /// it is optional for plugins in other languages), for the caller to send single calls.
    async fn batch(
        &self,
        ids: &[InstanceId],
        method: &'static http::Uri,
        request: &impl prost::Message,
    ) -> Option<BatchResults> {
        let result = match self.supervisor.running() {
            Ok(running) => match running
                .connection
                .unary::<pb::BatchResponse>(method, request)
                .await
            {
                Err(status) if status.code() == tonic::Code::Unimplemented => return None,
                answer => answer
                    .map_err(|status| self.error(&running, status))
                    .and_then(|response| batch_from_wire(ids, response)),
            },
            Err(error) => Err(error),
        };
        Some(result.unwrap_or_else(|error| each_id_fails(ids, &error)))
    }
}
