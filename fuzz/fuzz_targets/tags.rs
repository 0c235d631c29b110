//! `RotationTags::parse`, the parser of a managed secret's tags (DESIGN.md §2). Whoever can
//! write tags on a secret in a served vault controls its input, so no tag may panic it, nor be
//! accepted in a form the engine cannot compute with.
//!
//! Input: UTF-8 text (anything else is skipped: tags are strings), one tag per line, `name=value`
//! split at the first `=` (a line without `=` is a tag with an empty value); later lines win
//! for the same name. Each input is parsed with the leads 1, 30 (the default), 365 (the largest
//! KEYFLIP_LEAD_DAYS allows) and `u32::MAX`. Invariants: nothing panics; an accepted validity
//! period exceeds the lead and Event Grid's 30 days, and `exp = now + ValidityPeriodDays` is a
//! representable date (see [`assert_expiry_is_representable`]).

#![no_main]

use keyflip::domain::tags::{EVENT_GRID_LEAD_DAYS, RotationTags, TagError, Tags};
use libfuzzer_sys::fuzz_target;
use time::OffsetDateTime;

const LEADS: [u32; 4] = [1, 30, 365, u32::MAX];

/// The one call of the parser under test: if `RotationTags::parse` gains a parameter, only this
/// line changes.
fn parse(tags: &Tags, lead_days: u32) -> Result<RotationTags, TagError> {
    RotationTags::parse(tags, lead_days)
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let tags = tags_of(text);
    for lead_days in LEADS {
        let Ok(parsed) = parse(&tags, lead_days) else {
            continue;
        };
        assert!(
            parsed.validity_days > lead_days.max(EVENT_GRID_LEAD_DAYS),
            "ValidityPeriodDays {} was accepted with a lead of {lead_days} days",
            parsed.validity_days
        );
        assert_expiry_is_representable(parsed.validity_days);
    }
});

/// `name=value` lines into tags.
fn tags_of(text: &str) -> Tags {
    text.split('\n')
        .filter(|line| !line.is_empty())
        .map(|line| match line.split_once('=') {
            Some((name, value)) => (name.to_string(), value.to_string()),
            None => (line.to_string(), String::new()),
        })
        .collect()
}

/// The engine publishes a new version with `exp = now + ValidityPeriodDays`: an accepted
/// validity must give a date the time arithmetic can represent, or the rotation panics after the
/// regenerate and the new key is never published (issue 6: `ValidityPeriodDays=3000000`). `now`
/// is fixed (2100-01-01) so that a crash reproduces.
fn assert_expiry_is_representable(validity_days: u32) {
    let now = OffsetDateTime::from_unix_timestamp(4_102_444_800).expect("2100-01-01 is a date");
    let expiry = time::Duration::days(i64::from(validity_days));
    assert!(
        now.checked_add(expiry).is_some(),
        "ValidityPeriodDays {validity_days} was accepted, but now + {validity_days} days is past the last representable date"
    );
}
