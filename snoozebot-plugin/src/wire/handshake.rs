//! go-plugin's handshake: the magic cookie, protocol version negotiation, and the one line a
//! plugin prints on stdout to say where it listens.
//!
//! ```text
//! CORE-PROTOCOL-VERSION | APP-PROTOCOL-VERSION | NETWORK | ADDRESS | PROTOCOL | SERVER-CERT
//! 1|1|unix|/tmp/plugin123/plugin.sock|grpc|
//! ```
//!
//! The certificate field is the plugin's DER certificate in unpadded standard base64 under
//! AutoMTLS, and empty otherwise (the trailing `|` stays).

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};

use snoozebot_core::{Error, ErrorKind, Result};

/// The environment variable that must hold [`MAGIC_COOKIE_VALUE`] for a plugin to start.
///
/// Not a secret: it only keeps a plugin executable, run by hand, from waiting for a host that
/// is not there.
pub const MAGIC_COOKIE_KEY: &str = "SNOOZEBOT_PLUGIN";
/// The value of [`MAGIC_COOKIE_KEY`].
pub const MAGIC_COOKIE_VALUE: &str = "snoozebot_plugin_v1";
/// go-plugin's core protocol version; the first handshake field.
pub const CORE_PROTOCOL_VERSION: u32 = 1;
/// The version of `snoozebot.plugin.v1.CloudProvider` this build speaks.
pub const APP_PROTOCOL_VERSION: u32 = 1;
/// The environment variable in which the host lists the app protocol versions it speaks,
/// comma-separated.
pub const PROTOCOL_VERSIONS_ENV: &str = "PLUGIN_PROTOCOL_VERSIONS";
/// The environment variable that carries the host's PEM certificate under AutoMTLS.
pub const CLIENT_CERT_ENV: &str = "PLUGIN_CLIENT_CERT";
/// The environment variable naming the plugin's private temporary directory (also its
/// `TMPDIR` and `PLUGIN_UNIX_SOCKET_DIR`), which the host removes with the plugin.
pub const PRIVATE_TMP_ENV: &str = "SNOOZEBOT_PLUGIN_TMPDIR";
/// How the name of a private temporary directory begins: a plugin orphaned by its host removes
/// the directory in [`PRIVATE_TMP_ENV`] only when its name begins so.
pub const PRIVATE_TMP_PREFIX: &str = "snoozebot-host-";

/// Where the plugin listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PluginAddress {
    /// A unix socket path.
    Unix(std::path::PathBuf),
    /// A TCP address on the loopback interface, `127.0.0.1:PORT`.
    Tcp(std::net::SocketAddr),
}

/// The handshake line, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handshake {
    /// go-plugin's core protocol version (1).
    pub core_version: u32,
    /// The app protocol version the plugin chose.
    pub app_version: u32,
    /// Where it listens.
    pub address: PluginAddress,
    /// Its AutoMTLS certificate (DER), if it serves TLS.
    pub server_cert: Option<Vec<u8>>,
}

impl fmt::Display for Handshake {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (network, address) = match &self.address {
            PluginAddress::Unix(path) => ("unix", path.display().to_string()),
            PluginAddress::Tcp(addr) => ("tcp", addr.to_string()),
        };
        let cert = self
            .server_cert
            .as_deref()
            .map(|der| STANDARD_NO_PAD.encode(der))
            .unwrap_or_default();
        write!(
            f,
            "{}|{}|{network}|{address}|grpc|{cert}",
            self.core_version, self.app_version
        )
    }
}

fn plugin_error(message: String) -> Error {
    Error::new(ErrorKind::Plugin, message)
}

impl Handshake {
    /// Whether `line` has the shape of a handshake (a number, then at least four `|`-separated
    /// fields). Anything else a plugin prints before its handshake is stray output, skipped.
    pub fn looks_like_handshake(line: &str) -> bool {
        let mut fields = line.trim().split('|');
        let first_is_number = fields
            .next()
            .is_some_and(|first| !first.is_empty() && first.bytes().all(|b| b.is_ascii_digit()));
        first_is_number && fields.count() >= 4
    }

    /// Parses a handshake line and checks it against what this host speaks: the core version,
    /// one of `app_versions`, gRPC, a known network. A broken handshake is
    /// [`ErrorKind::Plugin`], saying what was wrong.
    pub fn parse(line: &str, app_versions: &[u32]) -> Result<Self> {
        let line = line.trim();
        let fields: Vec<&str> = line.splitn(6, '|').collect();
        if fields.len() < 5 {
            return Err(plugin_error(format!(
                "plugin handshake {line:?} has {} fields; expected CORE|APP|NETWORK|ADDRESS|PROTOCOL|CERT",
                fields.len()
            )));
        }
        let core_version: u32 = fields[0].parse().map_err(|_| {
            plugin_error(format!(
                "plugin handshake core version {:?} is not a number",
                fields[0]
            ))
        })?;
        if core_version != CORE_PROTOCOL_VERSION {
            return Err(plugin_error(format!(
                "plugin speaks go-plugin core protocol {core_version}; this host speaks {CORE_PROTOCOL_VERSION}"
            )));
        }
        let app_version: u32 = fields[1].parse().map_err(|_| {
            plugin_error(format!(
                "plugin handshake app version {:?} is not a number",
                fields[1]
            ))
        })?;
        if !app_versions.contains(&app_version) {
            return Err(plugin_error(format!(
                "plugin chose protocol version {app_version}; this host speaks {}",
                list_versions(app_versions)
            )));
        }
        let address = match fields[2] {
            "unix" => PluginAddress::Unix(fields[3].into()),
            "tcp" => PluginAddress::Tcp(fields[3].parse().map_err(|_| {
                plugin_error(format!(
                    "plugin handshake address {:?} is not host:port",
                    fields[3]
                ))
            })?),
            other => {
                return Err(plugin_error(format!(
                    "plugin handshake network {other:?} is neither unix nor tcp"
                )));
            }
        };
        if fields[4] != "grpc" {
            return Err(plugin_error(format!(
                "plugin speaks {:?}; Snoozebot hosts speak only grpc",
                fields[4]
            )));
        }
        let cert_field = fields.get(5).copied().unwrap_or_default();
        let server_cert = if cert_field.is_empty() {
            None
        } else {
            let der = STANDARD_NO_PAD
                .decode(cert_field)
                .or_else(|_| STANDARD.decode(cert_field))
                .map_err(|error| {
                    plugin_error(format!(
                        "plugin handshake certificate is not base64: {error}"
                    ))
                })?;
            Some(der)
        };
        Ok(Handshake {
            core_version,
            app_version,
            address,
            server_cert,
        })
    }
}

/// `1, 2` — for messages.
pub(crate) fn list_versions(versions: &[u32]) -> String {
    let listed: Vec<String> = versions.iter().map(u32::to_string).collect();
    listed.join(", ")
}

/// The value of [`PROTOCOL_VERSIONS_ENV`] for a host speaking `versions`.
pub(crate) fn versions_env_value(versions: &[u32]) -> String {
    let listed: Vec<String> = versions.iter().map(u32::to_string).collect();
    listed.join(",")
}

/// The plugin's side of version negotiation: the highest version both speak.
///
/// `host_env` is the host's [`PROTOCOL_VERSIONS_ENV`], if it sent one; a host that sent none
/// (an old go-plugin host) gets the plugin's highest version. No version in common is
/// [`ErrorKind::Plugin`], naming both sides' versions.
pub fn negotiate(host_env: Option<&str>, plugin_versions: &[u32]) -> Result<u32> {
    let highest_of_plugin =
        plugin_versions.iter().copied().max().ok_or_else(|| {
            Error::new(ErrorKind::Config, "the plugin declares no protocol version")
        })?;
    let Some(host_env) = host_env.filter(|value| !value.trim().is_empty()) else {
        return Ok(highest_of_plugin);
    };
    let mut host_versions = Vec::new();
    for field in host_env.split(',') {
        let version = field.trim().parse::<u32>().map_err(|_| {
            plugin_error(format!(
                "host sent {PROTOCOL_VERSIONS_ENV}={host_env:?}, which is not a list of numbers"
            ))
        })?;
        host_versions.push(version);
    }
    host_versions
        .iter()
        .copied()
        .filter(|version| plugin_versions.contains(version))
        .max()
        .ok_or_else(|| {
            plugin_error(format!(
                "no protocol version in common: the host speaks {}, this plugin speaks {}",
                list_versions(&host_versions),
                list_versions(plugin_versions)
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_handshake_has_a_trailing_empty_field() {
        let handshake = Handshake {
            core_version: 1,
            app_version: 1,
            address: PluginAddress::Unix("/tmp/plugin123".into()),
            server_cert: None,
        };
        assert_eq!(handshake.to_string(), "1|1|unix|/tmp/plugin123|grpc|");
        assert_eq!(
            Handshake::parse("1|1|unix|/tmp/plugin123|grpc|\n", &[1]).unwrap(),
            handshake
        );
    }

    #[test]
    fn certificates_round_trip_in_unpadded_base64() {
        let handshake = Handshake {
            core_version: 1,
            app_version: 2,
            address: PluginAddress::Tcp("127.0.0.1:4242".parse().unwrap()),
            server_cert: Some(vec![0x30, 0x82, 0x01]),
        };
        let line = handshake.to_string();
        assert_eq!(line, "1|2|tcp|127.0.0.1:4242|grpc|MIIB");
        assert_eq!(Handshake::parse(&line, &[1, 2]).unwrap(), handshake);
        // A padded certificate (some other implementations) is accepted too.
        assert!(Handshake::parse("1|2|tcp|127.0.0.1:4242|grpc|MIIBAA==", &[2]).is_ok());
    }

    #[test]
    fn old_five_field_handshakes_parse() {
        let parsed = Handshake::parse("1|1|tcp|127.0.0.1:1234|grpc", &[1]).unwrap();
        assert_eq!(parsed.server_cert, None);
    }

    #[test]
    fn broken_handshakes_say_what_is_wrong() {
        for (line, expected) in [
            ("2|1|unix|/tmp/p|grpc|", "core protocol 2"),
            (
                "1|3|unix|/tmp/p|grpc|",
                "chose protocol version 3; this host speaks 1, 2",
            ),
            ("1|1|udp|/tmp/p|grpc|", "neither unix nor tcp"),
            ("1|1|unix|/tmp/p|netrpc|", "only grpc"),
            ("1|1|tcp|nowhere|grpc|", "not host:port"),
            ("1|1|unix|/tmp/p|grpc|!!!", "not base64"),
            ("1|1|unix", "has 3 fields"),
        ] {
            let err = Handshake::parse(line, &[1, 2]).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Plugin);
            assert!(err.message().contains(expected), "{line}: {err}");
        }
    }

    #[test]
    fn stray_output_is_told_apart_from_a_handshake() {
        assert!(Handshake::looks_like_handshake("1|1|unix|/tmp/p|grpc|"));
        assert!(Handshake::looks_like_handshake("2|1|unix|/tmp/p|grpc|"));
        for stray in ["", "hello", "Loading config...", "a|b|c|d|e|f", "1|2|3"] {
            assert!(!Handshake::looks_like_handshake(stray), "{stray:?}");
        }
    }

    #[test]
    fn negotiation_picks_the_highest_common_version() {
        assert_eq!(negotiate(Some("1,2,3"), &[1, 2]).unwrap(), 2);
        assert_eq!(negotiate(Some(" 3 , 1 "), &[1, 2]).unwrap(), 1);
        assert_eq!(negotiate(None, &[1, 2]).unwrap(), 2);
        assert_eq!(negotiate(Some(""), &[1]).unwrap(), 1);
        let err = negotiate(Some("3,4"), &[1, 2]).unwrap_err();
        assert_eq!(
            err.message(),
            "no protocol version in common: the host speaks 3, 4, this plugin speaks 1, 2"
        );
        assert!(negotiate(Some("one"), &[1]).is_err());
    }
}
