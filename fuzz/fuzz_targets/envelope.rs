//! The custom-handler envelope as the Functions host POSTs it, then what the two envelope
//! triggers do with a parsed invocation before any network call: the event trigger's pure
//! decision (`keyvault_events::decide`, serving every vault so that the whole path is reached)
//! and its answer, and the timer trigger's reading of the timer object (`sweep::timer_info`).
//!
//! Input: the raw request body. Invariants: nothing panics; a rotation is asked only for names
//! that parse again as themselves.

#![no_main]

use std::time::Duration;

use keyflip::domain::{SecretName, VaultName};
use keyflip::engine::TriggerKind;
use keyflip::triggers::envelope::Invocation;
use keyflip::triggers::keyvault_events::{self, Decision};
use keyflip::triggers::sweep;
use libfuzzer_sys::fuzz_target;

/// `KEYFLIP_EVENT_BUDGET_SECONDS`' default.
const BUDGET: Duration = Duration::from_secs(20);

fuzz_target!(|body: &[u8]| {
    let Ok(invocation) = Invocation::parse(body) else {
        return;
    };
    let plan = keyvault_events::decide(&invocation, BUDGET, &|_| true);
    match plan.decision {
        Decision::Rotate(request) => {
            assert_eq!(request.trigger, TriggerKind::Event);
            assert_eq!(request.budget, BUDGET);
            assert!(
                !request.dry_run && !request.force,
                "an event never asks for a dry run or force"
            );
            assert_eq!(
                VaultName::parse(request.vault.as_str()).as_ref(),
                Ok(&request.vault)
            );
            assert_eq!(
                SecretName::parse(request.secret.as_str()).as_ref(),
                Ok(&request.secret)
            );
        }
        Decision::Answer(result) => {
            let _ = keyvault_events::reply(&result);
        }
    }
    let _ = sweep::timer_info(&invocation);
});
