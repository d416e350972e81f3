//! Where the AWS plugin finds its credentials: every source of the AWS CLI's chain, resolved by
//! a real `snoozebot-plugin-aws` process from nothing but its environment and files in a
//! temporary home — a profile with `credential_process` (a real script), an SSO session with a
//! cached token, web identity through STS, the ECS container endpoint and EC2 instance metadata.
//! One fake on 127.0.0.1 plays SSO, STS, ECS, IMDS and EC2, and records which access key signed
//! each EC2 request. Every credential failure is `Unauthenticated` (never retried), with the
//! source's own words.
#![cfg(feature = "plugin")]
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use snoozebot_core::{CloudProvider, ErrorKind, InstanceFilter};
use snoozebot_plugin::{PluginClient, PluginConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The access key each source hands out, so the EC2 request says which source signed it.
const PROCESS_KEY: &str = "AKIAFROMPROCESS";
const SSO_KEY: &str = "ASIAFROMSSO";
const WEB_IDENTITY_KEY: &str = "ASIAFROMWEBIDENTITY";
const ECS_KEY: &str = "ASIAFROMECS";
const IMDS_KEY: &str = "ASIAFROMIMDS";
const SSO_TOKEN: &str = "cached-sso-access-token";
const SNOOZE_SESSION_CACHE: &str = ".aws/sso/cache/c54d681058b0919a5e03c0df4546cc12d3926faf.json";

const EMPTY_DESCRIBE: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<DescribeInstancesResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"><requestId>0d1e2f</requestId><reservationSet/></DescribeInstancesResponse>"#;

/// One request as the fake saw it.
#[derive(Debug, Clone)]
struct Seen {
    head: String,
    body: String,
}

impl Seen {
    fn request_line(&self) -> &str {
        self.head.lines().next().unwrap_or_default()
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.trim().eq_ignore_ascii_case(name).then(|| value.trim())
        })
    }
}

/// SSO, STS, ECS, IMDS and EC2 in one HTTP/1.1 server on 127.0.0.1; it stops with the runtime.
struct Fake {
    endpoint: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

fn expiry() -> String {
    "2099-01-01T00:00:00Z".to_owned()
}

fn json_credentials(key: &str) -> String {
    format!(
        r#"{{"Code":"Success","Type":"AWS-HMAC","AccessKeyId":"{key}","SecretAccessKey":"secret","Token":"session","Expiration":"{}","LastUpdated":"2026-12-01T00:00:00Z"}}"#,
        expiry()
    )
}

/// What the fake answers: (status, content type, extra headers, body).
fn answer(seen: &Seen) -> (u16, &'static str, String, String) {
    let line = seen.request_line().to_owned();
    let path = line.split(' ').nth(1).unwrap_or_default().to_owned();
    if path.starts_with("/federation/credentials") {
        if seen.header("x-amz-sso_bearer_token") != Some(SSO_TOKEN) {
            return (
                401,
                "application/json",
                String::new(),
                r#"{"message":"bad token"}"#.into(),
            );
        }
        let ms = 4_070_908_800_000_u64; // 2099-01-01
        let body = format!(
            r#"{{"roleCredentials":{{"accessKeyId":"{SSO_KEY}","secretAccessKey":"secret","sessionToken":"session","expiration":{ms}}}}}"#
        );
        return (200, "application/json", String::new(), body);
    }
    if path == "/ecs-credentials" {
        return (
            200,
            "application/json",
            String::new(),
            json_credentials(ECS_KEY),
        );
    }
    if path == "/latest/api/token" {
        return (
            200,
            "text/plain",
            "x-aws-ec2-metadata-token-ttl-seconds: 21600\r\n".into(),
            "imds-session-token".into(),
        );
    }
    if path == "/latest/meta-data/iam/security-credentials/" {
        return (200, "text/plain", String::new(), "sleeper-role".into());
    }
    if path == "/latest/meta-data/iam/security-credentials/sleeper-role" {
        return (200, "text/plain", String::new(), json_credentials(IMDS_KEY));
    }
    if seen.body.contains("Action=AssumeRoleWithWebIdentity") {
        let body = format!(
            r#"<AssumeRoleWithWebIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><AssumeRoleWithWebIdentityResult><Credentials><AccessKeyId>{WEB_IDENTITY_KEY}</AccessKeyId><SecretAccessKey>secret</SecretAccessKey><SessionToken>session</SessionToken><Expiration>{}</Expiration></Credentials><AssumedRoleUser><Arn>arn:aws:sts::123456789012:assumed-role/sleeper/snoozebot</Arn><AssumedRoleId>AROA:snoozebot</AssumedRoleId></AssumedRoleUser></AssumeRoleWithWebIdentityResult><ResponseMetadata><RequestId>r</RequestId></ResponseMetadata></AssumeRoleWithWebIdentityResponse>"#,
            expiry()
        );
        return (200, "text/xml", String::new(), body);
    }
    if seen.body.contains("Action=DescribeInstances") {
        return (
            200,
            "text/xml;charset=UTF-8",
            String::new(),
            EMPTY_DESCRIBE.into(),
        );
    }
    (
        404,
        "text/plain",
        String::new(),
        format!("the fake has no {line}"),
    )
}

impl Fake {
    async fn start() -> Fake {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let log = Arc::clone(&log);
                tokio::spawn(async move {
                    let Some(request) = read_request(&mut stream).await else {
                        return;
                    };
                    log.lock().unwrap().push(request.clone());
                    let (status, content_type, headers, body) = answer(&request);
                    let response = format!(
                        "HTTP/1.1 {status} Fake\r\nContent-Type: {content_type}\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = stream.write_all(response.as_bytes()).await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        Fake { endpoint, seen }
    }

    /// The access key in the `Authorization` of every EC2 request seen.
    fn ec2_signing_keys(&self) -> Vec<String> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|seen| seen.body.contains("Action=DescribeInstances"))
            .filter_map(|seen| {
                let authorization = seen.header("authorization")?;
                let credential = authorization.split("Credential=").nth(1)?;
                Some(credential.split('/').next()?.to_owned())
            })
            .collect()
    }

    fn saw(&self, path: &str) -> bool {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .any(|seen| seen.request_line().contains(path))
    }
}

/// Reads one request (head and Content-Length body), at most 1 MiB.
async fn read_request(stream: &mut tokio::net::TcpStream) -> Option<Seen> {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 || buffer.len() > 1 << 20 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buffer).to_string();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let seen = Seen {
                head: head.to_owned(),
                body: body.to_owned(),
            };
            let length = seen
                .header("content-length")
                .and_then(|value| value.parse::<usize>().ok())
                .unwrap_or(0);
            if body.len() >= length {
                return Some(seen);
            }
        }
    }
}

/// A temporary home with nothing of the developer's own AWS setup in it.
struct Home {
    dir: tempfile::TempDir,
}

impl Home {
    fn new() -> Home {
        Home {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self, relative: &str) -> String {
        self.dir.path().join(relative).display().to_string()
    }

    fn write(&self, relative: &str, contents: &str) -> String {
        let path = self.dir.path().join(relative);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, contents).unwrap();
        path.display().to_string()
    }

    fn executable(&self, relative: &str, script: &str) -> String {
        use std::os::unix::fs::PermissionsExt;
        let path = self.write(relative, script);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    /// The plugin's whole environment: this home, the fake as EC2, and `extra`.
    fn config(&self, fake: &Fake, extra: &[(&str, String)]) -> PluginConfig {
        let mut config = PluginConfig::default()
            .with_env("HOME", self.dir.path().display().to_string())
            .with_env("PATH", "/usr/bin:/bin")
            .with_env("AWS_REGION", "us-east-1")
            .with_env("AWS_CONFIG_FILE", self.path(".aws/config"))
            .with_env("AWS_SHARED_CREDENTIALS_FILE", self.path(".aws/credentials"))
            .with_env("SNOOZEBOT_AWS_ENDPOINT", &fake.endpoint)
            // No instance metadata unless a case asks for it (a 127.0.0.1 port nothing
            // listens on fails at once; the real address would wait for a timeout).
            .with_env("AWS_EC2_METADATA_SERVICE_ENDPOINT", "http://127.0.0.1:9");
        for (name, value) in extra {
            config = config.with_env(*name, value);
        }
        config
    }
}

async fn launch(config: PluginConfig) -> PluginClient {
    let config = config.with_start_timeout(Duration::from_secs(30));
    PluginClient::launch(
        "aws",
        Path::new(env!("CARGO_BIN_EXE_snoozebot-plugin-aws")),
        config,
    )
    .await
    .unwrap()
}

/// Captures this thread's `tracing` output. Every test of this binary captures: `tracing`
/// caches per call site whether anyone listens, and a test without a subscriber running at the
/// same time could make the cached answer "no" for another.
fn capture_logs() -> (
    snoozebot_testkit::LogCapture,
    tracing::subscriber::DefaultGuard,
) {
    let captured = snoozebot_testkit::LogCapture::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::TRACE)
        .finish();
    (captured, tracing::subscriber::set_default(subscriber))
}

/// Lists through a plugin started with `config` and returns the keys that signed EC2 requests.
/// What the plugin logged (at its default level, forwarded into this process's `tracing`) must
/// not carry them.
async fn keys_used(fake: &Fake, config: PluginConfig) -> Vec<String> {
    let (captured, _guard) = capture_logs();
    let plugin = launch(config).await;
    let listed = plugin.list_instances(&InstanceFilter::new()).await;
    plugin.shutdown().await;
    assert_eq!(listed.unwrap().len(), 0);
    let keys = fake.ec2_signing_keys();
    let log = captured.contents();
    assert!(log.contains("plugin ready"), "nothing was captured:\n{log}");
    for key in &keys {
        assert!(
            !log.contains(key.as_str()),
            "the plugin logged the access key id {key}:\n{log}"
        );
    }
    keys
}

#[tokio::test]
async fn a_credential_process_profile_resolves() {
    let fake = Fake::start().await;
    let home = Home::new();
    let process = home.executable(
        "bin/fake-credential-process",
        &format!(
            "#!/bin/sh\n[ \"$1\" = --role ] || exit 3\necho '{{\"Version\": 1, \"AccessKeyId\": \"{PROCESS_KEY}\", \"SecretAccessKey\": \"secret\", \"SessionToken\": \"session\", \"Expiration\": \"{}\"}}'\n",
            expiry()
        ),
    );
    home.write(
        ".aws/config",
        &format!("[profile ops]\ncredential_process = {process} --role sleeper\n"),
    );
    let config = home.config(&fake, &[("AWS_PROFILE", "ops".into())]);
    assert_eq!(keys_used(&fake, config).await, [PROCESS_KEY]);
}

#[tokio::test]
async fn an_sso_session_profile_resolves_from_the_cached_token() {
    let fake = Fake::start().await;
    let home = Home::new();
    home.write(
        ".aws/config",
        "[profile sso-ops]\nsso_session = snooze\nsso_account_id = 123456789012\nsso_role_name = Sleeper\n\n\
         [sso-session snooze]\nsso_region = us-east-1\nsso_start_url = https://example.awsapps.com/start\n",
    );
    // The AWS CLI caches the session's token under the SHA-1 of the session name
    // (`printf snooze | sha1sum`).
    home.write(
        SNOOZE_SESSION_CACHE,
        &format!(
            r#"{{"accessToken":"{SSO_TOKEN}","expiresAt":"{}","region":"us-east-1","startUrl":"https://example.awsapps.com/start"}}"#,
            expiry()
        ),
    );
    let config = home.config(
        &fake,
        &[
            ("AWS_PROFILE", "sso-ops".into()),
            ("AWS_ENDPOINT_URL_SSO", fake.endpoint.clone()),
        ],
    );
    assert_eq!(keys_used(&fake, config).await, [SSO_KEY]);
    assert!(fake.saw("/federation/credentials?"), "{:?}", fake.seen);
}

#[tokio::test]
async fn web_identity_resolves_through_sts() {
    let fake = Fake::start().await;
    let home = Home::new();
    let token = home.write("token", "a.web.identity.token");
    let config = home.config(
        &fake,
        &[
            ("AWS_WEB_IDENTITY_TOKEN_FILE", token),
            (
                "AWS_ROLE_ARN",
                "arn:aws:iam::123456789012:role/sleeper".into(),
            ),
            ("AWS_ROLE_SESSION_NAME", "snoozebot".into()),
            ("AWS_ENDPOINT_URL_STS", fake.endpoint.clone()),
        ],
    );
    assert_eq!(keys_used(&fake, config).await, [WEB_IDENTITY_KEY]);
}

#[tokio::test]
async fn the_ecs_container_endpoint_resolves() {
    let fake = Fake::start().await;
    let home = Home::new();
    let config = home.config(
        &fake,
        &[(
            "AWS_CONTAINER_CREDENTIALS_FULL_URI",
            format!("{}/ecs-credentials", fake.endpoint),
        )],
    );
    assert_eq!(keys_used(&fake, config).await, [ECS_KEY]);
}

#[tokio::test]
async fn instance_metadata_resolves() {
    let fake = Fake::start().await;
    let home = Home::new();
    let config = home.config(
        &fake,
        &[("AWS_EC2_METADATA_SERVICE_ENDPOINT", fake.endpoint.clone())],
    );
    assert_eq!(keys_used(&fake, config).await, [IMDS_KEY]);
    assert!(
        fake.saw("/latest/api/token"),
        "IMDSv2 asks for a session token"
    );
}

/// Lists through a plugin started with `config`; the error, after checking no EC2 request
/// was sent.
async fn credential_failure(fake: &Fake, config: PluginConfig) -> snoozebot_core::Error {
    let (_captured, _guard) = capture_logs();
    let plugin = launch(config).await;
    let error = plugin
        .list_instances(&InstanceFilter::new())
        .await
        .unwrap_err();
    plugin.shutdown().await;
    assert!(fake.ec2_signing_keys().is_empty(), "{:?}", fake.seen);
    assert!(!error.is_retryable(), "{error}");
    error
}

#[tokio::test]
async fn no_credentials_anywhere_is_unauthenticated_not_unavailable() {
    let fake = Fake::start().await;
    let home = Home::new();
    let error = credential_failure(&fake, home.config(&fake, &[])).await;
    assert_eq!(error.kind(), ErrorKind::Unauthenticated, "{error}");
    assert!(error.message().contains("credentials"), "{error}");
}

#[tokio::test]
async fn a_failing_credential_process_is_unauthenticated_with_its_words() {
    let fake = Fake::start().await;
    let home = Home::new();
    let process = home.executable(
        "bin/refusing-credential-process",
        "#!/bin/sh\necho 'the vault is sealed' >&2\nexit 1\n",
    );
    home.write(
        ".aws/config",
        &format!("[profile ops]\ncredential_process = {process}\n"),
    );
    let config = home.config(&fake, &[("AWS_PROFILE", "ops".into())]);
    let error = credential_failure(&fake, config).await;
    assert_eq!(error.kind(), ErrorKind::Unauthenticated, "{error}");
    assert!(error.message().contains("the vault is sealed"), "{error}");
}

#[tokio::test]
async fn an_sso_profile_without_a_cached_token_is_unauthenticated() {
    let fake = Fake::start().await;
    let home = Home::new();
    home.write(
        ".aws/config",
        "[profile sso-ops]\nsso_session = snooze\nsso_account_id = 123456789012\nsso_role_name = Sleeper\n\n\
         [sso-session snooze]\nsso_region = us-east-1\nsso_start_url = https://example.awsapps.com/start\n",
    );
    let config = home.config(
        &fake,
        &[
            ("AWS_PROFILE", "sso-ops".into()),
            ("AWS_ENDPOINT_URL_SSO", fake.endpoint.clone()),
            ("AWS_ENDPOINT_URL_SSO_OIDC", fake.endpoint.clone()),
        ],
    );
    let error = credential_failure(&fake, config).await;
    assert_eq!(error.kind(), ErrorKind::Unauthenticated, "{error}");
    assert!(error.message().contains("token"), "{error}");
}
