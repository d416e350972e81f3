//! What the schedule crate's tests share.
pub mod postgres;
