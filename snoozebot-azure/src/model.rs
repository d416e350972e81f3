//! Azure ⇄ Snoozebot model: VM ids and power states.

use snoozebot_core::{Error, InstanceId, InstanceInfo, InstanceState, Result};

use crate::client::VirtualMachine;

/// Where a VM lives: subscription, resource group and name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct VmRef {
    /// The subscription id.
    pub subscription: String,
    /// The resource group.
    pub resource_group: String,
    /// The VM name.
    pub name: String,
}

fn invalid(id: &InstanceId, problem: &str) -> Error {
    Error::invalid_argument(format!("Azure VM id {id:?} {problem}"))
        .with_provider(crate::PROVIDER_NAME)
}

/// Resource group names: 1 to 90 letters, digits, `-`, `_`, `.`, `(`, `)`, not ending in `.`.
fn valid_resource_group(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 90
        && !name.ends_with('.')
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | '.' | '(' | ')'))
}

/// VM names: 1 to 64 letters, digits, `-`, `_`, `.`, starting with a letter or digit.
fn valid_vm_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.chars().next().is_some_and(char::is_alphanumeric)
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

impl VmRef {
    /// Reads a full ARM resource id
    /// (`/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Compute/virtualMachines/{name}`,
    /// segment names in any case, as ARM treats them), or `{rg}/{name}` in
    /// `default_subscription`. Anything else is
    /// [`InvalidArgument`](snoozebot_core::ErrorKind::InvalidArgument), before any call.
    pub fn parse(id: &InstanceId, default_subscription: Option<&str>) -> Result<Self> {
        let text = id.as_str();
        let (subscription, resource_group, name) = if text.starts_with('/') {
            let parts: Vec<&str> = text.trim_start_matches('/').split('/').collect();
            let shape = [
                (0, "subscriptions"),
                (2, "resourcegroups"),
                (4, "providers"),
                (5, "microsoft.compute"),
                (6, "virtualmachines"),
            ];
            let well_formed = parts.len() == 8
                && shape
                    .iter()
                    .all(|(index, expected)| parts[*index].eq_ignore_ascii_case(expected));
            if !well_formed {
                return Err(invalid(
                    id,
                    "is not /subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Compute/virtualMachines/{name}",
                ));
            }
            (parts[1].to_owned(), parts[3], parts[7])
        } else {
            match text.split('/').collect::<Vec<_>>().as_slice() {
                [group, name] => match default_subscription {
                    Some(subscription) => (subscription.to_owned(), *group, *name),
                    None => {
                        return Err(invalid(
                            id,
                            "is resourceGroup/name but no default subscription is configured",
                        ));
                    }
                },
                _ => {
                    return Err(invalid(
                        id,
                        "is neither a VM resource id nor resourceGroup/name",
                    ));
                }
            }
        };
        if subscription.is_empty()
            || !subscription
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-')
        {
            return Err(invalid(id, "has an invalid subscription id"));
        }
        if !valid_resource_group(resource_group) {
            return Err(invalid(id, "has an invalid resource group name"));
        }
        if !valid_vm_name(name) {
            return Err(invalid(id, "has an invalid VM name"));
        }
        Ok(VmRef {
            subscription,
            resource_group: resource_group.to_owned(),
            name: name.to_owned(),
        })
    }

    /// The full ARM resource id, which is also the URL path of the VM.
    pub fn resource_id(&self) -> String {
        format!(
            "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.Compute/virtualMachines/{}",
            self.subscription, self.resource_group, self.name
        )
    }
}

/// Maps the codes of an instance view's statuses: the `PowerState/...` code decides; a VM
/// being deleted (`ProvisioningState/deleting`) is terminating whatever its power state.
/// Returns the portable state, the raw code, and whether compute billing has stopped — only
/// for `deallocated`: a VM that is merely `stopped` (powered off) still pays for its compute.
/// (`["ProvisioningState/succeeded", "PowerState/stopped"]` is `Stopped`, still billed.)
pub(crate) fn map_power_state<'a>(
    codes: impl IntoIterator<Item = &'a str>,
) -> (InstanceState, String, bool) {
    let codes: Vec<&str> = codes.into_iter().collect();
    let power = codes
        .iter()
        .find(|code| code.starts_with("PowerState/"))
        .copied()
        .unwrap_or("PowerState/unknown");
    if codes
        .iter()
        .any(|code| code.eq_ignore_ascii_case("ProvisioningState/deleting"))
    {
        return (
            InstanceState::Terminating,
            "ProvisioningState/deleting".to_owned(),
            false,
        );
    }
    let state = match power
        .trim_start_matches("PowerState/")
        .to_ascii_lowercase()
        .as_str()
    {
        "starting" => InstanceState::Pending,
        "running" => InstanceState::Running,
        "stopping" | "deallocating" => InstanceState::Stopping,
        "stopped" | "deallocated" => InstanceState::Stopped,
        _ => InstanceState::Unknown,
    };
    let billing_stopped = power.eq_ignore_ascii_case("PowerState/deallocated");
    (state, power.to_owned(), billing_stopped)
}

pub(crate) fn instance_info(vm: &VirtualMachine) -> Option<InstanceInfo> {
    let at = VmRef::parse(&InstanceId::new(vm.id.as_str()).ok()?, None).ok()?;
    let id = InstanceId::new(at.resource_id()).ok()?;
    let codes = vm
        .properties
        .instance_view
        .iter()
        .flat_map(|view| view.statuses.iter())
        .map(|status| status.code.as_str());
    let (state, raw, billing_stopped) = map_power_state(codes);
    let mut info = InstanceInfo::new(id, state, raw);
    info.billing_stopped = billing_stopped;
    info.name = Some(vm.name.clone());
    info.region = vm.location.clone();
    info.zone = vm.zones.first().cloned();
    info.machine_type = vm
        .properties
        .hardware_profile
        .as_ref()
        .and_then(|profile| profile.vm_size.clone());
    info.tags = vm.tags.clone();
    Some(info)
}

/// ARM ids compare without regard to case.
pub(crate) fn id_key(id: &str) -> String {
    id.to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;
    use snoozebot_core::ErrorKind;

    fn id(s: &str) -> InstanceId {
        InstanceId::new(s).unwrap()
    }

    #[test]
    fn full_resource_ids_and_short_ids_parse() {
        let full = VmRef::parse(
            &id("/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/cli_test_vm_state_mod000001/providers/Microsoft.Compute/virtualMachines/vm-state-mod"),
            None,
        )
        .unwrap();
        assert_eq!(full.resource_group, "cli_test_vm_state_mod000001");
        assert_eq!(full.name, "vm-state-mod");
        let lower = VmRef::parse(&id("/SUBSCRIPTIONS/sub-1/resourcegroups/rg/providers/microsoft.compute/virtualmachines/vm1"), None).unwrap();
        assert_eq!(
            lower.resource_id(),
            "/subscriptions/sub-1/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm1"
        );
        let short = VmRef::parse(&id("rg/vm1"), Some("sub-1")).unwrap();
        assert_eq!(short, lower);
    }

    #[test]
    fn anything_else_is_invalid_argument() {
        for (bad, subscription) in [
            ("rg/vm1", None),
            ("vm1", Some("s")),
            ("a/b/c", Some("s")),
            (
                "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/virtualNetworks/n",
                None,
            ),
            (
                "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines",
                None,
            ),
            ("rg./vm1", Some("s")),
            ("rg/-vm", Some("s")),
            ("i-0123456789abcdef0", Some("s")),
        ] {
            let err = VmRef::parse(&id(bad), subscription).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{bad}");
        }
    }

    #[test]
    fn every_power_state_is_mapped_and_only_deallocated_stops_billing() {
        for (code, state, billing_stopped) in [
            ("PowerState/starting", InstanceState::Pending, false),
            ("PowerState/running", InstanceState::Running, false),
            ("PowerState/stopping", InstanceState::Stopping, false),
            ("PowerState/stopped", InstanceState::Stopped, false),
            ("PowerState/deallocating", InstanceState::Stopping, false),
            ("PowerState/deallocated", InstanceState::Stopped, true),
            ("PowerState/unknown", InstanceState::Unknown, false),
            (
                "PowerState/hibernating-someday",
                InstanceState::Unknown,
                false,
            ),
        ] {
            assert_eq!(
                map_power_state(["ProvisioningState/succeeded", code]),
                (state, code.to_owned(), billing_stopped),
                "{code}"
            );
        }
        assert_eq!(map_power_state([]).0, InstanceState::Unknown);
        let deleting = ["ProvisioningState/deleting", "PowerState/running"];
        assert_eq!(map_power_state(deleting).0, InstanceState::Terminating);
    }

    #[test]
    fn the_recorded_instance_view_is_running() {
        let path = std::path::Path::new(
            &std::env::var("CARGO_MANIFEST_DIR")
                .unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_owned()),
        )
        .join("tests/fixtures/azure/vm-get-instanceview.json");
        let vm: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let statuses = vm["properties"]["instanceView"]["statuses"]
            .as_array()
            .unwrap();
        let codes = statuses
            .iter()
            .map(|status| status["code"].as_str().unwrap());
        assert_eq!(
            map_power_state(codes),
            (
                InstanceState::Running,
                "PowerState/running".to_owned(),
                false
            )
        );
        let id = InstanceId::new(vm["id"].as_str().unwrap()).unwrap();
        assert_eq!(VmRef::parse(&id, None).unwrap().name, "vm-state-mod");
    }
}
