//! Finding plugin executables: `snoozebot-plugin-<name>` files in the plugin directories.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use super::EXECUTABLE_PREFIX;
use crate::manager::validate_name;

/// A file in a plugin directory named like a plugin, and whether it can be loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PluginFile {
    pub(crate) name: String,
    pub(crate) path: PathBuf,
    pub(crate) problem: Option<String>,
}

/// Lists the `snoozebot-plugin-<name>` entries of `dirs`, in directory order and then by
/// name. Other files are not looked at; `.minisig` signatures beside a plugin are not plugins.
/// A directory that cannot be read is logged and skipped.
pub(crate) async fn scan_plugin_dirs(dirs: &[PathBuf]) -> Vec<PluginFile> {
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
            let problem = match (validate_name(name), tokio::fs::metadata(&path).await) {
                (Err(error), _) => Some(error.message().to_owned()),
                (Ok(()), Err(error)) => Some(format!("it cannot be inspected: {error}")),
                (Ok(()), Ok(meta)) if meta.is_dir() => Some("it is a directory".to_owned()),
                (Ok(()), Ok(meta)) if !meta.is_file() => {
                    Some("it is not a regular file".to_owned())
                }
                (Ok(()), Ok(meta)) if meta.permissions().mode() & 0o111 == 0 => {
                    Some("it is not executable".to_owned())
                }
                (Ok(()), Ok(_)) => None,
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
