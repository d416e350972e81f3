//! What the schedule crate's tests share.
#![allow(dead_code, clippy::unwrap_used)]
pub mod postgres;
pub mod stores;
