//! The plugin side: [`serve`] turns any [`CloudProvider`] into a plugin executable.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, UnixListener};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

mod hclog;
mod http2;
mod unary;

use crate::proto::go_plugin::{
    self, ConnInfo, StdioData, grpc_broker_server, grpc_controller_server, grpc_stdio_server,
};
use crate::proto::v1::{self as pb, cloud_provider_server};
use crate::wire::{
    APP_PROTOCOL_VERSION, CLIENT_CERT_ENV, CORE_PROTOCOL_VERSION, Handshake, MAGIC_COOKIE_KEY,
    MAGIC_COOKIE_VALUE, PROTOCOL_VERSIONS_ENV, PluginAddress, negotiate,
};
use crate::wire::{Io, readable_only_tcp, readable_only_unix};
use crate::wire::{LaunchIdentity, parse_host_cert};
use crate::wire::{
    batch_to_wire, change_to_wire, error_to_status, filter_from_wire, id_from_wire, info_to_wire,
    instance_to_wire, options_from_wire, page_from_wire,
};
use snoozebot_core::CloudProvider;
use snoozebot_core::{Error, ErrorKind};

/// Sends this plugin's `tracing` events to stderr as hclog JSON lines, which hosts (ours and
/// go-plugin's) log with their level. [`serve`] does this itself; call it first in `main` to
/// also see what happens before `serve`, such as building the provider. Does nothing if a
/// global subscriber is already set. The level comes from `SNOOZEBOT_PLUGIN_LOG` (`trace` …
/// `error`, or `off`; default `info`).
pub fn init_logging() {
    hclog::install();
}

/// How a plugin serves.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ServeConfig {
    /// The app protocol versions this plugin speaks; the highest one the host also speaks is
    /// used. Default: [`APP_PROTOCOL_VERSION`].
    pub app_versions: Vec<u32>,
    /// How often to check that the host is still alive; the plugin exits when it is gone.
    /// Default 200 ms.
    pub parent_check_interval: Duration,
    /// Send `tracing` events to stderr as hclog JSON lines, which the host logs with their
    /// level (unless the plugin installed a subscriber of its own). The level comes from
    /// `SNOOZEBOT_PLUGIN_LOG` (`trace` … `error`, `off`; default `info`). Default on.
    pub log_to_stderr: bool,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            app_versions: vec![APP_PROTOCOL_VERSION],
            parent_check_interval: Duration::from_millis(200),
            log_to_stderr: true,
        }
    }
}

/// Serves `provider` as a plugin until the host asks it to stop or goes away, on a
/// single-threaded runtime of its own. Returns the process's exit code: `main` returns it.
///
/// ```no_run
/// use std::process::ExitCode;
/// # use snoozebot_core::*;
/// # #[derive(Debug)] struct MyCloud;
/// # #[async_trait]
/// # impl CloudProvider for MyCloud {
/// #     fn info(&self) -> ProviderInfo { ProviderInfo::new("my-cloud", "1", "1", Capabilities::new([StopMode::Stop])) }
/// #     async fn get_instance(&self, id: &InstanceId) -> Result<InstanceInfo> { Err(Error::not_found(id.as_str())) }
/// #     async fn list_instances(&self, _: &InstanceFilter) -> Result<Vec<InstanceInfo>> { Ok(vec![]) }
/// #     async fn stop_instance(&self, id: &InstanceId, _: &StopOptions) -> Result<StateChange> { Err(Error::not_found(id.as_str())) }
/// #     async fn start_instance(&self, id: &InstanceId) -> Result<StateChange> { Err(Error::not_found(id.as_str())) }
/// # }
///
/// fn main() -> ExitCode {
///     snoozebot_plugin::serve(MyCloud)
/// }
/// ```
///
/// Run by hand (without the host's magic cookie) it prints what it is for and exits with 1.
/// It writes nothing to stdout but the handshake line: later writes to stdout go to stderr.
pub fn serve(provider: impl CloudProvider + 'static) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("snoozebot plugin: cannot start a tokio runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(serve_with(Arc::new(provider), ServeConfig::default()))
}

/// Serves `provider` as a plugin on the current tokio runtime; see [`serve`].
pub async fn serve_with(provider: Arc<dyn CloudProvider>, config: ServeConfig) -> ExitCode {
    if std::env::var(MAGIC_COOKIE_KEY).as_deref() != Ok(MAGIC_COOKIE_VALUE) {
        eprintln!(
            "This binary is a Snoozebot plugin ({name}). It is not meant to be run by hand:\n\
             a Snoozebot host (or any go-plugin host with the Snoozebot handshake) starts it.\n\
             Put it in a plugin directory of your service and load it by name.",
            name = provider.info().name
        );
        return ExitCode::FAILURE;
    }
    if config.log_to_stderr {
        hclog::install();
    }
    match run(provider, config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("snoozebot plugin: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run(provider: Arc<dyn CloudProvider>, config: ServeConfig) -> snoozebot_core::Result<()> {
    let host_versions = std::env::var(PROTOCOL_VERSIONS_ENV).ok();
    let app_version = negotiate(host_versions.as_deref(), &config.app_versions)?;

    let (shutdown_tx, mut shutdown_rx) = watch::channel(false);
    watch_parent(config.parent_check_interval, shutdown_tx.clone());

    let tls = match std::env::var(CLIENT_CERT_ENV) {
        Ok(pem) if !pem.trim().is_empty() => {
            let host_cert = parse_host_cert(&pem)?;
            let identity = LaunchIdentity::generate()?;
            let config = identity.server_config(host_cert)?;
            Some((
                identity.cert,
                tokio_rustls::TlsAcceptor::from(Arc::new(config)),
            ))
        }
        _ => None,
    };

    let (listener, socket_dir) = Listener::bind()?;
    let address = listener.address()?;
    let acceptor_used = tls.is_some();
    let (server_cert, acceptor) = match tls {
        Some((cert, acceptor)) => (Some(cert.to_vec()), Some(acceptor)),
        None => (None, None),
    };
    let incoming = accept_loop(listener, acceptor, shutdown_rx.clone());

    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter
        .set_service_status("plugin", tonic_health::ServingStatus::Serving)
        .await;
    health_reporter
        .set_service_status("", tonic_health::ServingStatus::Serving)
        .await;

    let routes = tonic::service::Routes::new(health_service)
        .add_service(grpc_controller_server::GrpcControllerServer::new(
            Controller {
                shutdown: shutdown_tx.clone(),
            },
        ))
        .add_service(grpc_broker_server::GrpcBrokerServer::new(IdleStreams {
            shutdown: shutdown_rx.clone(),
        }))
        .add_service(grpc_stdio_server::GrpcStdioServer::new(IdleStreams {
            shutdown: shutdown_rx.clone(),
        }))
        .prepare();
    let services = http2::Services {
        provider: Arc::new(ProviderService { provider }),
        routes,
    };
    let server = tokio::spawn(async move {
        let mut incoming = incoming;
        while let Some(connection) = incoming.recv().await {
            tokio::spawn(http2::serve_connection(connection, services.clone()));
        }
    });
    tracing::debug!(app_version, tls = acceptor_used, "plugin serving");

    let handshake = Handshake {
        core_version: CORE_PROTOCOL_VERSION,
        app_version,
        address,
        server_cert,
    };
    announce(&handshake)?;

    // Like go-plugin's plugins, exit as soon as asked: waiting for a graceful HTTP/2 shutdown
    // can wait forever on a host that waits for us to close first.
    tokio::select! {
        _ = shutdown_rx.wait_for(|stop| *stop) => {}
        // Ends only when accepting does, at shutdown.
        _ = server => {}
        // The host's parent-death signal is SIGTERM: a dead host cannot remove what it made
        // for us, and a living one does not mind.
        () = terminate_signal() => remove_orphaned_private_tmp(),
    }
    drop(socket_dir);
    Ok(())
}

/// Prints the handshake line, then points stdout at stderr so that nothing printed later
/// (by a dependency, say) can reach the host's handshake reader.
fn announce(handshake: &Handshake) -> snoozebot_core::Result<()> {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{handshake}")
        .and_then(|()| stdout.flush())
        .map_err(|error| {
            Error::new(
                ErrorKind::Plugin,
                format!("cannot write the handshake: {error}"),
            )
        })?;
    if let Err(error) = nix::unistd::dup2_stdout(std::io::stderr()) {
        tracing::warn!(%error, "cannot redirect stdout to stderr after the handshake");
    }
    Ok(())
}

async fn terminate_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => std::future::pending().await,
    }
}

/// Exits when the host is gone: the parent pid changes when the parent dies and the plugin is
/// reparented. A Snoozebot host also arms a parent-death signal (SIGTERM) for its plugins; the
/// poll covers hosts that do not, go-plugin's among them.
fn watch_parent(interval: Duration, shutdown: watch::Sender<bool>) {
    let parent = nix::unistd::getppid();
    if parent.as_raw() <= 1 {
        return;
    }
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(interval);
        loop {
            ticker.tick().await;
            if nix::unistd::getppid() != parent {
                remove_orphaned_private_tmp();
                let _ = shutdown.send(true);
                return;
            }
        }
    });
}

/// The host died (or is about to stop us) and may not remove the private temporary directory it
/// made for this plugin: remove it here, if it is one (its name says so).
fn remove_orphaned_private_tmp() {
    let Some(dir) = std::env::var_os(crate::wire::PRIVATE_TMP_ENV).map(PathBuf::from) else {
        return;
    };
    let is_private = dir
        .file_name()
        .and_then(|name| name.to_str())
        .is_some_and(|name| name.starts_with(crate::wire::PRIVATE_TMP_PREFIX));
    if is_private {
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// Where the plugin listens: a unix socket in a private directory, or, where unix sockets are
/// unavailable, TCP on 127.0.0.1 (in go-plugin's `PLUGIN_MIN_PORT`..`PLUGIN_MAX_PORT` range
/// when the host gives one).
enum Listener {
    Unix(UnixListener),
    Tcp(TcpListener),
}

impl Listener {
    fn bind() -> snoozebot_core::Result<(Self, Option<SocketDir>)> {
        let unix = SocketDir::create().and_then(|dir| {
            let listener = UnixListener::bind(dir.socket()).map_err(|error| {
                Error::new(
                    ErrorKind::Plugin,
                    format!("cannot listen on {}: {error}", dir.socket().display()),
                )
            })?;
            Ok((listener, dir))
        });
        match unix {
            Ok((listener, dir)) => Ok((Listener::Unix(listener), Some(dir))),
            Err(error) => {
                tracing::warn!(%error, "no unix socket; listening on 127.0.0.1 instead");
                Ok((Listener::Tcp(bind_loopback()?), None))
            }
        }
    }

    fn address(&self) -> snoozebot_core::Result<PluginAddress> {
        let address = match self {
            Listener::Unix(listener) => listener.local_addr().ok().and_then(|addr| {
                addr.as_pathname()
                    .map(|path| PluginAddress::Unix(path.to_owned()))
            }),
            Listener::Tcp(listener) => listener.local_addr().ok().map(PluginAddress::Tcp),
        };
        address.ok_or_else(|| Error::new(ErrorKind::Plugin, "cannot tell where the plugin listens"))
    }

    async fn accept(&self) -> std::io::Result<Box<dyn Io>> {
        match self {
            Listener::Unix(listener) => {
                Ok(Box::new(readable_only_unix(listener.accept().await?.0)?))
            }
            Listener::Tcp(listener) => Ok(Box::new(readable_only_tcp(listener.accept().await?.0)?)),
        }
    }
}

fn bind_loopback() -> snoozebot_core::Result<TcpListener> {
    let port = |name: &str| {
        std::env::var(name)
            .ok()
            .and_then(|value| value.parse::<u16>().ok())
    };
    let ports: Vec<u16> = match (port("PLUGIN_MIN_PORT"), port("PLUGIN_MAX_PORT")) {
        (Some(min), Some(max)) if min <= max => (min..=max).collect(),
        _ => vec![0],
    };
    for port in ports {
        if let Ok(listener) = std::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, port)) {
            listener.set_nonblocking(true).map_err(|error| {
                Error::new(
                    ErrorKind::Plugin,
                    format!("cannot set up the TCP listener: {error}"),
                )
            })?;
            return TcpListener::from_std(listener).map_err(|error| {
                Error::new(
                    ErrorKind::Plugin,
                    format!("cannot set up the TCP listener: {error}"),
                )
            });
        }
    }
    Err(Error::new(
        ErrorKind::Plugin,
        "no free TCP port on 127.0.0.1 in the host's range",
    ))
}

/// A private directory (mode 0700) for the socket, removed when dropped.
struct SocketDir {
    dir: PathBuf,
}

impl SocketDir {
    fn create() -> snoozebot_core::Result<Self> {
        use std::os::unix::fs::DirBuilderExt;
        let base = std::env::var_os("PLUGIN_UNIX_SOCKET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(std::env::temp_dir);
        let unique = format!(
            "snoozebot-plugin-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|elapsed| elapsed.subsec_nanos())
                .unwrap_or_default()
        );
        let dir = base.join(unique);
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .map_err(|error| {
                Error::new(
                    ErrorKind::Plugin,
                    format!("cannot create socket directory {}: {error}", dir.display()),
                )
            })?;
        Ok(SocketDir { dir })
    }

    fn socket(&self) -> PathBuf {
        self.dir.join("plugin.sock")
    }
}

impl Drop for SocketDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Accepts connections; TLS handshakes run in tasks of their own, so a slow or hostile
/// client cannot hold up the others.
fn accept_loop(
    listener: Listener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    mut shutdown: watch::Receiver<bool>,
) -> mpsc::Receiver<Box<dyn Io>> {
    let (sender, receiver) = mpsc::channel(16);
    tokio::spawn(async move {
        loop {
            let stream = tokio::select! {
                _ = shutdown.wait_for(|stop| *stop) => return,
                accepted = listener.accept() => match accepted {
                    Ok(stream) => stream,
                    Err(error) => {
                        tracing::warn!(%error, "accepting a host connection failed");
                        continue;
                    }
                },
            };
            match &tls {
                None => {
                    if sender.send(stream).await.is_err() {
                        return;
                    }
                }
                Some(acceptor) => {
                    let acceptor = acceptor.clone();
                    let sender = sender.clone();
                    tokio::spawn(async move {
                        let handshake =
                            tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream))
                                .await;
                        match handshake {
                            Ok(Ok(tls_stream)) => {
                                let _ = sender.send(Box::new(tls_stream)).await;
                            }
                            Ok(Err(error)) => {
                                tracing::warn!(%error, "TLS handshake with the host failed")
                            }
                            Err(_) => tracing::warn!("TLS handshake with the host timed out"),
                        }
                    });
                }
            }
        }
    });
    receiver
}

/// `plugin.GRPCController`: the host asks the plugin to exit.
struct Controller {
    shutdown: watch::Sender<bool>,
}

#[tonic::async_trait]
impl grpc_controller_server::GrpcController for Controller {
    async fn shutdown(
        &self,
        _request: Request<go_plugin::Empty>,
    ) -> Result<Response<go_plugin::Empty>, Status> {
        let shutdown = self.shutdown.clone();
        // Give the answer a moment to leave before the process exits.
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(10)).await;
            let _ = shutdown.send(true);
        });
        Ok(Response::new(go_plugin::Empty {}))
    }
}

/// `plugin.GRPCBroker` and `plugin.GRPCStdio`: served so that go-plugin hosts, which open
/// them on connect, are content. Snoozebot opens no broker connections, and the plugin's
/// stderr reaches the host through the process pipe, so both streams stay open and empty until
/// the plugin exits.
struct IdleStreams {
    shutdown: watch::Receiver<bool>,
}

impl IdleStreams {
    fn open_until_shutdown<T: Send + 'static>(&self) -> ReceiverStream<Result<T, Status>> {
        let (sender, receiver) = mpsc::channel(1);
        let mut shutdown = self.shutdown.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = shutdown.wait_for(|stop| *stop) => {}
                () = sender.closed() => {}
            }
        });
        ReceiverStream::new(receiver)
    }
}

#[tonic::async_trait]
impl grpc_broker_server::GrpcBroker for IdleStreams {
    type StartStreamStream = ReceiverStream<Result<ConnInfo, Status>>;

    async fn start_stream(
        &self,
        request: Request<Streaming<ConnInfo>>,
    ) -> Result<Response<Self::StartStreamStream>, Status> {
        let mut inbound = request.into_inner();
        tokio::spawn(async move {
            while let Ok(Some(info)) = inbound.message().await {
                tracing::debug!(
                    service_id = info.service_id,
                    "ignoring a broker connection offer"
                );
            }
        });
        Ok(Response::new(self.open_until_shutdown()))
    }
}

#[tonic::async_trait]
impl grpc_stdio_server::GrpcStdio for IdleStreams {
    type StreamStdioStream = ReceiverStream<Result<StdioData, Status>>;

    async fn stream_stdio(
        &self,
        _request: Request<()>,
    ) -> Result<Response<Self::StreamStdioStream>, Status> {
        Ok(Response::new(self.open_until_shutdown()))
    }
}

/// `snoozebot.plugin.v1.CloudProvider` on top of a [`CloudProvider`].
struct ProviderService {
    provider: Arc<dyn CloudProvider>,
}

fn status(error: Error) -> Status {
    error_to_status(&error)
}

#[tonic::async_trait]
impl cloud_provider_server::CloudProvider for ProviderService {
    async fn info(
        &self,
        _request: Request<pb::InfoRequest>,
    ) -> Result<Response<pb::ProviderInfo>, Status> {
        Ok(Response::new(info_to_wire(&self.provider.info())))
    }

    async fn get_instance(
        &self,
        request: Request<pb::GetInstanceRequest>,
    ) -> Result<Response<pb::InstanceInfo>, Status> {
        let id =
            id_from_wire(request.into_inner().id, ErrorKind::InvalidArgument).map_err(status)?;
        let info = self.provider.get_instance(&id).await.map_err(status)?;
        Ok(Response::new(instance_to_wire(info)))
    }

    async fn list_instances(
        &self,
        request: Request<pb::ListInstancesRequest>,
    ) -> Result<Response<pb::ListInstancesResponse>, Status> {
        let filter = filter_from_wire(request.into_inner().filter);
        let instances = self
            .provider
            .list_instances(&filter)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::ListInstancesResponse {
            instances: instances.into_iter().map(instance_to_wire).collect(),
        }))
    }

    async fn list_instances_page(
        &self,
        request: Request<pb::ListInstancesPageRequest>,
    ) -> Result<Response<pb::ListInstancesPageResponse>, Status> {
        let request = request.into_inner();
        let filter = filter_from_wire(request.filter);
        let page = page_from_wire(request.page_size, request.page_token);
        let page = self
            .provider
            .list_instances_page(&filter, &page)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::ListInstancesPageResponse {
            instances: page.instances.into_iter().map(instance_to_wire).collect(),
            next_page_token: page.next_token.unwrap_or_default(),
        }))
    }

    async fn wait_for_operation(
        &self,
        request: Request<pb::WaitForOperationRequest>,
    ) -> Result<Response<pb::WaitForOperationResponse>, Status> {
        let request = request.into_inner();
        let id = id_from_wire(request.id, ErrorKind::InvalidArgument).map_err(status)?;
        self.provider
            .wait_for_operation(
                &id,
                &request.operation,
                Duration::from_millis(request.timeout_ms),
            )
            .await
            .map_err(status)?;
        Ok(Response::new(pb::WaitForOperationResponse {}))
    }

    async fn stop_instance(
        &self,
        request: Request<pb::StopInstanceRequest>,
    ) -> Result<Response<pb::StateChange>, Status> {
        let request = request.into_inner();
        let id = id_from_wire(request.id, ErrorKind::InvalidArgument).map_err(status)?;
        let opts = options_from_wire(request.options).map_err(status)?;
        let change = self
            .provider
            .stop_instance(&id, &opts)
            .await
            .map_err(status)?;
        Ok(Response::new(change_to_wire(&change)))
    }

    async fn start_instance(
        &self,
        request: Request<pb::StartInstanceRequest>,
    ) -> Result<Response<pb::StateChange>, Status> {
        let id =
            id_from_wire(request.into_inner().id, ErrorKind::InvalidArgument).map_err(status)?;
        let change = self.provider.start_instance(&id).await.map_err(status)?;
        Ok(Response::new(change_to_wire(&change)))
    }

    async fn stop_instances(
        &self,
        request: Request<pb::StopInstancesRequest>,
    ) -> Result<Response<pb::BatchResponse>, Status> {
        let request = request.into_inner();
        let ids = ids_from_wire(request.ids)?;
        let opts = options_from_wire(request.options).map_err(status)?;
        let results = self.provider.stop_instances(&ids, &opts).await;
        Ok(Response::new(batch_to_wire(&results)))
    }

    async fn start_instances(
        &self,
        request: Request<pb::StartInstancesRequest>,
    ) -> Result<Response<pb::BatchResponse>, Status> {
        let ids = ids_from_wire(request.into_inner().ids)?;
        let results = self.provider.start_instances(&ids).await;
        Ok(Response::new(batch_to_wire(&results)))
    }
}

fn ids_from_wire(ids: Vec<String>) -> Result<Vec<snoozebot_core::InstanceId>, Status> {
    ids.into_iter()
        .map(|id| id_from_wire(id, ErrorKind::InvalidArgument).map_err(status))
        .collect()
}
