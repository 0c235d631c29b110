//! Trigger payloads, parsed leniently at the edge into domain values.

pub mod envelope;
pub mod event;
pub mod keyvault_events;
pub mod manual;
pub mod sweep;
