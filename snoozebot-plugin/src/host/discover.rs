//! Finding plugin executables: `snoozebot-plugin-<name>` files in plugin directories, offered
//! to a [`PluginManager`](snoozebot_core::PluginManager) as a [`ProviderSource`].

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use futures_util::future::BoxFuture;
use snoozebot_core::ProviderKind;
use snoozebot_core::manager::{Candidate, ProviderSource, validate_provider_name};

use super::{PluginClient, PluginConfig};
use crate::EXECUTABLE_PREFIX;

/// The plugin executables of one or more directories, as a source of providers for a
/// [`PluginManager`](snoozebot_core::PluginManager): each `snoozebot-plugin-<name>` there is
/// loadable as `<name>`, started as a supervised [`PluginClient`] on load and stopped on
/// unload. Discovery runs nothing; files that cannot be plugins (not executable, a directory, a
/// bad name) are reported with their problem. Directories are searched in the order they were
/// added; the first executable of a name wins.
///
/// As ssh's `StrictModes`: a plugin is refused when its file or its directory can be written by
/// anyone, or belongs to another user than this process's or root; a symlink whose target lies
/// outside the plugin directories is refused unless
/// [`allow_symlinks_outside`](Self::allow_symlinks_outside). The same check runs again at each
/// load, before the binary is started.
///
/// Clones share their configuration, so a clone kept after
/// [`add_source`](snoozebot_core::PluginManager::add_source) can change it for later loads.
///
/// ```
/// use snoozebot_plugin::{PluginConfig, PluginDirectory, TrustPolicy};
///
/// let plugins = PluginDirectory::new("/usr/lib/snoozebot/plugins")
///     .with_dir("/opt/snoozebot/plugins")
///     .with_default_config(PluginConfig::default().inherit("AWS_*"))
///     .configure("gcp", PluginConfig::default().inherit("GOOGLE_*"));
/// assert_eq!(plugins.dirs().len(), 2);
/// ```
#[derive(Debug, Clone)]
pub struct PluginDirectory {
    settings: Arc<Mutex<Settings>>,
}

#[derive(Debug, Default)]
struct Settings {
    dirs: Vec<PathBuf>,
    default_config: PluginConfig,
    configs: BTreeMap<String, PluginConfig>,
    symlinks_outside: bool,
}

impl PluginDirectory {
    /// The plugins of `dir`, launched with [`PluginConfig::default`].
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        PluginDirectory {
            settings: Arc::new(Mutex::new(Settings {
                dirs: vec![dir.into()],
                ..Settings::default()
            })),
        }
    }

    fn settings(&self) -> MutexGuard<'_, Settings> {
        // Every update under this lock is one assignment, so a poisoned one is consistent.
        match self.settings.lock() {
            Ok(settings) => settings,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Also looks in `dir`, after the directories before it.
    pub fn with_dir(self, dir: impl Into<PathBuf>) -> Self {
        self.settings().dirs.push(dir.into());
        self
    }

    /// Whether a plugin may be a symlink to a file outside the plugin directories (default
    /// no: a link planted in the directory would otherwise run anything on the machine).
    pub fn allow_symlinks_outside(self, allow: bool) -> Self {
        self.settings().symlinks_outside = allow;
        self
    }

    /// Launches plugins with `config` unless [`configure`](Self::configure) gave one its own.
    pub fn with_default_config(self, config: PluginConfig) -> Self {
        self.settings().default_config = config;
        self
    }

    /// Launches the plugin `name` with `config` (its environment, trust policy, timeouts).
    pub fn configure(self, name: impl Into<String>, config: PluginConfig) -> Self {
        self.set_config(name, config);
        self
    }

    /// [`configure`](Self::configure) through a shared handle; takes effect at the plugin's
    /// next load.
    pub fn set_config(&self, name: impl Into<String>, config: PluginConfig) {
        self.settings().configs.insert(name.into(), config);
    }

    /// The directories searched, in order.
    pub fn dirs(&self) -> Vec<PathBuf> {
        self.settings().dirs.clone()
    }

    /// The configuration the plugin `name` is launched with.
    pub fn config_for(&self, name: &str) -> PluginConfig {
        let settings = self.settings();
        settings
            .configs
            .get(name)
            .unwrap_or(&settings.default_config)
            .clone()
    }

    fn candidate(&self, file: PluginFile) -> Candidate {
        let PluginFile {
            name,
            path,
            problem,
        } = file;
        let candidate = match problem {
            Some(problem) => Candidate::unusable(name, ProviderKind::Executable, problem),
            None => {
                let directory = self.clone();
                let (plugin, binary) = (name.clone(), path.clone());
                Candidate::loadable(name, ProviderKind::Executable, move || {
                    let config = directory.config_for(&plugin);
                    let (plugin, binary) = (plugin.clone(), binary.clone());
                    let directory = directory.clone();
                    async move {
                        // Again at load: the file may have changed since discovery.
                        let (dirs, outside) = directory.strictness();
                        if let Some(problem) = inspect(&binary, &dirs, outside).await {
                            return Err(snoozebot_core::Error::new(
                                snoozebot_core::ErrorKind::PermissionDenied,
                                format!(
                                    "plugin {plugin} ({}): {problem}; it was not run",
                                    binary.display()
                                ),
                            ));
                        }
                        PluginClient::launch(&plugin, &binary, config).await
                    }
                })
            }
        };
        candidate.with_path(path)
    }
}

impl PluginDirectory {
    fn strictness(&self) -> (Vec<PathBuf>, bool) {
        let settings = self.settings();
        (settings.dirs.clone(), settings.symlinks_outside)
    }
}

impl ProviderSource for PluginDirectory {
    fn discover(&self) -> BoxFuture<'_, Vec<Candidate>> {
        Box::pin(async move {
            let (dirs, outside) = self.strictness();
            scan_plugin_dirs(&dirs, outside)
                .await
                .into_iter()
                .map(|file| self.candidate(file))
                .collect()
        })
    }
}

/// A file in a plugin directory named like a plugin, and whether it can be loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PluginFile {
    name: String,
    path: PathBuf,
    problem: Option<String>,
}

/// Lists the `snoozebot-plugin-<name>` entries of `dirs`, in directory order and then by
/// name. Other files are not looked at; `.minisig` signatures beside a plugin are not plugins.
/// A directory that cannot be read is logged and skipped.
async fn scan_plugin_dirs(dirs: &[PathBuf], symlinks_outside: bool) -> Vec<PluginFile> {
    let mut found = Vec::new();
    for dir in dirs {
        let mut entries = match tokio::fs::read_dir(dir).await {
            Ok(entries) => entries,
            Err(error) => {
                tracing::warn!(dir = %dir.display(), %error, "plugin directory cannot be read");
                continue;
            }
        };
        let mut in_dir = Vec::new();
        while let Ok(Some(entry)) = entries.next_entry().await {
            let file_name = entry.file_name();
            let Some(name) = file_name
                .to_str()
                .and_then(|f| f.strip_prefix(EXECUTABLE_PREFIX))
            else {
                continue;
            };
            if name.ends_with(".minisig") {
                continue;
            }
            let path = entry.path();
            let problem = match validate_provider_name(name) {
                Err(error) => Some(error.message().to_owned()),
                Ok(()) => inspect(&path, dirs, symlinks_outside).await,
            };
            in_dir.push(PluginFile {
                name: name.to_owned(),
                path,
                problem,
            });
        }
        in_dir.sort_by(|a, b| a.name.cmp(&b.name));
        found.extend(in_dir);
    }
    found
}

/// Why the plugin file at `path` must not run, if it must not: not an executable regular file,
/// writable by anyone, another user's (file or directory), or a symlink out of `dirs`.
async fn inspect(path: &Path, dirs: &[PathBuf], symlinks_outside: bool) -> Option<String> {
    let link = match tokio::fs::symlink_metadata(path).await {
        Ok(link) => link,
        Err(error) => return Some(format!("it cannot be inspected: {error}")),
    };
    let meta = match tokio::fs::metadata(path).await {
        Ok(meta) => meta,
        Err(error) => return Some(format!("it cannot be inspected: {error}")),
    };
    if meta.is_dir() {
        return Some("it is a directory".to_owned());
    }
    if !meta.is_file() {
        return Some("it is not a regular file".to_owned());
    }
    if meta.permissions().mode() & 0o111 == 0 {
        return Some("it is not executable".to_owned());
    }
    let target = match tokio::fs::canonicalize(path).await {
        Ok(target) => target,
        Err(error) => return Some(format!("it cannot be resolved: {error}")),
    };
    if link.file_type().is_symlink() && !symlinks_outside {
        let mut inside = false;
        for dir in dirs {
            if let Ok(dir) = tokio::fs::canonicalize(dir).await
                && target.parent() == Some(dir.as_path())
            {
                inside = true;
            }
        }
        if !inside {
            return Some(format!(
                "it is a symlink to {}, outside the plugin directories (allow_symlinks_outside)",
                target.display()
            ));
        }
    }
    if let Some(problem) = strict_mode(&target, &meta, "it") {
        return Some(problem);
    }
    let dir = target.parent()?;
    match tokio::fs::metadata(dir).await {
        Ok(dir_meta) => strict_mode(dir, &dir_meta, &format!("its directory {}", dir.display())),
        Err(error) => Some(format!("its directory cannot be inspected: {error}")),
    }
}

/// ssh's StrictModes for one file or directory: writable by anyone, or owned by someone other
/// than this process's user or root, is refused; writable by its group is warned about.
fn strict_mode(path: &Path, meta: &std::fs::Metadata, what: &str) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let mode = meta.mode();
    if mode & 0o002 != 0 {
        return Some(format!(
            "{what} can be written by anyone (chmod o-w {})",
            path.display()
        ));
    }
    let me = nix::unistd::geteuid().as_raw();
    if meta.uid() != me && meta.uid() != 0 {
        return Some(format!(
            "{what} belongs to user {}, neither this process's ({me}) nor root",
            meta.uid()
        ));
    }
    if mode & 0o020 != 0 {
        tracing::warn!(path = %path.display(), "plugin file or directory is writable by its group");
    }
    None
}
