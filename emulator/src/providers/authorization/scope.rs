//! Authorization scopes and the `$filter` grammar of the role assignment and role definition
//! lists.
//!
//! A scope is a subscription (`/subscriptions/{s}`), a resource group
//! (`…/resourceGroups/{rg}`) or a resource (`…/providers/{ns}/[{parent}/]{type}/{name}`), as
//! the Role Assignments REST reference lists them; management groups and the root are not
//! emulated. Scope `a` is *at or above* scope `s` when `s` is `a` or lies under it, compared
//! case-insensitively segment by segment (ARM ids are case-insensitive).

/// What a scope is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScopeKind {
    Subscription,
    ResourceGroup,
    Resource,
}

/// A scope, its fixed words in their canonical spelling and its names as given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    pub path: String,
    pub kind: ScopeKind,
    pub subscription_id: String,
}

impl Scope {
    /// Parses a scope from its path segments (no empty ones).
    pub fn parse_segments(parts: &[&str]) -> Option<Self> {
        let is = |i: usize, word: &str| parts.get(i).is_some_and(|s| s.eq_ignore_ascii_case(word));
        if !is(0, "subscriptions") || parts.len() < 2 || parts.iter().any(|p| p.is_empty()) {
            return None;
        }
        let subscription_id = parts[1].to_string();
        let mut path = format!("/subscriptions/{subscription_id}");
        let kind = match parts.len() {
            2 => ScopeKind::Subscription,
            4 if is(2, "resourceGroups") => ScopeKind::ResourceGroup,
            n if n >= 8 && n % 2 == 0 && is(2, "resourceGroups") && is(4, "providers") => ScopeKind::Resource,
            _ => return None,
        };
        if kind != ScopeKind::Subscription {
            path.push_str(&format!("/resourceGroups/{}", parts[3]));
        }
        if kind == ScopeKind::Resource {
            // `providers` inside a resource path would be an extension resource: not a scope here.
            if parts[5..].iter().any(|p| p.eq_ignore_ascii_case("providers")) {
                return None;
            }
            path.push_str("/providers/");
            path.push_str(&parts[5..].join("/"));
        }
        Some(Self {
            path,
            kind,
            subscription_id,
        })
    }

    /// Parses a scope written as a path (`/subscriptions/…`).
    pub fn parse(path: &str) -> Option<Self> {
        let trimmed = path.trim_end_matches('/');
        let parts: Vec<&str> = trimmed.strip_prefix('/')?.split('/').collect();
        Self::parse_segments(&parts)
    }

    /// Whether this scope is `other` or an ancestor of it.
    pub fn is_at_or_above(&self, other: &Scope) -> bool {
        at_or_above(&self.path, &other.path)
    }
}

/// Whether scope path `a` is `b` or an ancestor of it (case-insensitive, whole segments).
pub fn at_or_above(a: &str, b: &str) -> bool {
    let a = a.trim_end_matches('/').to_ascii_lowercase();
    let b = b.trim_end_matches('/').to_ascii_lowercase();
    a == b || b.starts_with(&format!("{a}/"))
}

/// Whether `s` is a GUID in the 8-4-4-4-12 form.
pub fn is_guid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// A role assignment list's `$filter`, as the Role Assignments – List For Scope reference
/// defines it: `atScope()` returns the assignments at or above the scope; `principalId eq
/// '{id}'` those of the principal at, above or below it; `assignedTo('{id}')` those that apply
/// to the principal (the emulator models no groups, so the principal's own), at, above or below;
/// `atScope() and …` restricts either to at or above. No filter: every assignment at, above or
/// below the scope.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AssignmentFilter {
    pub at_scope: bool,
    pub principal: Option<String>,
}

impl AssignmentFilter {
    /// Parses the `$filter` value; `Err` says what is not supported.
    pub fn parse(raw: Option<&str>) -> Result<Self, String> {
        let mut filter = Self::default();
        let Some(raw) = raw.map(str::trim).filter(|r| !r.is_empty()) else {
            return Ok(filter);
        };
        for term in split_and(raw) {
            let term = term.trim();
            let lower = term.to_ascii_lowercase();
            let principal = if lower == "atscope()" {
                filter.at_scope = true;
                None
            } else if let Some(rest) = lower.strip_prefix("principalid eq ") {
                Some(unquote(&term[term.len() - rest.len()..]))
            } else if lower.starts_with("assignedto(") && lower.ends_with(')') {
                Some(unquote(&term["assignedTo(".len()..term.len() - 1]))
            } else {
                return Err(format!("the filter term '{term}' is not supported"));
            };
            if let Some(id) = principal {
                if id.is_empty() {
                    return Err(format!("the filter term '{term}' names no principal"));
                }
                if filter
                    .principal
                    .as_ref()
                    .is_some_and(|p| !p.eq_ignore_ascii_case(&id))
                {
                    return Err("the filter names two different principals".to_string());
                }
                filter.principal = Some(id);
            }
        }
        Ok(filter)
    }

    /// Whether an assignment of `principal` at `assignment_scope` is listed at `scope`.
    pub fn selects(&self, scope: &str, assignment_scope: &str, principal: &str) -> bool {
        if self
            .principal
            .as_ref()
            .is_some_and(|p| !p.eq_ignore_ascii_case(principal))
        {
            return false;
        }
        at_or_above(assignment_scope, scope) || (!self.at_scope && at_or_above(scope, assignment_scope))
    }
}

/// A role definition list's `$filter`: `roleName eq '{name}'` and/or `type eq 'BuiltInRole'|'CustomRole'`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DefinitionFilter {
    pub role_name: Option<String>,
    pub role_type: Option<String>,
}

impl DefinitionFilter {
    pub fn parse(raw: Option<&str>) -> Result<Self, String> {
        let mut filter = Self::default();
        let Some(raw) = raw.map(str::trim).filter(|r| !r.is_empty()) else {
            return Ok(filter);
        };
        for term in split_and(raw) {
            let term = term.trim();
            let lower = term.to_ascii_lowercase();
            if let Some(rest) = lower.strip_prefix("rolename eq ") {
                filter.role_name = Some(unquote(&term[term.len() - rest.len()..]));
            } else if let Some(rest) = lower.strip_prefix("type eq ") {
                filter.role_type = Some(unquote(&term[term.len() - rest.len()..]));
            } else {
                return Err(format!("the filter term '{term}' is not supported"));
            }
        }
        Ok(filter)
    }
}

/// Splits on ` and ` (any case) outside quotes.
fn split_and(raw: &str) -> Vec<&str> {
    let lower = raw.to_ascii_lowercase();
    let mut terms = Vec::new();
    let mut start = 0;
    let mut in_quote = false;
    let bytes = lower.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\'' {
            in_quote = !in_quote;
        } else if !in_quote && bytes[i..].starts_with(b" and ") {
            terms.push(&raw[start..i]);
            i += 5;
            start = i;
            continue;
        }
        i += 1;
    }
    terms.push(&raw[start..]);
    terms
}

fn unquote(value: &str) -> String {
    let value = value.trim();
    value
        .strip_prefix('\'')
        .and_then(|v| v.strip_suffix('\''))
        .unwrap_or(value)
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_parse_to_their_kind_in_canonical_spelling() {
        let s = Scope::parse("/SUBSCRIPTIONS/s/resourcegroups/rg/Providers/Microsoft.KeyVault/vaults/kv")
            .unwrap();
        assert_eq!(s.kind, ScopeKind::Resource);
        assert_eq!(
            s.path,
            "/subscriptions/s/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/kv"
        );
        assert_eq!(
            Scope::parse("/subscriptions/s/").unwrap().kind,
            ScopeKind::Subscription
        );
        assert_eq!(
            Scope::parse("/subscriptions/s/resourceGroups/rg").unwrap().kind,
            ScopeKind::ResourceGroup
        );
        let nested =
            Scope::parse("/subscriptions/s/resourceGroups/rg/providers/Microsoft.Web/sites/app/functions/f");
        assert_eq!(nested.unwrap().kind, ScopeKind::Resource);
        for bad in [
            "/",
            "/subscriptions",
            "/subscriptions/s/resourceGroups",
            "/subscriptions/s/x/y",
            "/subscriptions/s/resourceGroups/rg/providers/ns/t",
            "/providers/Microsoft.Management/managementGroups/m",
        ] {
            assert!(Scope::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn at_or_above_compares_whole_segments() {
        assert!(at_or_above(
            "/subscriptions/s",
            "/subscriptions/S/resourceGroups/rg"
        ));
        assert!(at_or_above(
            "/subscriptions/s/resourceGroups/rg",
            "/subscriptions/s/resourceGroups/RG"
        ));
        assert!(!at_or_above(
            "/subscriptions/s/resourceGroups/rg",
            "/subscriptions/s/resourceGroups/rg2"
        ));
        assert!(!at_or_above(
            "/subscriptions/s/resourceGroups/rg",
            "/subscriptions/s"
        ));
    }

    #[test]
    fn assignment_filters_follow_the_documented_grammar() {
        let p = |raw: &str| AssignmentFilter::parse(Some(raw)).unwrap();
        assert_eq!(
            p("atScope()"),
            AssignmentFilter {
                at_scope: true,
                principal: None
            }
        );
        assert_eq!(p("principalId eq 'abc'").principal.as_deref(), Some("abc"));
        assert_eq!(p("principalId eq abc").principal.as_deref(), Some("abc"));
        assert_eq!(p("assignedTo('abc')").principal.as_deref(), Some("abc"));
        assert_eq!(
            p("atScope() and assignedTo('abc')"),
            AssignmentFilter {
                at_scope: true,
                principal: Some("abc".into())
            }
        );
        assert_eq!(
            AssignmentFilter::parse(None).unwrap(),
            AssignmentFilter::default()
        );
        assert!(AssignmentFilter::parse(Some("roleDefinitionId eq 'x'")).is_err());
        assert!(AssignmentFilter::parse(Some("principalId eq 'a' and assignedTo('b')")).is_err());
        assert!(AssignmentFilter::parse(Some("assignedTo('')")).is_err());
    }

    #[test]
    fn selection_is_at_above_and_below_unless_at_scope() {
        let rg = "/subscriptions/s/resourceGroups/rg";
        let sub = "/subscriptions/s";
        let res = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/kv";
        let other = "/subscriptions/s/resourceGroups/other";
        let principal = AssignmentFilter {
            at_scope: false,
            principal: Some("P".into()),
        };
        assert!(principal.selects(rg, sub, "p"));
        assert!(principal.selects(rg, res, "p"));
        assert!(principal.selects(rg, rg, "p"));
        assert!(!principal.selects(rg, other, "p"));
        assert!(!principal.selects(rg, rg, "q"));
        let at = AssignmentFilter {
            at_scope: true,
            principal: None,
        };
        assert!(at.selects(rg, sub, "x"));
        assert!(!at.selects(rg, res, "x"));
    }

    #[test]
    fn definition_filters_take_a_name_and_a_type() {
        let f = DefinitionFilter::parse(Some(
            "roleName eq 'Key Vault Secrets Officer' and type eq 'BuiltInRole'",
        ))
        .unwrap();
        assert_eq!(f.role_name.as_deref(), Some("Key Vault Secrets Officer"));
        assert_eq!(f.role_type.as_deref(), Some("BuiltInRole"));
        assert!(DefinitionFilter::parse(Some("atScopeAndBelow()")).is_err());
    }
}
