//! Credentials: the standard chain of `azure_identity` credentials, and a static token for fakes.

use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use azure_core::credentials::{AccessToken, Secret, TokenCredential, TokenRequestOptions};
use azure_core::error::ErrorKind as CoreErrorKind;
use azure_core::http::policies::{Policy, PolicyResult};
use azure_core::http::{Context, Request};
use azure_identity::{
    ClientSecretCredential, DeveloperToolsCredential, ManagedIdentityCredential,
    WorkloadIdentityCredential,
};

/// The credential [`AzureProviderBuilder`](crate::AzureProviderBuilder) uses unless given
/// another: the first of these that applies, in the order Azure's other SDKs use.
///
/// 1. **Service principal secret** — `AZURE_TENANT_ID`, `AZURE_CLIENT_ID` and
///    `AZURE_CLIENT_SECRET` are all set: [`ClientSecretCredential`].
/// 2. **Workload identity** (AKS) — `AZURE_FEDERATED_TOKEN_FILE` is set:
///    [`WorkloadIdentityCredential`].
/// 3. Otherwise, tried in turn on the first token request and the one that answers kept:
///    **developer tools** ([`DeveloperToolsCredential`]: `az login`, `azd auth login`), then
///    **managed identity** ([`ManagedIdentityCredential`]: App Service, Functions, VMs).
///    Developer tools come first because they fail in milliseconds where they are absent,
///    while probing for a managed identity off Azure can take seconds.
///
/// When nothing works, the error names what each credential said.
#[derive(Debug)]
pub struct StandardCredential {
    sources: Vec<(&'static str, Arc<dyn TokenCredential>)>,
    chosen: OnceLock<usize>,
}

impl StandardCredential {
    /// Picks the credentials from the environment, as described on the type.
    ///
    /// # Errors
    ///
    /// If the environment names a credential that cannot be made (a malformed tenant id, an
    /// empty secret).
    pub fn new() -> azure_core::Result<Arc<Self>> {
        let var = |name: &str| std::env::var(name).ok().filter(|value| !value.is_empty());
        let sources: Vec<(&'static str, Arc<dyn TokenCredential>)> = match (
            var("AZURE_TENANT_ID"),
            var("AZURE_CLIENT_ID"),
            var("AZURE_CLIENT_SECRET"),
        ) {
            (Some(tenant), Some(client), Some(secret)) => vec![(
                "ClientSecretCredential",
                ClientSecretCredential::new(&tenant, client, Secret::new(secret), None)?,
            )],
            _ if var("AZURE_FEDERATED_TOKEN_FILE").is_some() => vec![(
                "WorkloadIdentityCredential",
                WorkloadIdentityCredential::new(None)?,
            )],
            _ => vec![
                (
                    "DeveloperToolsCredential",
                    DeveloperToolsCredential::new(None)?,
                ),
                (
                    "ManagedIdentityCredential",
                    ManagedIdentityCredential::new(None)?,
                ),
            ],
        };
        Ok(Self::from_sources(sources))
    }

    fn from_sources(sources: Vec<(&'static str, Arc<dyn TokenCredential>)>) -> Arc<Self> {
        Arc::new(Self {
            sources,
            chosen: OnceLock::new(),
        })
    }

    /// The credentials this chain tries, by type name, in order.
    pub fn sources(&self) -> Vec<&'static str> {
        self.sources.iter().map(|(name, _)| *name).collect()
    }
}

#[async_trait]
impl TokenCredential for StandardCredential {
    async fn get_token(
        &self,
        scopes: &[&str],
        options: Option<TokenRequestOptions<'_>>,
    ) -> azure_core::Result<AccessToken> {
        if let Some(&index) = self.chosen.get()
            && let Some((_, source)) = self.sources.get(index)
        {
            return source.get_token(scopes, options).await;
        }
        let mut failures = Vec::new();
        for (index, (name, source)) in self.sources.iter().enumerate() {
            match source.get_token(scopes, options.clone()).await {
                Ok(token) => {
                    let _ = self.chosen.set(index);
                    return Ok(token);
                }
                Err(error) => failures.push(format!("{name}: {error}")),
            }
        }
        Err(azure_core::Error::with_message(
            CoreErrorKind::Credential,
            format!(
                "no Azure credential worked ({}); set AZURE_TENANT_ID/AZURE_CLIENT_ID/AZURE_CLIENT_SECRET, run `az login`, or run with a managed identity",
                failures.join("; ")
            ),
        ))
    }
}

/// Sends one fixed bearer token: fakes and emulators. Over plain `http` only to loopback
/// hosts, so a token never crosses a network in the clear.
#[derive(Debug)]
pub(crate) struct StaticTokenPolicy {
    header: String,
}

impl StaticTokenPolicy {
    pub(crate) fn new(token: &str) -> Self {
        Self {
            header: format!("Bearer {token}"),
        }
    }
}

pub(crate) fn is_loopback(url: &azure_core::http::Url) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || bare
            .parse::<std::net::IpAddr>()
            .is_ok_and(|address| address.is_loopback())
}

// The trait's own signature elides `Context`'s lifetime; naming it would not match.
#[allow(elided_lifetimes_in_paths)]
#[async_trait]
impl Policy for StaticTokenPolicy {
    async fn send(
        &self,
        ctx: &Context,
        request: &mut Request,
        next: &[Arc<dyn Policy>],
    ) -> PolicyResult {
        if request.url().scheme() != "https" && !is_loopback(request.url()) {
            return Err(azure_core::Error::with_message(
                CoreErrorKind::Other,
                "a static token is sent over plain http only to loopback addresses",
            ));
        }
        request.insert_header("authorization", self.header.clone());
        match next.first() {
            Some(policy) => policy.send(ctx, request, &next[1..]).await,
            None => Err(azure_core::Error::with_message(
                CoreErrorKind::Other,
                "the static token policy has no transport after it",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use azure_core::time::{Duration, OffsetDateTime};

    use super::*;

    #[derive(Debug)]
    struct Scripted {
        works: bool,
        calls: AtomicUsize,
    }

    impl Scripted {
        fn new(works: bool) -> Arc<Self> {
            Arc::new(Self {
                works,
                calls: AtomicUsize::new(0),
            })
        }
    }

    #[async_trait]
    impl TokenCredential for Scripted {
        async fn get_token(
            &self,
            _scopes: &[&str],
            _options: Option<TokenRequestOptions<'_>>,
        ) -> azure_core::Result<AccessToken> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            if self.works {
                Ok(AccessToken::new(
                    "token",
                    OffsetDateTime::now_utc() + Duration::hours(1),
                ))
            } else {
                Err(azure_core::Error::with_message(
                    CoreErrorKind::Credential,
                    "not signed in",
                ))
            }
        }
    }

    #[tokio::test]
    async fn the_first_credential_that_answers_is_kept() {
        let (absent, present) = (Scripted::new(false), Scripted::new(true));
        let chain = StandardCredential::from_sources(vec![
            ("Absent", absent.clone()),
            ("Present", present.clone()),
        ]);
        for _ in 0..3 {
            let token = chain.get_token(&["scope/.default"], None).await.unwrap();
            assert_eq!(token.token.secret(), "token");
        }
        assert_eq!(absent.calls.load(Ordering::SeqCst), 1);
        assert_eq!(present.calls.load(Ordering::SeqCst), 3);
        assert_eq!(chain.sources(), ["Absent", "Present"]);
    }

    #[tokio::test]
    async fn when_none_answers_the_error_names_each() {
        let chain = StandardCredential::from_sources(vec![
            ("DeveloperToolsCredential", Scripted::new(false)),
            ("ManagedIdentityCredential", Scripted::new(false)),
        ]);
        let error = chain
            .get_token(&["scope/.default"], None)
            .await
            .unwrap_err();
        assert!(matches!(error.kind(), CoreErrorKind::Credential));
        let message = error.to_string();
        assert!(
            message.contains("DeveloperToolsCredential: not signed in"),
            "{message}"
        );
        assert!(
            message.contains("ManagedIdentityCredential: not signed in"),
            "{message}"
        );
        assert!(message.contains("az login"), "{message}");
    }

    #[test]
    fn loopback_hosts_are_recognised() {
        for (url, loopback) in [
            ("http://127.0.0.1:8080", true),
            ("http://localhost", true),
            ("http://[::1]:1", true),
            ("http://10.0.0.1", false),
            ("http://management.azure.com", false),
        ] {
            let url = azure_core::http::Url::parse(url).unwrap();
            assert_eq!(is_loopback(&url), loopback, "{url}");
        }
    }
}
