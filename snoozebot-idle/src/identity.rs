//! Which cloud instance this machine is, from the cloud's instance metadata service: EC2's
//! IMDSv2 (a session token, then the instance id and region), the GCE metadata server (project,
//! zone, name; its `Metadata-Flavor: Google` answer checked), Azure's IMDS (the VM's resource
//! id). Off-cloud every service fails fast, and the error says so.

use std::time::Duration;

use serde::Deserialize;

/// The most read of one metadata answer.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// This machine as its cloud knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// An EC2 instance.
    Aws {
        /// `i-…`.
        instance_id: String,
        /// Its region.
        region: String,
    },
    /// A Compute Engine instance.
    Gcp {
        /// The project id.
        project: String,
        /// The zone (`us-central1-a`).
        zone: String,
        /// The instance's name.
        name: String,
    },
    /// An Azure VM.
    Azure {
        /// Its resource id (`/subscriptions/…/virtualMachines/NAME`), the provider's instance id.
        resource_id: String,
        /// Its region.
        location: String,
    },
}

impl Identity {
    /// The instance's id as its Snoozebot provider names it: the EC2 instance id,
    /// `project/zone/name` on GCE, the resource id on Azure.
    pub fn instance_id(&self) -> String {
        match self {
            Identity::Aws { instance_id, .. } => instance_id.clone(),
            Identity::Gcp {
                project,
                zone,
                name,
            } => format!("{project}/{zone}/{name}"),
            Identity::Azure { resource_id, .. } => resource_id.clone(),
        }
    }
}

/// Why this machine could not say which instance it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot tell which cloud instance this is: {0}")]
pub struct IdentityError(pub String);

/// Where the metadata services are (the link-local addresses, or fakes in tests).
#[derive(Debug, Clone)]
pub struct MetadataEndpoints {
    /// EC2's (`http://169.254.169.254`).
    pub aws: String,
    /// GCE's (`http://metadata.google.internal`).
    pub gcp: String,
    /// Azure's (`http://169.254.169.254`).
    pub azure: String,
    /// How long each service may take.
    pub timeout: Duration,
}

impl Default for MetadataEndpoints {
    fn default() -> Self {
        MetadataEndpoints {
            aws: "http://169.254.169.254".to_owned(),
            gcp: "http://metadata.google.internal".to_owned(),
            azure: "http://169.254.169.254".to_owned(),
            timeout: Duration::from_secs(2),
        }
    }
}

impl MetadataEndpoints {
    /// Every cloud at `base` (a fake serving all three).
    pub fn all_at(base: &str) -> Self {
        MetadataEndpoints {
            aws: base.to_owned(),
            gcp: base.to_owned(),
            azure: base.to_owned(),
            ..MetadataEndpoints::default()
        }
    }
}

async fn text(response: reqwest::Response) -> Result<String, String> {
    let status = response.status();
    if !status.is_success() {
        return Err(format!("answered {status}"));
    }
    if response
        .content_length()
        .is_some_and(|length| length > MAX_ANSWER_BYTES as u64)
    {
        return Err(format!("answered more than {MAX_ANSWER_BYTES} bytes"));
    }
    let mut response = response;
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|error| error.to_string())? {
        body.extend_from_slice(&chunk);
        if body.len() > MAX_ANSWER_BYTES {
            return Err(format!("answered more than {MAX_ANSWER_BYTES} bytes"));
        }
    }
    String::from_utf8(body).map_err(|_| "answered bytes that are not UTF-8".to_owned())
}

async fn aws(client: &reqwest::Client, base: &str) -> Result<Identity, String> {
    let token = client
        .put(format!("{base}/latest/api/token"))
        .header("X-aws-ec2-metadata-token-ttl-seconds", "60")
        .send()
        .await
        .map_err(|error| error.to_string())?;
    let token = text(token)
        .await
        .map_err(|why| format!("no IMDSv2 token: {why}"))?;
    let get = |path: &'static str| {
        let request = client
            .get(format!("{base}/latest/meta-data/{path}"))
            .header("X-aws-ec2-metadata-token", token.trim());
        async move {
            let response = request.send().await.map_err(|error| error.to_string())?;
            text(response).await.map(|value| value.trim().to_owned())
        }
    };
    let instance_id = get("instance-id").await?;
    let region = get("placement/region").await?;
    if !instance_id.starts_with("i-") || region.is_empty() {
        return Err(format!(
            "answered instance id {instance_id:?}, region {region:?}"
        ));
    }
    Ok(Identity::Aws {
        instance_id,
        region,
    })
}

async fn gcp(client: &reqwest::Client, base: &str) -> Result<Identity, String> {
    let get = |path: &'static str| {
        let request = client
            .get(format!("{base}/computeMetadata/v1/{path}"))
            .header("Metadata-Flavor", "Google");
        async move {
            let response = request.send().await.map_err(|error| error.to_string())?;
            // Whatever answers without the flavor is not the metadata server.
            if response
                .headers()
                .get("metadata-flavor")
                .and_then(|v| v.to_str().ok())
                != Some("Google")
            {
                return Err("answered without Metadata-Flavor: Google".to_owned());
            }
            text(response).await.map(|value| value.trim().to_owned())
        }
    };
    let project = get("project/project-id").await?;
    let zone = get("instance/zone").await?;
    let zone = zone.rsplit('/').next().unwrap_or_default().to_owned();
    let name = get("instance/name").await?;
    Ok(Identity::Gcp {
        project,
        zone,
        name,
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AzureCompute {
    resource_id: String,
    location: String,
}

async fn azure(client: &reqwest::Client, base: &str) -> Result<Identity, String> {
    let response = client
        .get(format!(
            "{base}/metadata/instance/compute?api-version=2021-02-01"
        ))
        .header("Metadata", "true")
        .send()
        .await
        .map_err(|error| error.to_string())?;
    let body = text(response).await?;
    let compute: AzureCompute = serde_json::from_str(&body)
        .map_err(|error| format!("answered something that is not its JSON: {error}"))?;
    if !compute.resource_id.starts_with("/subscriptions/") {
        return Err(format!("answered resource id {:?}", compute.resource_id));
    }
    Ok(Identity::Azure {
        resource_id: compute.resource_id,
        location: compute.location,
    })
}

/// Asks each cloud's metadata service at once; the first that answers as its cloud wins.
pub async fn identify(endpoints: &MetadataEndpoints) -> Result<Identity, IdentityError> {
    let client = reqwest::Client::builder()
        .timeout(endpoints.timeout)
        .connect_timeout(endpoints.timeout)
        // Metadata services are never behind a proxy.
        .no_proxy()
        .build()
        .map_err(|error| IdentityError(format!("cannot make an HTTP client: {error}")))?;
    let (aws, gcp, azure) = tokio::join!(
        aws(&client, &endpoints.aws),
        gcp(&client, &endpoints.gcp),
        azure(&client, &endpoints.azure),
    );
    match (aws, gcp, azure) {
        (Ok(identity), _, _) | (_, Ok(identity), _) | (_, _, Ok(identity)) => Ok(identity),
        (Err(aws), Err(gcp), Err(azure)) => Err(IdentityError(format!(
            "not on EC2 ({aws}), GCE ({gcp}) or Azure ({azure})"
        ))),
    }
}
