//! Test support: moto's EC2 server on a free 127.0.0.1 port, stopped when dropped (also when a
//! test fails), and a tiny HTTP stub that answers the real SDK with recorded EC2 XML.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_ec2::Client;
use aws_sdk_ec2::types::{ResourceType, Tag, TagSpecification};
use snoozebot_aws::{AwsProvider, AwsProviderBuilder};
use snoozebot_core::InstanceId;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const INSTALL: &str = "run scripts/test (it installs moto[ec2,server]==5.2.5 into .venv), or by hand: \
    python3 -m venv .venv && .venv/bin/pip install -r scripts/requirements-test.txt";

/// A running moto server; killed and reaped on drop.
pub struct Moto {
    child: Child,
    pub endpoint: String,
}

/// This package's directory: cargo's `CARGO_MANIFEST_DIR` when it runs the test, as compiled
/// otherwise. A target directory shared by checkouts in several places reuses test binaries
/// built in another, so the compiled path may not be this checkout's.
pub fn manifest_dir() -> String {
    std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_owned())
}

fn moto_server() -> PathBuf {
    if let Some(path) = std::env::var_os("SNOOZEBOT_MOTO_SERVER") {
        return PathBuf::from(path);
    }
    PathBuf::from(manifest_dir()).join("../.venv/bin/moto_server")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Moto {
    pub fn start() -> Moto {
        let server = moto_server();
        assert!(
            server.exists(),
            "moto's server is missing at {}: {INSTALL}",
            server.display()
        );
        let port = free_port();
        let child = Command::new(&server)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|error| {
                panic!("cannot start {}: {error}. {INSTALL}", server.display())
            });
        let moto = Moto {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "moto did not listen on port {port} within 30 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        moto
    }

    pub fn builder(&self) -> AwsProviderBuilder {
        AwsProviderBuilder::new()
            .region("us-east-1")
            .endpoint(&self.endpoint)
            .static_credentials("testing", "testing")
    }

    pub async fn provider(&self) -> AwsProvider {
        self.builder().build_resolved().await.unwrap()
    }

    /// Launches `count` instances tagged `snoozebot=<idleness>` and named `<name>-N`.
    pub async fn launch(
        &self,
        client: &Client,
        count: i32,
        name: &str,
        idleness: &str,
    ) -> Vec<InstanceId> {
        self.launch_with(client, count, name, idleness, |run| run)
            .await
    }

    /// [`Self::launch`] with more settings on the RunInstances request.
    pub async fn launch_with(
        &self,
        client: &Client,
        count: i32,
        name: &str,
        idleness: &str,
        settings: impl FnOnce(
            aws_sdk_ec2::operation::run_instances::builders::RunInstancesFluentBuilder,
        )
            -> aws_sdk_ec2::operation::run_instances::builders::RunInstancesFluentBuilder,
    ) -> Vec<InstanceId> {
        let image = client
            .describe_images()
            .send()
            .await
            .unwrap()
            .images()
            .first()
            .and_then(|image| image.image_id().map(str::to_owned))
            .expect("moto has no images");
        let output = settings(client.run_instances())
            .image_id(image)
            .instance_type(aws_sdk_ec2::types::InstanceType::T3Micro)
            .min_count(count)
            .max_count(count)
            .tag_specifications(
                TagSpecification::builder()
                    .resource_type(ResourceType::Instance)
                    .tags(Tag::builder().key("snoozebot").value(idleness).build())
                    .tags(Tag::builder().key("Name").value(name).build())
                    .build(),
            )
            .send()
            .await
            .unwrap();
        output
            .instances()
            .iter()
            .map(|instance| InstanceId::new(instance.instance_id().unwrap()).unwrap())
            .collect()
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One canned answer of the stub: served to requests whose body contains `when` (or all).
/// Status 0 never answers at all, like an endpoint that hangs.
#[derive(Clone)]
pub struct Reply {
    pub when: Option<&'static str>,
    pub status: u16,
    pub body: String,
}

/// An HTTP/1.1 server on 127.0.0.1 that answers each request with the first matching reply and
/// records the request bodies. It stops with the test's runtime.
pub struct Stub {
    pub endpoint: String,
    pub requests: Arc<Mutex<Vec<String>>>,
}

impl Stub {
    pub async fn start(replies: Vec<Reply>) -> Stub {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&requests);
        tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    return;
                };
                let replies = replies.clone();
                let log = Arc::clone(&log);
                tokio::spawn(async move {
                    let mut buffer = Vec::new();
                    let mut chunk = [0u8; 8192];
                    // Read the head, then as much body as Content-Length says.
                    let body = loop {
                        let n = stream.read(&mut chunk).await.unwrap_or(0);
                        if n == 0 {
                            return;
                        }
                        buffer.extend_from_slice(&chunk[..n]);
                        let text = String::from_utf8_lossy(&buffer).to_string();
                        if let Some((head, body)) = text.split_once("\r\n\r\n") {
                            let length = head
                                .lines()
                                .find_map(|line| {
                                    let (name, value) = line.split_once(':')?;
                                    name.eq_ignore_ascii_case("content-length")
                                        .then(|| value.trim().parse::<usize>().ok())?
                                })
                                .unwrap_or(0);
                            if body.len() >= length {
                                break body.to_owned();
                            }
                        }
                    };
                    log.lock().unwrap().push(body.clone());
                    let reply = replies
                        .iter()
                        .find(|reply| reply.when.is_none_or(|needle| body.contains(needle)))
                        .cloned()
                        .unwrap_or(Reply {
                            when: None,
                            status: 500,
                            body: "no reply scripted".into(),
                        });
                    if reply.status == 0 {
                        std::future::pending::<()>().await;
                    }
                    let response = format!(
                        "HTTP/1.1 {} Stub\r\nContent-Type: text/xml;charset=UTF-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
                        reply.status,
                        reply.body.len(),
                        reply.body
                    );
                    let _ = stream.write_all(response.as_bytes()).await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        Stub { endpoint, requests }
    }

    pub fn provider(&self) -> AwsProvider {
        AwsProviderBuilder::new()
            .region("us-east-1")
            .endpoint(&self.endpoint)
            .static_credentials("testing", "testing")
            .build()
            .unwrap()
    }

    pub fn request_count(&self) -> usize {
        self.requests.lock().unwrap().len()
    }
}

/// A recorded fixture from `tests/fixtures/ec2`.
pub fn fixture(name: &str) -> String {
    std::fs::read_to_string(
        PathBuf::from(manifest_dir())
            .join("tests/fixtures/ec2")
            .join(name),
    )
    .unwrap()
}

/// The recorded EC2 error envelope with another documented code and message in it.
pub fn error_xml(code: &str, message: &str) -> String {
    fixture("error-invalid-instance-id.xml")
        .replace("InvalidInstanceID.NotFound", code)
        .replace("The instance ID 'i-1a2b3c4d' does not exist", message)
}
