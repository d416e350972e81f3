//! From the config file's `[providers]` to a `PluginManager`: each provider registered by its
//! name with a factory that builds it (in process, or by launching its plugin) inside its own
//! middleware.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use snoozebot_core::manager::ProviderSource;
use snoozebot_core::{
    CloudProvider, Error, ErrorKind, PluginManager, ProviderStack, RateLimiter, Result, RetryConfig,
};
use snoozebot_plugin::{PluginConfig, PluginDirectory, TrustPolicy};

use crate::config::{
    AwsSettings, AzureSettings, GcpSettings, Loaded, MiddlewareConfig, MockSettings,
    PluginSettings, ProviderConfig,
};

/// A manager with every configured provider registered (none loaded yet).
pub fn manager(loaded: &Loaded) -> Result<Arc<PluginManager>> {
    // Each provider gets its own middleware, so the manager adds none of its own.
    let manager = Arc::new(PluginManager::new().with_stack(ProviderStack::new()));
    let directory = plugin_directory(loaded);
    // The lock file's hashes pin what `snoozebot plugins install` installed.
    let lock = crate::registry::lock_file(loaded).map_err(Error::from)?;
    for (name, provider) in &loaded.config.providers {
        let name = name.get_ref().clone();
        let stack = stack(provider.middleware())?;
        let factory = Factory {
            name: name.clone(),
            base: loaded.base().to_owned(),
            directory: directory.clone(),
            locked_sha256: lock
                .plugins
                .get(name.as_str())
                .map(|locked| locked.sha256.clone()),
            stack,
        };
        let settings = Arc::new(ProviderSettings::from(provider));
        manager.register(name, move || {
            let factory = factory.clone();
            let settings = Arc::clone(&settings);
            async move { factory.build(&settings).await }
        })?;
    }
    Ok(manager)
}

/// The plugin directories of the file, relative ones resolved against its directory, and
/// after them the install directory when it is not one of them.
pub fn plugin_directory(loaded: &Loaded) -> Option<PluginDirectory> {
    let plugins = &loaded.config.plugins;
    let mut dirs: Vec<std::path::PathBuf> = plugins
        .dirs
        .iter()
        .map(|dir| loaded.base().join(dir))
        .collect();
    if let Some(install) = &plugins.install_dir {
        let install = loaded.base().join(install);
        if !dirs.contains(&install) {
            dirs.push(install);
        }
    }
    let mut dirs = dirs.into_iter();
    let first = dirs.next()?;
    let directory = dirs.fold(PluginDirectory::new(first), PluginDirectory::with_dir);
    Some(directory.allow_symlinks_outside(plugins.allow_symlinks_outside))
}

/// A plugin's trust policy: its `sha256` pin or the lock file's (they must agree), and its
/// minisign keys.
pub fn trust_policy(
    pinned: Option<&str>,
    locked: Option<&str>,
    keys: &[String],
) -> std::result::Result<TrustPolicy, String> {
    let mut trust = TrustPolicy::default();
    match (pinned, locked) {
        (Some(pinned), Some(locked)) if !pinned.eq_ignore_ascii_case(locked) => {
            return Err(format!(
                "sha256 {pinned} is not the lock file's {locked}: remove one"
            ));
        }
        (Some(digest), _) | (None, Some(digest)) => {
            trust = trust
                .with_sha256(digest)
                .map_err(|error| error.to_string())?;
        }
        (None, None) => {}
    }
    for key in keys {
        trust = trust
            .with_minisign_key(key)
            .map_err(|error| error.to_string())?;
    }
    Ok(trust)
}

/// The middleware of one provider: tracing always; retry unless `retry_attempts = 1`;
/// timeout, concurrency and rate limit when set.
pub fn stack(middleware: &MiddlewareConfig) -> Result<ProviderStack> {
    let mut stack = ProviderStack::new().tracing();
    let attempts = middleware.retry_attempts.unwrap_or(3);
    if attempts > 1 {
        stack = stack.retry(RetryConfig::default().with_max_attempts(attempts));
    }
    if let Some(timeout) = middleware.timeout {
        stack = stack.timeout(timeout);
    }
    if let Some(concurrency) = middleware.concurrency {
        stack = stack.concurrency_limit(concurrency);
    }
    if let Some(rate) = middleware.rate_per_second {
        let burst = middleware
            .rate_burst
            .unwrap_or_else(|| rate.ceil().clamp(1.0, f64::from(u32::MAX)) as u32);
        stack = stack.rate_limit(RateLimiter::new(rate, burst)?);
    }
    Ok(stack)
}

/// The settings a factory needs, owned.
enum ProviderSettings {
    Mock {
        instances: usize,
        transition: std::time::Duration,
        latency: std::time::Duration,
    },
    Aws(Box<AwsOwned>),
    Gcp(GcpOwned),
    Azure(AzureOwned),
    Plugin(PluginOwned),
}

struct AwsOwned {
    region: Option<String>,
    endpoint: Option<String>,
    profile: Option<String>,
    keys: Option<(crate::config::Secret, crate::config::Secret)>,
    batch_size: Option<usize>,
}

struct GcpOwned {
    project: String,
    zones: Vec<String>,
    endpoint: Option<String>,
    anonymous: bool,
}

struct AzureOwned {
    subscription: String,
    resource_group: Option<String>,
    endpoint: Option<String>,
    token: Option<crate::config::Secret>,
    poll_interval: Option<std::time::Duration>,
}

struct PluginOwned {
    env: Vec<(String, crate::config::Secret)>,
    inherit: Vec<String>,
    sha256: Option<String>,
    minisign_keys: Vec<String>,
    start_timeout: Option<std::time::Duration>,
    run_as: Option<(u32, u32)>,
}

impl From<&ProviderConfig> for ProviderSettings {
    fn from(provider: &ProviderConfig) -> Self {
        match provider {
            ProviderConfig::Mock(MockSettings {
                instances,
                transition,
                latency,
                ..
            }) => ProviderSettings::Mock {
                instances: *instances,
                transition: transition.unwrap_or_default(),
                latency: latency.unwrap_or_default(),
            },
            ProviderConfig::Aws(AwsSettings {
                region,
                endpoint,
                profile,
                access_key_id,
                secret_access_key,
                batch_size,
                ..
            }) => ProviderSettings::Aws(Box::new(AwsOwned {
                region: region.clone(),
                endpoint: endpoint.clone(),
                profile: profile.clone(),
                keys: access_key_id.clone().zip(secret_access_key.clone()),
                batch_size: *batch_size,
            })),
            ProviderConfig::Gcp(GcpSettings {
                project,
                zones,
                endpoint,
                anonymous,
                ..
            }) => ProviderSettings::Gcp(GcpOwned {
                project: project.clone(),
                zones: zones.clone(),
                endpoint: endpoint.clone(),
                anonymous: *anonymous,
            }),
            ProviderConfig::Azure(AzureSettings {
                subscription,
                resource_group,
                endpoint,
                token,
                poll_interval,
                ..
            }) => ProviderSettings::Azure(AzureOwned {
                subscription: subscription.clone(),
                resource_group: resource_group.clone(),
                endpoint: endpoint.clone(),
                token: token.clone(),
                poll_interval: *poll_interval,
            }),
            ProviderConfig::Plugin(PluginSettings {
                env,
                inherit,
                sha256,
                minisign_keys,
                start_timeout,
                run_as,
                ..
            }) => ProviderSettings::Plugin(PluginOwned {
                env: env.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
                inherit: inherit.clone(),
                sha256: sha256.clone(),
                minisign_keys: minisign_keys.clone(),
                start_timeout: *start_timeout,
                run_as: run_as.map(|user| (user.uid, user.gid)),
            }),
        }
    }
}

/// Builds one configured provider, each time it is loaded.
#[derive(Clone)]
struct Factory {
    name: String,
    base: PathBuf,
    directory: Option<PluginDirectory>,
    /// The plugin's SHA-256 in the lock file, if `snoozebot plugins install` put it there.
    locked_sha256: Option<String>,
    stack: ProviderStack,
}

impl Factory {
    async fn build(&self, settings: &ProviderSettings) -> Result<Arc<dyn CloudProvider>> {
        let provider: Arc<dyn CloudProvider> = match settings {
            ProviderSettings::Mock {
                instances,
                transition,
                latency,
            } => {
                let fleet = snoozebot_testkit::MockProvider::builder()
                    .name(&self.name)
                    .transition_time(*transition)
                    .fleet(*instances)
                    // A long-running server must not grow with its calls.
                    .record_calls(false)
                    .build();
                fleet.set_latency(*latency);
                Arc::new(fleet)
            }
            ProviderSettings::Aws(aws) => Arc::new(self.aws(aws).await?),
            ProviderSettings::Gcp(gcp) => {
                let mut builder = snoozebot_gcp::GcpProviderBuilder::new().project(&gcp.project);
                if !gcp.zones.is_empty() {
                    builder = builder.zones(gcp.zones.iter().cloned());
                }
                if let Some(endpoint) = &gcp.endpoint {
                    builder = builder.endpoint(endpoint);
                }
                if gcp.anonymous {
                    builder = builder.anonymous();
                }
                Arc::new(builder.build()?)
            }
            ProviderSettings::Azure(azure) => {
                let mut builder =
                    snoozebot_azure::AzureProviderBuilder::new().subscription(&azure.subscription);
                if let Some(group) = &azure.resource_group {
                    builder = builder.resource_group(group);
                }
                if let Some(endpoint) = &azure.endpoint {
                    builder = builder.endpoint(endpoint);
                }
                if let Some(token) = &azure.token {
                    builder = builder.static_token(self.secret("token", token)?);
                }
                if let Some(interval) = azure.poll_interval {
                    builder = builder.poll_interval(interval);
                }
                Arc::new(builder.build()?)
            }
            ProviderSettings::Plugin(plugin) => self.plugin(plugin).await?,
        };
        Ok(self.stack.wrap(provider))
    }

    async fn aws(&self, aws: &AwsOwned) -> Result<snoozebot_aws::AwsProvider> {
        let mut builder = snoozebot_aws::AwsProviderBuilder::new();
        if let Some(region) = &aws.region {
            builder = builder.region(region);
        }
        if let Some(endpoint) = &aws.endpoint {
            builder = builder.endpoint(endpoint);
        }
        if let Some(profile) = &aws.profile {
            builder = builder.profile(profile);
        }
        if let Some((id, secret)) = &aws.keys {
            builder = builder.static_credentials(
                self.secret("access_key_id", id)?,
                self.secret("secret_access_key", secret)?,
            );
        }
        if let Some(batch_size) = aws.batch_size {
            builder = builder.batch_size(batch_size);
        }
        builder.build_resolved().await
    }

    /// Finds the plugin in the directories (their strict modes apply) and launches it with
    /// its environment and trust policy.
    async fn plugin(&self, plugin: &PluginOwned) -> Result<Arc<dyn CloudProvider>> {
        let Some(directory) = &self.directory else {
            return Err(self.config_error("a plugin needs [plugins] dirs to be found in"));
        };
        let mut config = PluginConfig::default();
        for pattern in &plugin.inherit {
            config = config.inherit(pattern);
        }
        for (key, value) in &plugin.env {
            config = config.with_env(key, self.secret(&format!("env.{key}"), value)?);
        }
        let trust = trust_policy(
            plugin.sha256.as_deref(),
            self.locked_sha256.as_deref(),
            &plugin.minisign_keys,
        )
        .map_err(|message| self.config_error(message))?;
        config = config.with_trust(trust);
        if let Some(timeout) = plugin.start_timeout {
            config = config.with_start_timeout(timeout);
        }
        if let Some((uid, gid)) = plugin.run_as {
            config = config.run_as(uid, gid);
        }
        directory.set_config(&self.name, config);
        let candidate = directory
            .discover()
            .await
            .into_iter()
            .find(|candidate| candidate.name == self.name)
            .ok_or_else(|| {
                let dirs: Vec<String> = directory
                    .dirs()
                    .iter()
                    .map(|dir| dir.display().to_string())
                    .collect();
                self.config_error(format!(
                    "no executable snoozebot-plugin-{} in {}",
                    self.name,
                    dirs.join(", ")
                ))
            })?;
        match candidate.factory {
            Ok(factory) => factory.build().await,
            Err(reason) => Err(self.config_error(reason)),
        }
    }

    fn secret(&self, what: &str, secret: &crate::config::Secret) -> Result<String> {
        secret
            .resolve(&self.base)
            .map_err(|reason| self.config_error(format!("{what}: {reason}")))
    }

    fn config_error(&self, message: impl std::fmt::Display) -> Error {
        Error::new(
            ErrorKind::Config,
            format!("providers.{}: {message}", self.name),
        )
        .with_provider(&self.name)
    }
}

/// The path of a file the config names, resolved against the config file's directory.
pub fn resolve(loaded: &Loaded, path: &Path) -> PathBuf {
    loaded.base().join(path)
}
