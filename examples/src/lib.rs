//! Shared pieces of the Snoozebot examples: printing results as a table; the provider that
//! docs/writing-a-provider.md walks through ([`homelab`]) and its fake server
//! ([`homelab_fake`]); and (feature `http`) the REST server of `examples/rest_server.rs`, which
//! its tests run too.

use snoozebot_core::{BatchResults, InstanceInfo};

/// Prints one row per instance: id, name, state before, state after, mode or error.
pub fn print_state_changes(
    before: &[InstanceInfo],
    results: &BatchResults,
    after: &[InstanceInfo],
) {
    let header = ["INSTANCE", "NAME", "BEFORE", "AFTER"];
    println!(
        "{:<12} {:<12} {:<10} {:<10} MODE / ERROR",
        header[0], header[1], header[2], header[3]
    );
    for (id, result) in results {
        let name = before
            .iter()
            .find(|info| &info.id == id)
            .and_then(|info| info.name.clone())
            .unwrap_or_default();
        let previous = before
            .iter()
            .find(|info| &info.id == id)
            .map_or("-", |info| info.state.as_str());
        let now = after
            .iter()
            .find(|info| &info.id == id)
            .map_or("-", |info| info.state.as_str());
        let outcome = match result {
            Ok(change) => change
                .mode
                .map_or_else(|| "-".to_owned(), |mode| mode.to_string()),
            Err(error) => format!("error: {error}"),
        };
        println!(
            "{:<12} {:<12} {previous:<10} {now:<10} {outcome}",
            id.as_str(),
            name
        );
    }
}

pub mod homelab;
pub mod homelab_fake;
#[cfg(feature = "http")]
pub mod rest;

/// The code in the top-level README, compiled and run as a doc test so it stays true.
#[doc = include_str!("../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

/// The Rust code in docs/rest-api.md, compiled as doc tests so it stays true.
#[doc = include_str!("../../docs/rest-api.md")]
#[cfg(all(doctest, feature = "http"))]
pub struct RestApiDoctests;

/// The Rust code in docs/writing-a-provider.md, compiled as doc tests.
#[doc = include_str!("../../docs/writing-a-provider.md")]
#[cfg(doctest)]
pub struct WritingAProviderDoctests;
