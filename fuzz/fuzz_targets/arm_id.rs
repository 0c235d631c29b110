//! `ArmResourceId::parse`, the parser of the `ProviderAddress` tag: the id it accepts is the id
//! keyflip checks against `KEYFLIP_ALLOWED_SCOPES` and then calls, so it must be exactly what
//! ARM would address (issue 6 item 1, DESIGN.md I9).
//!
//! Input: UTF-8 text (anything else is skipped: tags are strings). Invariants, for an id that
//! parses: it round-trips through its `Display`, and every segment is strict (see
//! [`assert_segments_are_strict`]).

#![no_main]

use keyflip::domain::ArmResourceId;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(id) = ArmResourceId::parse(raw) else {
        return;
    };
    let shown = id.to_string();
    assert_round_trips(&id, &shown);
    assert_segments_are_strict(&shown);
});

/// Parsing what an id displays gives the same id: the id that is checked is the id that is
/// called, whichever of the two forms a caller holds.
fn assert_round_trips(id: &ArmResourceId, shown: &str) {
    match ArmResourceId::parse(shown) {
        Ok(again) => assert_eq!(&again, id, "{shown:?} parses to another id"),
        Err(error) => panic!("{shown:?}, displayed by a parsed id, does not parse: {error}"),
    }
}

/// The strict rule of issue 6 item 1: every segment of an accepted id consists only of ARM's
/// segment characters (ASCII letters and digits, `.`, `_`, `-`, `(`, `)`), and no segment is
/// `.` or `..`, so that no URL builder can normalise the id into another one after the scope
/// check (`\` turned into `/`, `%2e%2e` decoded, `..` resolved, …).
fn assert_segments_are_strict(shown: &str) {
    let path = shown
        .strip_prefix('/')
        .unwrap_or_else(|| panic!("{shown:?} does not start with '/'"));
    for segment in path.split('/') {
        let bad = segment
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '(' | ')')));
        if let Some(c) = bad {
            panic!("segment {segment:?} of the accepted id {shown:?} holds {c:?}");
        }
        assert!(
            !segment.is_empty(),
            "the accepted id {shown:?} has an empty segment"
        );
        assert!(
            segment != "." && segment != "..",
            "the accepted id {shown:?} has a traversal segment {segment:?}"
        );
    }
}
