//! ARM resource ids and scopes, parsed strictly by their structure (never by splitting at fixed
//! indexes, never by comparing string prefixes):
//! `/subscriptions/{sub}/resourceGroups/{rg}/providers/{namespace}/{type}/{name}[/{type}/{name}…]`.
//!
//! Containment (DESIGN.md I9) starts here. A `ProviderAddress` tag is written by whoever may
//! write tags in a served vault, so every segment may hold only ARM's segment characters —
//! ASCII letters and digits, `.`, `_`, `-`, `(`, `)` — and no segment may be `.` or `..`:
//! `\`, `%`, `?`, `#`, whitespace, control characters, any other character and empty segments
//! are refused with a message naming the character. With that, no URL parser can reinterpret
//! an id after it was checked (a `\` becomes `/` and `..` climbs in a URL). Scopes are compared
//! segment by segment, case-insensitively, and callers build URLs from [`ArmResourceId::segments`]
//! only, so the id that is checked is the id that is called.

use std::fmt;

use super::untrusted::echo;

/// The longest resource id or scope accepted (ARM's own ids stay far below).
pub const MAX_ID_CHARS: usize = 1024;

/// Why a resource id (or scope) was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "'{}' is not an ARM resource id ({reason}); expected /subscriptions/<id>/resourceGroups/<group>/providers/<Namespace>/<type>/<name>",
    echo(raw)
)]
pub struct ArmIdError {
    pub raw: String,
    pub reason: String,
}

/// Whether `c` may appear in a segment of a resource id: ARM's segment characters, ASCII only.
pub fn is_segment_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '(' | ')')
}

/// What is wrong with a character that may not appear in an id, for the message.
fn describe_bad_char(c: char) -> String {
    match c {
        '\\' => "a backslash '\\'".into(),
        '%' => "a percent sign '%' (percent-encoding is not allowed)".into(),
        '?' => "a question mark '?'".into(),
        '#' => "a hash sign '#'".into(),
        c if c.is_whitespace() => format!("whitespace ({})", c.escape_unicode()),
        c if c.is_control() => format!("a control character ({})", c.escape_unicode()),
        c if !c.is_ascii() => format!("the non-ASCII character '{c}' ({})", c.escape_unicode()),
        c => format!("the character '{c}'"),
    }
}

/// Splits `/a/b/c` into its segments, refusing anything but ARM's segment characters, empty
/// segments and `.`/`..` segments.
fn strict_segments(raw: &str) -> Result<Vec<&str>, String> {
    if raw.chars().count() > MAX_ID_CHARS {
        return Err(format!("it is longer than {MAX_ID_CHARS} characters"));
    }
    if let Some((at, c)) = raw
        .chars()
        .enumerate()
        .find(|(_, c)| *c != '/' && !is_segment_char(*c))
    {
        return Err(format!(
            "it holds {} at character {}; only ASCII letters, digits, '.', '_', '-', '(' and ')' may appear between the '/'",
            describe_bad_char(c),
            at + 1
        ));
    }
    let Some(path) = raw.strip_prefix('/') else {
        return Err("it does not start with '/'".into());
    };
    let segments: Vec<&str> = path.split('/').collect();
    if segments.iter().any(|s| s.is_empty()) {
        return Err("it has an empty segment ('//' or a trailing '/')".into());
    }
    if let Some(dots) = segments.iter().find(|s| **s == "." || **s == "..") {
        return Err(format!("it has a '{dots}' segment"));
    }
    Ok(segments)
}

/// A resource id in a resource group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArmResourceId {
    subscription_id: String,
    resource_group: String,
    namespace: String,
    /// `(type, name)` pairs: the resource, then any child resources.
    types: Vec<(String, String)>,
}

impl ArmResourceId {
    pub fn parse(raw: &str) -> Result<Self, ArmIdError> {
        let fail = |reason: String| ArmIdError {
            raw: raw.to_string(),
            reason,
        };
        let parts = strict_segments(raw).map_err(fail)?;
        let word = |i: usize, w: &str| parts.get(i).is_some_and(|p| p.eq_ignore_ascii_case(w));
        if !word(0, "subscriptions") || parts.len() < 2 {
            return Err(fail("it does not start with /subscriptions/<id>".into()));
        }
        if !word(2, "resourceGroups") || parts.len() < 4 {
            return Err(fail("it names no resource group".into()));
        }
        if !word(4, "providers") || parts.len() < 8 {
            return Err(fail("it names no provider resource".into()));
        }
        let rest = &parts[6..];
        if !rest.len().is_multiple_of(2) {
            return Err(fail("a resource type has no name".into()));
        }
        Ok(Self {
            subscription_id: parts[1].to_string(),
            resource_group: parts[3].to_string(),
            namespace: parts[5].to_string(),
            types: rest
                .chunks(2)
                .map(|c| (c[0].to_string(), c[1].to_string()))
                .collect(),
        })
    }

    pub fn subscription_id(&self) -> &str {
        &self.subscription_id
    }

    pub fn resource_group(&self) -> &str {
        &self.resource_group
    }

    /// The full type, e.g. `Microsoft.CognitiveServices/accounts`.
    pub fn resource_type(&self) -> String {
        let types: Vec<&str> = self.types.iter().map(|(t, _)| t.as_str()).collect();
        format!("{}/{}", self.namespace, types.join("/"))
    }

    /// The last name in the id (the resource itself).
    pub fn name(&self) -> &str {
        self.types.last().map(|(_, n)| n.as_str()).unwrap_or_default()
    }

    /// The path segments, in order: what every URL to this resource is built from.
    pub fn segments(&self) -> Vec<&str> {
        let mut segments = vec![
            "subscriptions",
            self.subscription_id.as_str(),
            "resourceGroups",
            self.resource_group.as_str(),
            "providers",
            self.namespace.as_str(),
        ];
        for (t, n) in &self.types {
            segments.push(t);
            segments.push(n);
        }
        segments
    }

    /// The id lower-cased: two ids name the same resource exactly when their keys are equal
    /// (ARM ids compare case-insensitively).
    pub fn key(&self) -> String {
        self.to_string().to_ascii_lowercase()
    }
}

impl fmt::Display for ArmResourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for segment in self.segments() {
            write!(f, "/{segment}")?;
        }
        Ok(())
    }
}

/// An ARM scope whose resources keyflip may rotate: a subscription, a resource group, or one
/// resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    Subscription(String),
    ResourceGroup {
        subscription_id: String,
        resource_group: String,
    },
    Resource(ArmResourceId),
}

impl Scope {
    /// `/subscriptions/<id>`, `/subscriptions/<id>/resourceGroups/<group>` or a resource id,
    /// with the same strict characters as a resource id (a trailing `/` is allowed).
    pub fn parse(raw: &str) -> Result<Self, ArmIdError> {
        let trimmed = raw.strip_suffix('/').unwrap_or(raw);
        let fail = |reason: String| ArmIdError {
            raw: raw.to_string(),
            reason,
        };
        let parts = strict_segments(trimmed).map_err(fail)?;
        let word = |i: usize, w: &str| parts.get(i).is_some_and(|p| p.eq_ignore_ascii_case(w));
        if !word(0, "subscriptions") || parts.len() < 2 {
            return Err(fail("it does not start with /subscriptions/<id>".into()));
        }
        match parts.len() {
            2 => Ok(Self::Subscription(parts[1].to_string())),
            3 => Err(fail("the resource group name is missing".into())),
            4 if word(2, "resourceGroups") => Ok(Self::ResourceGroup {
                subscription_id: parts[1].to_string(),
                resource_group: parts[3].to_string(),
            }),
            4 => Err(fail(format!(
                "'{}' where resourceGroups was expected",
                echo(parts[2])
            ))),
            _ => ArmResourceId::parse(trimmed).map(Self::Resource),
        }
    }

    pub fn subscription_id(&self) -> &str {
        match self {
            Self::Subscription(s) => s,
            Self::ResourceGroup { subscription_id, .. } => subscription_id,
            Self::Resource(id) => id.subscription_id(),
        }
    }

    /// Whether `resource` lies within this scope, comparing parsed segments case-insensitively.
    pub fn contains(&self, resource: &ArmResourceId) -> bool {
        let same = |a: &str, b: &str| a.eq_ignore_ascii_case(b);
        match self {
            Self::Subscription(s) => same(s, resource.subscription_id()),
            Self::ResourceGroup {
                subscription_id,
                resource_group,
            } => {
                same(subscription_id, resource.subscription_id())
                    && same(resource_group, resource.resource_group())
            }
            Self::Resource(scope) => {
                same(&scope.subscription_id, &resource.subscription_id)
                    && same(&scope.resource_group, &resource.resource_group)
                    && same(&scope.namespace, &resource.namespace)
                    && scope.types.len() <= resource.types.len()
                    && scope
                        .types
                        .iter()
                        .zip(&resource.types)
                        .all(|((st, sn), (rt, rn))| same(st, rt) && same(sn, rn))
            }
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Subscription(s) => write!(f, "/subscriptions/{s}"),
            Self::ResourceGroup {
                subscription_id,
                resource_group,
            } => write!(
                f,
                "/subscriptions/{subscription_id}/resourceGroups/{resource_group}"
            ),
            Self::Resource(id) => write!(f, "{id}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SUB: &str = "00000000-1111-2222-3333-444444444444";
    const ID: &str = "/subscriptions/00000000-1111-2222-3333-444444444444/resourceGroups/rg-ai/providers/Microsoft.CognitiveServices/accounts/my-aoai";
    const RGA: &str = "/subscriptions/00000000-1111-2222-3333-444444444444/resourceGroups/rga/providers/Microsoft.CognitiveServices/accounts";

    fn scope(raw: &str) -> Scope {
        Scope::parse(raw).unwrap()
    }

    #[test]
    fn parses_by_structure() {
        let id = ArmResourceId::parse(ID).unwrap();
        assert_eq!(id.resource_type(), "Microsoft.CognitiveServices/accounts");
        assert_eq!((id.resource_group(), id.name()), ("rg-ai", "my-aoai"));
        assert_eq!(id.to_string(), ID);
        let lower = ArmResourceId::parse(&ID.to_lowercase()).unwrap();
        assert_eq!(lower.resource_type(), "microsoft.cognitiveservices/accounts");
        assert_eq!(lower.key(), id.key());
    }

    #[test]
    fn arm_segment_characters_are_accepted() {
        let id = ArmResourceId::parse(&format!(
            "/subscriptions/{SUB}/resourceGroups/rg_a.b-(1)/providers/Microsoft.CognitiveServices/accounts/A-b_c.1"
        ))
        .unwrap();
        assert_eq!(id.resource_group(), "rg_a.b-(1)");
        assert_eq!(id.name(), "A-b_c.1");
    }

    #[test]
    fn child_resources_keep_their_chain() {
        let id = ArmResourceId::parse(
            "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ServiceBus/namespaces/ns/AuthorizationRules/rule",
        )
        .unwrap();
        assert_eq!(
            id.resource_type(),
            "Microsoft.ServiceBus/namespaces/AuthorizationRules"
        );
        assert_eq!(id.name(), "rule");
        assert_eq!(
            id.segments(),
            [
                "subscriptions",
                "s",
                "resourceGroups",
                "rg",
                "providers",
                "Microsoft.ServiceBus",
                "namespaces",
                "ns",
                "AuthorizationRules",
                "rule"
            ]
        );
    }

    #[test]
    fn malformed_ids_say_why() {
        for bad in [
            "subscriptions/s/resourceGroups/rg/providers/N/t/n",
            "/subscriptions/s",
            "/subscriptions/s/resourceGroups/rg",
            "/subscriptions/s/resourceGroups/rg/providers/N/t",
            "/subscriptions/s/resourceGroups/rg/providers/N/t/n/child",
            "/subscriptions//resourceGroups/rg/providers/N/t/n",
            "/subscriptions/s/resourceGroups/rg/providers/N/t/n/",
            "",
            "/",
        ] {
            assert!(ArmResourceId::parse(bad).is_err(), "{bad}");
        }
    }

    /// The reproduced escape: `\` and `..` inside the name.
    #[test]
    fn the_backslash_traversal_is_refused_naming_the_backslash() {
        let hostile = format!(
            "{RGA}/x\\..\\..\\..\\..\\..\\rgb\\providers\\Microsoft.CognitiveServices\\accounts\\victim"
        );
        let error = ArmResourceId::parse(&hostile).unwrap_err();
        assert!(error.reason.contains("backslash"), "{error}");
        let at = hostile.find('\\').unwrap() + 1;
        assert!(error.to_string().contains(&format!("character {at};")), "{error}");
    }

    #[test]
    fn every_forbidden_character_class_is_refused_and_named() {
        let cases = [
            ("x\\y", "backslash"),
            ("x%2e%2e", "percent"),
            ("x%2F", "percent"),
            ("x?api-version=1", "question mark"),
            ("x#frag", "hash"),
            ("x y", "whitespace"),
            ("x\ty", "whitespace"),
            ("x\u{a0}y", "whitespace"),
            ("x\u{0}y", "control character"),
            ("x\u{7f}y", "control character"),
            ("x\u{1b}[31m", "control character"),
            ("acc\u{fffd}", "non-ASCII"),
            ("аcc", "non-ASCII"), // a Cyrillic 'а'
            ("x\u{202e}y", "non-ASCII"),
            ("x:y", "':'"),
            ("x@y", "'@'"),
            ("x;y", "';'"),
            ("x&y", "'&'"),
            ("x=y", "'='"),
            ("x+y", "'+'"),
            ("x*y", "'*'"),
            ("x'y", "'''"),
            ("x\"y", "'\"'"),
            ("x<y", "'<'"),
            ("x|y", "'|'"),
            ("x~y", "'~'"),
        ];
        for (name, says) in cases {
            let raw = format!("{RGA}/{name}");
            let error = ArmResourceId::parse(&raw).unwrap_err();
            assert!(error.reason.contains(says), "{name:?}: {error}");
            // The message never echoes a control character as it is.
            assert!(!error.to_string().chars().any(char::is_control), "{name:?}");
        }
    }

    #[test]
    fn dot_segments_are_refused_wherever_they_are() {
        for raw in [
            format!("{RGA}/.."),
            format!("{RGA}/."),
            format!("{RGA}/x/../victim"),
            format!(
                "/subscriptions/{SUB}/resourceGroups/../providers/Microsoft.CognitiveServices/accounts/a"
            ),
            format!(
                "/subscriptions/{SUB}/resourceGroups/rga/providers/Microsoft.CognitiveServices/accounts/x/./y/z"
            ),
        ] {
            let error = ArmResourceId::parse(&raw).unwrap_err();
            assert!(error.reason.contains("segment"), "{raw}: {error}");
        }
        // Dots inside a name are ARM characters.
        assert!(ArmResourceId::parse(&format!("{RGA}/a..b")).is_ok());
    }

    #[test]
    fn overlong_ids_are_refused() {
        let raw = format!("{RGA}/{}", "a".repeat(MAX_ID_CHARS));
        assert!(ArmResourceId::parse(&raw).unwrap_err().reason.contains("longer"));
    }

    #[test]
    fn an_id_round_trips_through_its_display() {
        let id = ArmResourceId::parse(ID).unwrap();
        assert_eq!(ArmResourceId::parse(&id.to_string()).unwrap(), id);
    }

    #[test]
    fn scopes_contain_their_resources_only() {
        let id = ArmResourceId::parse(ID).unwrap();
        assert!(scope(&format!("/subscriptions/{SUB}")).contains(&id));
        assert!(scope(&format!("/subscriptions/{SUB}/resourcegroups/RG-AI/")).contains(&id));
        assert!(scope(&format!("/SUBSCRIPTIONS/{}", SUB.to_uppercase())).contains(&id));
        assert!(!scope(&format!("/subscriptions/{SUB}/resourceGroups/rg-a")).contains(&id));
        assert!(!scope(&format!("/subscriptions/{SUB}/resourceGroups/rg-ai-2")).contains(&id));
        assert!(!scope("/subscriptions/00000000-1111-2222-3333-444444444445").contains(&id));
        assert!(scope(ID).contains(&id));
        assert!(!scope(&format!("{ID}x")).contains(&id));
    }

    #[test]
    fn a_resource_scope_contains_its_children() {
        let ns = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ServiceBus/namespaces/ns";
        let rule = ArmResourceId::parse(&format!("{ns}/AuthorizationRules/r")).unwrap();
        assert!(scope(ns).contains(&rule));
        assert!(!scope(&format!("{ns}2")).contains(&rule));
        assert!(
            !Scope::Resource(rule.clone())
                .contains(&ArmResourceId::parse(&format!("{ns}/AuthorizationRules/r2")).unwrap())
        );
    }

    /// A string-prefix comparison would let the hostile id through; segments do not.
    #[test]
    fn scope_matching_is_by_segment_not_by_prefix() {
        let rga = scope(&format!("/subscriptions/{SUB}/resourceGroups/rga"));
        let rgab = ArmResourceId::parse(&format!(
            "/subscriptions/{SUB}/resourceGroups/rgab/providers/Microsoft.CognitiveServices/accounts/a"
        ))
        .unwrap();
        assert!(!rga.contains(&rgab));
    }

    #[test]
    fn bad_scopes_say_why() {
        for bad in [
            "/subscriptions",
            "/subscriptions/s/resourceGroups",
            "/subscriptions/s/groups/rg",
            "/subscriptions/s/resourceGroups/rg/providers/N",
            "/subscriptions/s/resourceGroups/r\\g",
            "/subscriptions/s/resourceGroups/..",
            "/subscriptions/s//resourceGroups/rg",
            "subscriptions/s",
        ] {
            assert!(Scope::parse(bad).is_err(), "{bad}");
        }
    }
}
