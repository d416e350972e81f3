//! The registry commands: publishing (`snoozebot registry …`) and installing from the
//! configured registries (`snoozebot plugins search|install|upgrade|remove|verify`), and the
//! lock file whose hashes pin installed plugins.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::Duration;

use serde_json::json;
use snoozebot_registry::semver::{Version, VersionReq};
use snoozebot_registry::{
    DEFAULT_LOCK_FILE, Installer, LockFile, Platform, Publisher, Registry, RegistryError,
    SigningKey, TrustedKeys, Verified,
};

use crate::cli::{PluginsCommand, RegistryCommand, SigningArgs};
use crate::config::Loaded;
use crate::exit::{Failure, Outcome};

const PASSWORD_ENV: &str = "SNOOZEBOT_REGISTRY_KEY_PASSWORD";

fn failure(context: &str, error: RegistryError) -> Failure {
    Failure::from_error(context, &error.into())
}

/// `snoozebot registry …`: needs no config file.
pub fn publish(command: RegistryCommand) -> Result<Outcome, Failure> {
    match command {
        RegistryCommand::Keygen { out } => {
            let key = SigningKey::generate().map_err(|error| failure("keygen", error))?;
            let text = key
                .secret_key_file()
                .map_err(|error| failure("keygen", error))?;
            let written = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode_0600()
                .open(&out)
                .and_then(|mut file| file.write_all(text.as_bytes()));
            if let Err(error) = written {
                return Err(Failure::new(
                    Outcome::Failed,
                    format!("cannot write {}: {error}", out.display()),
                ));
            }
            eprintln!(
                "secret key written to {} (keep it secret); the public key, for [registries] keys:",
                out.display()
            );
            println!("{}", key.public_base64());
            Ok(Outcome::Done)
        }
        RegistryCommand::Add {
            dir,
            binary,
            name,
            version,
            os,
            arch,
            protocols,
            signing,
        } => {
            let version: Version = version.parse().map_err(|error| {
                Failure::new(Outcome::Usage, format!("--version {version:?}: {error}"))
            })?;
            let current = Platform::current();
            let platform = Platform::new(os.unwrap_or(current.os), arch.unwrap_or(current.arch));
            let keys = signing_keys(&signing)?;
            let publisher = Publisher::new(&dir);
            let context = format!("registry {}", dir.display());
            let mut index = publisher
                .index()
                .map_err(|error| failure(&context, error))?;
            let artifact = publisher
                .add(
                    &mut index,
                    &name,
                    &version,
                    platform.clone(),
                    &protocols,
                    &binary,
                )
                .map_err(|error| failure(&context, error))?;
            publisher
                .publish(&mut index, &keys, valid_for(&signing))
                .map_err(|error| failure(&context, error))?;
            println!(
                "{name} {version} for {platform} ({} bytes, sha256 {}) published in {}: index version {}, expires {}",
                artifact.size,
                artifact.sha256,
                dir.display(),
                index.version,
                index.expires.to_rfc3339()
            );
            Ok(Outcome::Done)
        }
        RegistryCommand::Sign { dir, signing } => {
            let keys = signing_keys(&signing)?;
            let publisher = Publisher::new(&dir);
            let context = format!("registry {}", dir.display());
            let mut index = publisher
                .index()
                .map_err(|error| failure(&context, error))?;
            publisher
                .publish(&mut index, &keys, valid_for(&signing))
                .map_err(|error| failure(&context, error))?;
            println!(
                "{}: index version {} signed by {} key{}, expires {}",
                dir.display(),
                index.version,
                keys.len(),
                if keys.len() == 1 { "" } else { "s" },
                index.expires.to_rfc3339()
            );
            Ok(Outcome::Done)
        }
    }
}

trait CreateMode {
    fn mode_0600(&mut self) -> &mut Self;
}

impl CreateMode for std::fs::OpenOptions {
    fn mode_0600(&mut self) -> &mut Self {
        std::os::unix::fs::OpenOptionsExt::mode(self, 0o600)
    }
}

fn signing_keys(signing: &SigningArgs) -> Result<Vec<SigningKey>, Failure> {
    let password = std::env::var(PASSWORD_ENV).ok();
    signing
        .keys
        .iter()
        .map(|path| {
            SigningKey::from_file(path, password.clone()).map_err(|error| failure("signing", error))
        })
        .collect()
}

fn valid_for(signing: &SigningArgs) -> Duration {
    Duration::from_secs(signing.valid_days.saturating_mul(86_400))
}

/// The install directory and lock file the config file names.
pub fn installer(loaded: &Loaded) -> Option<Installer> {
    let plugins = &loaded.config.plugins;
    let dir = plugins.install_dir.as_ref().or(plugins.dirs.first())?;
    let dir = loaded.base().join(dir);
    let lock = plugins.lock_file.as_ref().map_or_else(
        || dir.join(DEFAULT_LOCK_FILE),
        |path| loaded.base().join(path),
    );
    Some(Installer::new(dir).with_lock_file(lock))
}

/// The lock file of the config file (empty when there is none yet).
pub fn lock_file(loaded: &Loaded) -> Result<LockFile, RegistryError> {
    match installer(loaded) {
        Some(installer) => installer.lock(),
        None => Ok(LockFile::default()),
    }
}

fn registries(loaded: &Loaded) -> Result<Vec<Registry>, Failure> {
    loaded
        .config
        .registries
        .iter()
        .map(|(name, settings)| {
            let keys = TrustedKeys::new(&settings.keys)
                .map_err(|error| failure(&format!("registries.{name}"), error))?;
            Registry::new(name, &settings.url, keys)
                .map_err(|error| failure(&format!("registries.{name}"), error))
        })
        .collect()
}

fn split_constraint(plugin: &str) -> Result<(String, VersionReq), Failure> {
    let (name, constraint) = plugin.split_once('@').unwrap_or((plugin, "*"));
    let wanted = VersionReq::parse(constraint).map_err(|error| {
        Failure::new(
            Outcome::Usage,
            format!("{plugin:?}: not a version constraint: {error}"),
        )
    })?;
    Ok((name.to_owned(), wanted))
}

/// Prints download progress: a line on a terminal, redrawn; nothing otherwise.
fn progress(name: &str) -> impl FnMut(u64, u64) + Send + use<> {
    let terminal = std::io::stderr().is_terminal();
    let name = name.to_owned();
    move |done, total| {
        if terminal {
            eprint!("\r{name}: {} / {} KiB", done / 1024, total.div_ceil(1024));
            if done == total {
                eprintln!();
            }
        }
    }
}

/// `snoozebot plugins search|install|upgrade|remove|verify` (without a name).
pub async fn plugins(loaded: &Loaded, command: PluginsCommand) -> Result<Outcome, Failure> {
    let no_dir = || {
        Failure::new(
            Outcome::Config,
            format!(
                "{} has no [plugins] dirs or install_dir to install into",
                loaded.path.display()
            ),
        )
    };
    let registries = registries(loaded)?;
    let pick = |wanted: Option<&str>| -> Result<&Registry, Failure> {
        match (wanted, registries.as_slice()) {
            (None, [only]) => Ok(only),
            (None, []) => Err(Failure::new(
                Outcome::Config,
                format!("{} has no [registries]", loaded.path.display()),
            )),
            (None, _) => Err(Failure::new(
                Outcome::Usage,
                "several registries are configured: name one with --registry",
            )),
            (Some(name), all) => all.iter().find(|r| r.name() == name).ok_or_else(|| {
                Failure::new(
                    Outcome::Usage,
                    format!("no registry {name:?} in the config file"),
                )
            }),
        }
    };
    match command {
        PluginsCommand::Search { text, output } => {
            let lock = lock_file(loaded).map_err(|error| failure("lock file", error))?;
            let mut rows = Vec::new();
            for registry in &registries {
                let index = registry
                    .index(&lock)
                    .await
                    .map_err(|error| failure(&format!("registry {}", registry.name()), error))?;
                for (name, plugin) in &index.index.plugins {
                    let description = plugin.description.clone().unwrap_or_default();
                    if let Some(text) = &text
                        && !name.contains(text.as_str())
                        && !description.contains(text.as_str())
                    {
                        continue;
                    }
                    let Some((latest, release)) = plugin.versions.iter().next_back() else {
                        continue;
                    };
                    let platforms: Vec<String> = release
                        .artifacts
                        .iter()
                        .map(|artifact| artifact.platform().to_string())
                        .collect();
                    rows.push(json!({
                        "name": name,
                        "latest": latest.to_string(),
                        "registry": registry.name(),
                        "platforms": platforms.join(" "),
                        "installed": lock.plugins.get(name).map(|locked| locked.version.to_string()),
                        "description": description,
                    }));
                }
            }
            crate::output::objects(
                &rows,
                output.output,
                &[
                    "name",
                    "latest",
                    "installed",
                    "registry",
                    "platforms",
                    "description",
                ],
            );
            Ok(Outcome::Done)
        }
        PluginsCommand::Install { plugin, registry } => {
            let installer = installer(loaded).ok_or_else(no_dir)?;
            let (name, wanted) = split_constraint(&plugin)?;
            let registry = pick(registry.as_deref())?;
            let installed = installer
                .install(registry, &name, &wanted, &mut progress(&name))
                .await
                .map_err(|error| failure(&format!("installing {name}"), error))?;
            println!(
                "{name} {} installed: {} (sha256 {}, locked in {})",
                installed.version,
                installed.path.display(),
                installed.sha256,
                installer.lock_path().display()
            );
            Ok(Outcome::Done)
        }
        PluginsCommand::Upgrade { plugins } => {
            let installer = installer(loaded).ok_or_else(no_dir)?;
            let lock = installer
                .lock()
                .map_err(|error| failure("lock file", error))?;
            let wanted: Vec<(String, VersionReq)> = if plugins.is_empty() {
                lock.plugins
                    .keys()
                    .map(|name| (name.clone(), VersionReq::STAR))
                    .collect()
            } else {
                plugins
                    .iter()
                    .map(|plugin| split_constraint(plugin))
                    .collect::<Result<_, _>>()?
            };
            for (name, constraint) in wanted {
                let Some(locked) = lock.plugins.get(&name) else {
                    return Err(Failure::new(
                        Outcome::Failed,
                        format!("{name} is not installed (snoozebot plugins install {name})"),
                    ));
                };
                let registry = pick(Some(&locked.registry))?;
                match installer
                    .upgrade(registry, &name, &constraint, &mut progress(&name))
                    .await
                    .map_err(|error| failure(&format!("upgrading {name}"), error))?
                {
                    Some(installed) => {
                        println!("{name}: {} -> {}", locked.version, installed.version)
                    }
                    None => println!(
                        "{name}: {} is the newest that matches {constraint}",
                        locked.version
                    ),
                }
            }
            Ok(Outcome::Done)
        }
        PluginsCommand::Remove { name } => {
            let installer = installer(loaded).ok_or_else(no_dir)?;
            if installer
                .remove(&name)
                .await
                .map_err(|error| failure(&format!("removing {name}"), error))?
            {
                println!("{name} removed");
                Ok(Outcome::Done)
            } else {
                Err(Failure::new(
                    Outcome::Failed,
                    format!("{name} is not installed"),
                ))
            }
        }
        PluginsCommand::Verify { name: None } => {
            let installer = installer(loaded).ok_or_else(no_dir)?;
            let results = installer
                .verify()
                .map_err(|error| failure("verify", error))?;
            let mut failed = false;
            for (name, verdict) in results {
                let path: PathBuf = installer.path_of(&name);
                match verdict {
                    Verified::Intact => {
                        println!("{name}: {} matches the lock file", path.display())
                    }
                    Verified::Missing => {
                        failed = true;
                        println!("{name}: {} is missing", path.display());
                    }
                    Verified::Changed(sha256) => {
                        failed = true;
                        println!(
                            "{name}: {} was changed (sha256 {sha256}); it will be refused at load",
                            path.display()
                        );
                    }
                }
            }
            Ok(if failed {
                Outcome::Failed
            } else {
                Outcome::Done
            })
        }
        other => crate::serve::plugins(loaded, other).await,
    }
}
