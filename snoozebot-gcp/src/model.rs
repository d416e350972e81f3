//! Compute Engine ⇄ Snoozebot model: instance ids and statuses.

use google_cloud_compute_v1::model::Instance;
use snoozebot_core::{Error, InstanceFilter, InstanceId, InstanceInfo, InstanceState, Result};

/// Where an instance lives: project, zone and name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct InstanceRef {
    /// The project id (`my-project`).
    pub project: String,
    /// The zone (`us-central1-a`).
    pub zone: String,
    /// The instance name (`web-1`).
    pub name: String,
}

impl InstanceRef {
    /// Reads `project/zone/name`, or `zone/name` in `default_project`. Each part must look like
    /// what GCE accepts: lower-case letters, digits and `-` (project ids may also hold `:` and
    /// `.` for domain-scoped projects), starting with a letter. Anything else is
    /// [`InvalidArgument`](snoozebot_core::ErrorKind::InvalidArgument), before any call.
    pub fn parse(id: &InstanceId, default_project: Option<&str>) -> Result<Self> {
        let parts: Vec<&str> = id.as_str().split('/').collect();
        let (project, zone, name) = match parts.as_slice() {
            [project, zone, name] => (*project, *zone, *name),
            [zone, name] => match default_project {
                Some(project) => (project, *zone, *name),
                None => {
                    return Err(invalid(
                        id,
                        "is zone/name but no default project is configured",
                    ));
                }
            },
            _ => return Err(invalid(id, "is neither project/zone/name nor zone/name")),
        };
        let resource_name = |part: &str, extra: &[u8]| {
            !part.is_empty()
                && part.len() <= 63
                && part.as_bytes()[0].is_ascii_lowercase()
                && part.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || extra.contains(&b)
                })
        };
        if !resource_name(project, b":.") {
            return Err(invalid(id, "has an invalid project id"));
        }
        if !resource_name(zone, b"") {
            return Err(invalid(id, "has an invalid zone"));
        }
        if !resource_name(name, b"") {
            return Err(invalid(id, "has an invalid instance name"));
        }
        Ok(InstanceRef {
            project: project.to_owned(),
            zone: zone.to_owned(),
            name: name.to_owned(),
        })
    }

    #[cfg(test)]
    /// The id in its full form, `project/zone/name`.
    pub fn to_id(&self) -> Result<InstanceId> {
        InstanceId::new(format!("{}/{}/{}", self.project, self.zone, self.name))
    }
}

fn invalid(id: &InstanceId, problem: &str) -> Error {
    Error::invalid_argument(format!("GCE instance id {id:?} {problem}"))
        .with_provider(crate::PROVIDER_NAME)
}

/// Maps an `Instance.status`. TERMINATED is GCE's word for a stopped instance: restartable, no
/// longer billed for vCPU and memory.
pub(crate) fn map_status(status: &str) -> InstanceState {
    match status {
        "PROVISIONING" | "STAGING" => InstanceState::Pending,
        "RUNNING" => InstanceState::Running,
        "STOPPING" => InstanceState::Stopping,
        "STOPPED" | "TERMINATED" => InstanceState::Stopped,
        "SUSPENDING" => InstanceState::Suspending,
        "SUSPENDED" => InstanceState::Suspended,
        "DEPROVISIONING" => InstanceState::Terminating,
        // REPAIRING: GCE is moving the instance after a host failure; it returns on its own,
        // and neither stop nor start applies meanwhile.
        _ => InstanceState::Unknown,
    }
}

/// The last path segment of a GCE URL (`.../zones/us-central1-a` → `us-central1-a`).
fn last_segment(url: &str) -> &str {
    url.rsplit('/').next().unwrap_or(url)
}

pub(crate) fn instance_info(project: &str, instance: &Instance) -> Option<InstanceInfo> {
    let name = instance.name.as_deref()?;
    let zone = last_segment(instance.zone.as_deref()?);
    let id = InstanceId::new(format!("{project}/{zone}/{name}")).ok()?;
    let raw = instance
        .status
        .as_ref()
        .and_then(|status| status.name())
        .unwrap_or("UNKNOWN")
        .to_owned();
    let mut info = InstanceInfo::new(id, map_status(&raw), raw);
    info.name = Some(name.to_owned());
    info.zone = Some(zone.to_owned());
    info.region = zone.rsplit_once('-').map(|(region, _)| region.to_owned());
    info.machine_type = instance
        .machine_type
        .as_deref()
        .map(|url| last_segment(url).to_owned());
    info.launch_time = instance
        .last_start_timestamp
        .as_deref()
        .and_then(|time| chrono::DateTime::parse_from_rfc3339(time).ok())
        .map(|time| time.with_timezone(&chrono::Utc));
    info.tags = instance
        .labels
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    Some(info)
}

/// The GCE filter expression for what GCE can filter: labels and statuses.
pub(crate) fn filter_expression(filter: &InstanceFilter) -> String {
    let mut clauses: Vec<String> = filter
        .tags
        .iter()
        .map(|(key, value)| format!("labels.{key} = \"{value}\""))
        .collect();
    let statuses: Vec<String> = filter
        .states
        .iter()
        .flat_map(|state| match state {
            InstanceState::Pending => &["PROVISIONING", "STAGING"][..],
            InstanceState::Running => &["RUNNING"][..],
            InstanceState::Stopping => &["STOPPING"][..],
            InstanceState::Stopped => &["TERMINATED", "STOPPED"][..],
            InstanceState::Suspending => &["SUSPENDING"][..],
            InstanceState::Suspended => &["SUSPENDED"][..],
            InstanceState::Terminating => &["DEPROVISIONING"][..],
            // Not one GCE status (nor states newer than this crate): filtered here instead.
            _ => &[][..],
        })
        .map(|status| format!("status = \"{status}\""))
        .collect();
    if !statuses.is_empty() {
        clauses.push(format!("({})", statuses.join(" OR ")));
    }
    clauses.join(" AND ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use snoozebot_core::ErrorKind;

    fn id(s: &str) -> InstanceId {
        InstanceId::new(s).unwrap()
    }

    #[test]
    fn ids_are_project_zone_name_or_zone_name_with_a_default_project() {
        let full = InstanceRef::parse(&id("my-project/us-central1-a/web-1"), None).unwrap();
        assert_eq!(
            (
                full.project.as_str(),
                full.zone.as_str(),
                full.name.as_str()
            ),
            ("my-project", "us-central1-a", "web-1")
        );
        let short = InstanceRef::parse(&id("us-central1-a/web-1"), Some("dflt")).unwrap();
        assert_eq!(short.project, "dflt");
        assert_eq!(short.to_id().unwrap().as_str(), "dflt/us-central1-a/web-1");
        let scoped = InstanceRef::parse(&id("example.com:proj/europe-west1-b/db"), None).unwrap();
        assert_eq!(scoped.project, "example.com:proj");
    }

    #[test]
    fn anything_else_is_invalid_argument() {
        for (bad, default) in [
            ("web-1", Some("p")),
            ("us-central1-a/web-1", None),
            ("a/b/c/d", Some("p")),
            ("p/us-central1-a/Web-1", None),
            ("p/us-central1-a/1web", None),
            ("p//web", None),
            ("i-0123456789abcdef0", Some("p")),
        ] {
            let err = InstanceRef::parse(&id(bad), default).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{bad}");
        }
    }

    #[test]
    fn every_status_of_the_discovery_document_is_mapped() {
        for (status, state) in [
            ("DEPROVISIONING", InstanceState::Terminating),
            ("PROVISIONING", InstanceState::Pending),
            ("REPAIRING", InstanceState::Unknown),
            ("RUNNING", InstanceState::Running),
            ("STAGING", InstanceState::Pending),
            ("STOPPED", InstanceState::Stopped),
            ("STOPPING", InstanceState::Stopping),
            ("SUSPENDED", InstanceState::Suspended),
            ("SUSPENDING", InstanceState::Suspending),
            ("TERMINATED", InstanceState::Stopped),
            ("SOMETHING_NEW", InstanceState::Unknown),
        ] {
            assert_eq!(map_status(status), state, "{status}");
        }
    }
}
