//! Text that came from outside (event ids, names, tag and parameter values) and is echoed back
//! into a log line or an answer: cut to [`MAX_ECHO_CHARS`] characters, with control characters
//! escaped, so a hostile value can neither flood a log nor forge a line of it. Key values are
//! never echoed at all (they live in `ApiKey`, which does not print).

/// The most characters of an untrusted value that are echoed.
pub const MAX_ECHO_CHARS: usize = 200;

/// `raw` as it may be shown: at most [`MAX_ECHO_CHARS`] characters (then `…`), every control
/// character written as an escape (`\n`, `\u{1b}`).
pub fn echo(raw: &str) -> String {
    let mut shown = String::new();
    for (i, c) in raw.chars().enumerate() {
        if i == MAX_ECHO_CHARS {
            shown.push('…');
            break;
        }
        if c.is_control() {
            shown.extend(c.escape_default());
        } else {
            shown.push(c);
        }
    }
    shown
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_printable_text_is_unchanged() {
        assert_eq!(echo("kv-one/api-key"), "kv-one/api-key");
    }

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(echo("a\nb\r\u{1b}[31m"), "a\\nb\\r\\u{1b}[31m");
        assert!(!echo("line\nforged: ERROR").contains('\n'));
    }

    #[test]
    fn long_values_are_cut_to_200_characters() {
        let shown = echo(&"x".repeat(10_000));
        assert_eq!(shown.chars().count(), MAX_ECHO_CHARS + 1);
        assert!(shown.ends_with('…'));
        assert_eq!(echo(&"é".repeat(200)), "é".repeat(200));
    }
}
