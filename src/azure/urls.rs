//! URLs built from segments, never from formatted strings (DESIGN.md I9): each segment is
//! pushed with `url`'s segment setter, which percent-encodes whatever a segment may not hold,
//! and the result is read back and compared with what was asked, so no normalisation (`\` to
//! `/`, `..` climbing, a `?` or `#`) can change the target after it was checked. Used for every
//! Resource Manager call and every data-plane key check.

use url::Url;

/// `base` with `segments` appended to its path (after any path it already has) and `query` as
/// its whole query; `None` when the URL read back does not hold exactly those segments.
pub fn with_segments(base: &Url, segments: &[&str], query: &[(&str, &str)]) -> Option<Url> {
    let mut url = base.clone();
    let before: Vec<String> = base
        .path_segments()?
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    url.path_segments_mut().ok()?.pop_if_empty().extend(segments);
    url.set_fragment(None);
    url.set_query(None);
    if !query.is_empty() {
        url.query_pairs_mut().extend_pairs(query);
    }
    let after: Vec<&str> = url.path_segments()?.collect();
    let expected = before.iter().map(String::as_str).chain(segments.iter().copied());
    (after.len() == before.len() + segments.len() && after.iter().copied().eq(expected)).then_some(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base(raw: &str) -> Url {
        raw.parse().unwrap()
    }

    #[test]
    fn segments_land_under_the_base_path_with_the_query() {
        let url = with_segments(
            &base("https://management.azure.com/"),
            &["subscriptions", "s", "listKeys"],
            &[("api-version", "2025-06-01")],
        )
        .unwrap();
        assert_eq!(
            url.as_str(),
            "https://management.azure.com/subscriptions/s/listKeys?api-version=2025-06-01"
        );
        let url = with_segments(&base("https://h.example/prefix/"), &["a"], &[]).unwrap();
        assert_eq!(url.as_str(), "https://h.example/prefix/a");
        let url = with_segments(&base("https://h.example/prefix?x=1#f"), &["a"], &[]).unwrap();
        assert_eq!(url.as_str(), "https://h.example/prefix/a");
    }

    #[test]
    fn a_segment_that_would_be_reinterpreted_is_refused() {
        let root = base("https://management.azure.com/");
        for hostile in ["..", ".", "a/b", "a\\..\\b", "a?b", "a#b", "%2e%2e", ""] {
            let url = with_segments(&root, &["subscriptions", hostile], &[]);
            // Either refused, or encoded so that the segment reads back as sent.
            if let Some(url) = url {
                let segments: Vec<&str> = url.path_segments().unwrap().collect();
                assert_eq!(segments, ["subscriptions", hostile], "{hostile:?}: {url}");
            }
        }
        assert!(with_segments(&root, &[".."], &[]).is_none());
        assert!(with_segments(&root, &["a", "."], &[]).is_none());
    }

    #[test]
    fn a_base_that_cannot_hold_segments_is_refused() {
        assert!(with_segments(&base("mailto:x@example.com"), &["a"], &[]).is_none());
    }
}
