//! keyflip, black-box: the handler and the emulator on port 0, driven exactly as the Functions
//! host and Azure would (the real custom-handler envelopes, the official SDK clients over TLS).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod attacks;
mod budgets;
mod cli;
mod concurrency;
mod doctor;
mod events;
mod guards;
#[allow(dead_code)] // each helper serves some of the modules
mod helpers;
mod hostile;
mod http_surface;
mod lease;
mod lifecycle;
mod log_contract;
mod onboard;
mod queue;
mod resilience;
mod review7;
mod revoke;
mod secrets;
mod status;
mod sweep;
mod sweep_controls;
