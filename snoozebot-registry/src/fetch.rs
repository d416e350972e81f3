//! Getting a registry's files: from a directory (`file://`, a mirror) or over HTTPS (plain HTTP
//! only to loopback), every read bounded, network calls retried with the shared backoff.

use std::io::Read;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};
use snoozebot_core::Backoff;
use tokio::io::AsyncWriteExt;
use url::Url;

use crate::RegistryError;

/// Where a registry's files are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A directory on this machine (a `file://` URL or a path).
    Directory(PathBuf),
    /// An `https://` URL (or `http://` to a loopback address), ending in `/`.
    Http(Url),
}

impl Source {
    /// `https://host/path/`, `http://127.0.0.1:port/`, `file:///srv/mirror/` or a plain path.
    pub fn parse(location: &str) -> Result<Self, RegistryError> {
        let bad = |why: &str| RegistryError::Config(format!("registry {location:?}: {why}"));
        if !location.contains("://") {
            return Ok(Source::Directory(PathBuf::from(location)));
        }
        let mut url = Url::parse(location).map_err(|error| bad(&error.to_string()))?;
        match url.scheme() {
            "file" => url
                .to_file_path()
                .map(Source::Directory)
                .map_err(|()| bad("not a local path")),
            "https" => Ok(Source::Http(with_trailing_slash(&mut url))),
            "http" if is_loopback(&url) => Ok(Source::Http(with_trailing_slash(&mut url))),
            "http" => Err(bad("plain http is only for loopback mirrors; use https")),
            other => Err(bad(&format!("{other}:// is not a registry scheme"))),
        }
    }

    /// Where `reference` (an index's URL: relative to the registry's root, or absolute) is.
    /// A relative reference may not leave the root.
    pub fn join(&self, reference: &str) -> Result<Source, RegistryError> {
        let bad =
            |why: &str| RegistryError::Malformed(format!("artifact URL {reference:?}: {why}"));
        if reference.contains("://") {
            return match Source::parse(reference) {
                Ok(Source::Http(url)) => Ok(Source::Http(url_without_slash(url))),
                Ok(Source::Directory(_)) if matches!(self, Source::Directory(_)) => {
                    Source::parse(reference)
                }
                Ok(Source::Directory(_)) => Err(bad("a file:// artifact in a remote registry")),
                Err(error) => Err(error),
            };
        }
        let relative = Path::new(reference);
        if !relative
            .components()
            .all(|part| matches!(part, Component::Normal(_)))
        {
            return Err(bad("a relative URL must stay inside the registry"));
        }
        match self {
            Source::Directory(root) => Ok(Source::Directory(root.join(relative))),
            Source::Http(root) => root
                .join(reference)
                .map(Source::Http)
                .map_err(|error| bad(&error.to_string())),
        }
    }

    fn describe(&self) -> String {
        match self {
            Source::Directory(path) => path.display().to_string(),
            Source::Http(url) => url.to_string(),
        }
    }
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

fn with_trailing_slash(url: &mut Url) -> Url {
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    url.clone()
}

fn url_without_slash(url: Url) -> Url {
    let mut url = url;
    if url.path().len() > 1 && url.path().ends_with('/') {
        let path = url.path().trim_end_matches('/').to_owned();
        url.set_path(&path);
    }
    url
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(name)) => name == "localhost",
        None => false,
    }
}

/// Reads at most `limit` bytes of a file; more is an error, not a truncation.
pub(crate) fn read_bounded_file(path: &Path, limit: u64) -> Result<Vec<u8>, RegistryError> {
    let file = std::fs::File::open(path).map_err(|error| RegistryError::io(path, error))?;
    let mut bytes = Vec::new();
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(|error| RegistryError::io(path, error))?;
    if bytes.len() as u64 > limit {
        return Err(RegistryError::TooLarge {
            what: path.display().to_string(),
            limit,
        });
    }
    Ok(bytes)
}

/// How network calls are made: timeouts, attempts and the backoff between them.
#[derive(Debug, Clone)]
pub struct FetchOptions {
    /// Attempts per request, the first included.
    pub attempts: u32,
    /// The delay before each retry.
    pub backoff: Backoff,
    /// Connecting, and then each read: a server that stops sending fails the attempt.
    pub read_timeout: Duration,
}

impl Default for FetchOptions {
    fn default() -> Self {
        FetchOptions {
            attempts: 3,
            backoff: Backoff::new(Duration::from_millis(200), Duration::from_secs(2)),
            read_timeout: Duration::from_secs(30),
        }
    }
}

/// Gets registry files, bounded, retrying what may pass.
#[derive(Debug, Clone)]
pub(crate) struct Fetcher {
    client: reqwest::Client,
    options: FetchOptions,
}

/// What a failed attempt means: try again, or stop.
enum Attempt {
    Retry(RegistryError),
    Fail(RegistryError),
}

impl Fetcher {
    pub(crate) fn new(options: FetchOptions) -> Result<Self, RegistryError> {
        let client = reqwest::Client::builder()
            .connect_timeout(options.read_timeout)
            .read_timeout(options.read_timeout)
            .redirect(reqwest::redirect::Policy::limited(5))
            .user_agent(concat!("snoozebot-registry/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|error| {
                RegistryError::Config(format!("cannot make an HTTP client: {error}"))
            })?;
        Ok(Fetcher { client, options })
    }

    /// A small document (the index, its signatures), at most `limit` bytes.
    pub(crate) async fn document(
        &self,
        source: &Source,
        limit: u64,
    ) -> Result<Vec<u8>, RegistryError> {
        match source {
            Source::Directory(path) => read_bounded_file(path, limit),
            Source::Http(url) => {
                let mut attempt = 0;
                loop {
                    attempt += 1;
                    let outcome = match self.get(url).await {
                        Ok(mut response) => {
                            let mut body = Vec::new();
                            let mut read = 0;
                            loop {
                                match next_chunk(&mut response, &mut read, limit, url).await {
                                    Ok(Some(chunk)) => body.extend_from_slice(&chunk),
                                    Ok(None) => break Ok(body),
                                    Err(failed) => break Err(failed),
                                }
                            }
                        }
                        Err(failed) => Err(failed),
                    };
                    if let Some(body) = self.settle(outcome, attempt).await? {
                        return Ok(body);
                    }
                }
            }
        }
    }

    /// An artifact of `size` bytes whose SHA-256 must be `sha256`, written to `file` (which is
    /// rewritten from the start on each attempt); `progress` hears the bytes so far.
    pub(crate) async fn artifact(
        &self,
        source: &Source,
        size: u64,
        sha256: &str,
        file: &mut tokio::fs::File,
        progress: &mut (dyn FnMut(u64, u64) + Send),
    ) -> Result<(), RegistryError> {
        let digest = match source {
            Source::Directory(path) => {
                let mut reader = std::fs::File::open(path)
                    .map_err(|error| RegistryError::io(path, error))?
                    .take(size + 1);
                let mut hasher = Sha256::new();
                let mut written = 0u64;
                let mut buffer = vec![0u8; 64 * 1024];
                loop {
                    let read = reader
                        .read(&mut buffer)
                        .map_err(|error| RegistryError::io(path, error))?;
                    if read == 0 {
                        break;
                    }
                    written += read as u64;
                    if written > size {
                        return Err(tampered(
                            source,
                            format!("longer than the {size} bytes listed"),
                        ));
                    }
                    hasher.update(&buffer[..read]);
                    file.write_all(&buffer[..read])
                        .await
                        .map_err(|error| RegistryError::io(Path::new("download"), error))?;
                    progress(written, size);
                }
                if written != size {
                    return Err(tampered(
                        source,
                        format!("{written} bytes where the index lists {size}"),
                    ));
                }
                hasher.finalize()
            }
            Source::Http(url) => {
                let mut attempt = 0;
                loop {
                    attempt += 1;
                    let outcome = match self.get(url).await {
                        Ok(response) => download(response, url, size, file, progress).await,
                        Err(failed) => Err(failed),
                    };
                    if let Some(digest) = self.settle(outcome, attempt).await? {
                        break digest;
                    }
                }
            }
        };
        let hex: String = digest.iter().map(|byte| format!("{byte:02x}")).collect();
        if hex != sha256 {
            return Err(tampered(
                source,
                format!("its SHA-256 is {hex}, the index lists {sha256}"),
            ));
        }
        Ok(())
    }

    /// GETs `url`: a success is the response; connection failures, 429 and 5xx may pass.
    async fn get(&self, url: &Url) -> Result<reqwest::Response, Attempt> {
        let response = self.client.get(url.clone()).send().await.map_err(|error| {
            Attempt::Retry(RegistryError::Network(format!(
                "{url}: {}",
                error_chain(&error)
            )))
        })?;
        let status = response.status();
        if status.is_success() {
            Ok(response)
        } else if status.is_server_error() || status.as_u16() == 429 {
            Err(Attempt::Retry(RegistryError::Network(format!(
                "{url}: {status}"
            ))))
        } else if status.as_u16() == 404 {
            Err(Attempt::Fail(RegistryError::NotFound(url.to_string())))
        } else {
            Err(Attempt::Fail(RegistryError::Network(format!(
                "{url}: {status}"
            ))))
        }
    }

    /// What attempt number `attempt` came to: its value, a final error, or (after the
    /// backoff's delay) `None` to try again.
    async fn settle<T>(
        &self,
        outcome: Result<T, Attempt>,
        attempt: u32,
    ) -> Result<Option<T>, RegistryError> {
        match outcome {
            Ok(value) => Ok(Some(value)),
            Err(Attempt::Fail(error)) => Err(error),
            Err(Attempt::Retry(error)) if attempt >= self.options.attempts.max(1) => Err(error),
            Err(Attempt::Retry(error)) => {
                tracing::debug!(%error, attempt, "registry request failed; retrying");
                tokio::time::sleep(self.options.backoff.delay(attempt)).await;
                Ok(None)
            }
        }
    }
}

/// Streams one response into `file` (from its start), hashing; a short body may pass on a
/// retry, a long one is tampering.
async fn download(
    mut response: reqwest::Response,
    url: &Url,
    size: u64,
    file: &mut tokio::fs::File,
    progress: &mut (dyn FnMut(u64, u64) + Send),
) -> Result<sha2::digest::Output<Sha256>, Attempt> {
    let write_failed = |error| Attempt::Fail(RegistryError::io(Path::new("download"), error));
    file.set_len(0).await.map_err(write_failed)?;
    tokio::io::AsyncSeekExt::rewind(file)
        .await
        .map_err(write_failed)?;
    let mut hasher = Sha256::new();
    let mut written = 0u64;
    loop {
        let chunk = next_chunk(&mut response, &mut written, size, url)
            .await
            .map_err(|attempt| match attempt {
                Attempt::Fail(RegistryError::TooLarge { .. }) => Attempt::Fail(tampered(
                    &Source::Http(url.clone()),
                    format!("longer than the {size} bytes listed"),
                )),
                other => other,
            })?;
        let Some(chunk) = chunk else { break };
        hasher.update(&chunk);
        file.write_all(&chunk).await.map_err(write_failed)?;
        progress(written, size);
    }
    if written != size {
        // The server stopped early (or sent a short file): try again.
        return Err(Attempt::Retry(RegistryError::Network(format!(
            "{url}: {written} of {size} bytes arrived"
        ))));
    }
    Ok(hasher.finalize())
}

fn tampered(source: &Source, what: String) -> RegistryError {
    RegistryError::Tampered(format!("{source}: {what}"))
}

/// The next chunk of a response's body, counting into `read` and refusing more than `limit`
/// bytes in all (a declared length over it is refused before reading).
async fn next_chunk(
    response: &mut reqwest::Response,
    read: &mut u64,
    limit: u64,
    url: &Url,
) -> Result<Option<bytes::Bytes>, Attempt> {
    let too_large = || {
        Attempt::Fail(RegistryError::TooLarge {
            what: url.to_string(),
            limit,
        })
    };
    if *read == 0
        && response
            .content_length()
            .is_some_and(|length| length > limit)
    {
        return Err(too_large());
    }
    match response.chunk().await {
        Ok(Some(bytes)) => {
            *read += bytes.len() as u64;
            if *read > limit {
                return Err(too_large());
            }
            Ok(Some(bytes))
        }
        Ok(None) => Ok(None),
        Err(error) => Err(Attempt::Retry(RegistryError::Network(format!(
            "{url}: {}",
            error_chain(&error)
        )))),
    }
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_parse_to_directories_or_checked_urls() {
        assert_eq!(
            Source::parse("file:///srv/mirror").unwrap(),
            Source::Directory("/srv/mirror".into())
        );
        assert_eq!(
            Source::parse("./mirror").unwrap(),
            Source::Directory("./mirror".into())
        );
        let Source::Http(url) = Source::parse("https://plugins.example.com/stable").unwrap() else {
            panic!("not http");
        };
        assert_eq!(url.as_str(), "https://plugins.example.com/stable/");
        assert!(Source::parse("http://127.0.0.1:8080/").is_ok());
        assert!(Source::parse("http://plugins.example.com/").is_err());
        assert!(Source::parse("ftp://example.com/").is_err());
    }

    #[test]
    fn artifact_urls_stay_inside_the_registry_unless_absolute() {
        let remote = Source::parse("https://plugins.example.com/stable/").unwrap();
        assert_eq!(
            remote.join("artifacts/aws").unwrap().to_string(),
            "https://plugins.example.com/stable/artifacts/aws"
        );
        assert!(remote.join("../secret").is_err());
        assert!(remote.join("/etc/passwd").is_err());
        assert!(remote.join("file:///etc/passwd").is_err());
        assert!(remote.join("https://cdn.example.com/aws").is_ok());
        let local = Source::parse("/srv/mirror").unwrap();
        assert_eq!(
            local.join("artifacts/aws").unwrap(),
            Source::Directory("/srv/mirror/artifacts/aws".into())
        );
        assert!(local.join("artifacts/../../x").is_err());
    }

    #[test]
    fn a_file_over_its_bound_is_refused_not_truncated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big");
        std::fs::write(&path, vec![b'x'; 1025]).unwrap();
        assert!(matches!(
            read_bounded_file(&path, 1024),
            Err(RegistryError::TooLarge { limit: 1024, .. })
        ));
        assert_eq!(read_bounded_file(&path, 1025).unwrap().len(), 1025);
    }
}
