//! EC2 ⇄ Snoozebot model: instance ids, states, instances.

use std::collections::BTreeMap;

use aws_sdk_ec2::types::{Instance, InstanceState as Ec2State, InstanceStateChange};
use chrono::{DateTime, Utc};
use snoozebot_core::{Error, InstanceId, InstanceInfo, InstanceState, Result, StateChange};

/// Checks an EC2 instance id: `i-` and 8 or 17 lower-case hex digits. Anything else is
/// [`InvalidArgument`](snoozebot_core::ErrorKind::InvalidArgument), before any API call.
pub(crate) fn validate_instance_id(id: &InstanceId) -> Result<()> {
    let valid = id.as_str().strip_prefix("i-").is_some_and(|hex| {
        (hex.len() == 8 || hex.len() == 17)
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    });
    if valid {
        Ok(())
    } else {
        Err(Error::invalid_argument(format!(
            "{id:?} is not an EC2 instance id (i- and 8 or 17 hex digits)"
        ))
        .with_provider(crate::PROVIDER_NAME))
    }
}

/// Maps an EC2 state. The low byte of the code decides (the high byte is internal to EC2);
/// the name is the fallback.
pub(crate) fn map_state(state: Option<&Ec2State>) -> (InstanceState, String) {
    let Some(state) = state else {
        return (InstanceState::Unknown, "unknown".to_owned());
    };
    let raw = state
        .name()
        .map(|name| name.as_str().to_owned())
        .unwrap_or_else(|| format!("code {}", state.code().unwrap_or(-1)));
    let by_code = state.code().and_then(|code| match code & 0xFF {
        0 => Some(InstanceState::Pending),
        16 => Some(InstanceState::Running),
        32 => Some(InstanceState::Terminating),
        48 => Some(InstanceState::Terminated),
        64 => Some(InstanceState::Stopping),
        80 => Some(InstanceState::Stopped),
        _ => None,
    });
    let portable = by_code.unwrap_or(match raw.as_str() {
        "pending" => InstanceState::Pending,
        "running" => InstanceState::Running,
        "shutting-down" => InstanceState::Terminating,
        "terminated" => InstanceState::Terminated,
        "stopping" => InstanceState::Stopping,
        "stopped" => InstanceState::Stopped,
        _ => InstanceState::Unknown,
    });
    (portable, raw)
}

/// Describes an EC2 instance in portable terms; `None` if EC2 sent no id.
pub fn instance_info(instance: &Instance, region: Option<&str>) -> Option<InstanceInfo> {
    let id = InstanceId::new(instance.instance_id()?).ok()?;
    let (state, raw) = map_state(instance.state());
    let mut info = InstanceInfo::new(id, state, raw);
    let tags: BTreeMap<String, String> = instance
        .tags()
        .iter()
        .filter_map(|tag| {
            Some((
                tag.key()?.to_owned(),
                tag.value().unwrap_or_default().to_owned(),
            ))
        })
        .collect();
    info.name = tags.get("Name").cloned();
    info.tags = tags;
    info.machine_type = instance.instance_type().map(|t| t.as_str().to_owned());
    info.zone = instance
        .placement()
        .and_then(|placement| placement.availability_zone())
        .map(str::to_owned);
    info.region = region.map(str::to_owned);
    info.launch_time = instance
        .launch_time()
        .and_then(|time| DateTime::<Utc>::from_timestamp(time.secs(), time.subsec_nanos()));
    Some(info)
}

/// Reads one entry of a StopInstances/StartInstances answer.
pub fn state_change(change: &InstanceStateChange) -> Option<StateChange> {
    let id = InstanceId::new(change.instance_id()?).ok()?;
    let (previous, _) = map_state(change.previous_state());
    let (current, _) = map_state(change.current_state());
    Some(StateChange::new(id, previous, current))
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_ec2::types::InstanceStateName;

    #[test]
    fn ids_are_i_dash_and_8_or_17_hex_digits() {
        for good in ["i-1a2b3c4d", "i-0123456789abcdef0"] {
            assert!(
                validate_instance_id(&InstanceId::new(good).unwrap()).is_ok(),
                "{good}"
            );
        }
        for bad in [
            "i-123",
            "i-0123456789ABCDEF0",
            "vm-1a2b3c4d",
            "i-1a2b3c4g",
            "1a2b3c4d",
            "i-0123456789abcdef01",
        ] {
            let err = validate_instance_id(&InstanceId::new(bad).unwrap()).unwrap_err();
            assert_eq!(
                err.kind(),
                snoozebot_core::ErrorKind::InvalidArgument,
                "{bad}"
            );
        }
    }

    #[test]
    fn every_ec2_state_is_mapped_and_the_high_byte_ignored() {
        let cases = [
            (0, "pending", InstanceState::Pending),
            (16, "running", InstanceState::Running),
            (32, "shutting-down", InstanceState::Terminating),
            (48, "terminated", InstanceState::Terminated),
            (64, "stopping", InstanceState::Stopping),
            (80, "stopped", InstanceState::Stopped),
        ];
        for (code, name, expected) in cases {
            for high in [0, 0x100, 0x7f00] {
                let state = Ec2State::builder()
                    .code(code | high)
                    .name(InstanceStateName::from(name))
                    .build();
                assert_eq!(map_state(Some(&state)), (expected, name.to_owned()));
            }
        }
        let future = Ec2State::builder()
            .code(96)
            .name(InstanceStateName::from("napping"))
            .build();
        assert_eq!(
            map_state(Some(&future)),
            (InstanceState::Unknown, "napping".to_owned())
        );
        assert_eq!(map_state(None).0, InstanceState::Unknown);
    }
}
