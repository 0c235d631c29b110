//! Trigger payloads, parsed leniently at the edge into domain values.

pub mod event;
