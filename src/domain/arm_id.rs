//! ARM resource ids, parsed by their structure (never by splitting at fixed indexes):
//! `/subscriptions/{sub}/resourceGroups/{rg}/providers/{namespace}/{type}/{name}[/{type}/{name}…]`.

use std::fmt;

/// Why a resource id was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "'{raw}' is not an ARM resource id ({reason}); expected /subscriptions/<id>/resourceGroups/<group>/providers/<Namespace>/<type>/<name>"
)]
pub struct ArmIdError {
    pub raw: String,
    pub reason: &'static str,
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
        let fail = |reason| ArmIdError {
            raw: raw.to_string(),
            reason,
        };
        let trimmed = raw.trim().trim_end_matches('/');
        let Some(path) = trimmed.strip_prefix('/') else {
            return Err(fail("it does not start with '/'"));
        };
        let parts: Vec<&str> = path.split('/').collect();
        if parts.iter().any(|p| p.is_empty()) {
            return Err(fail("it has an empty segment"));
        }
        let word = |i: usize, w: &str| parts.get(i).is_some_and(|p| p.eq_ignore_ascii_case(w));
        if !word(0, "subscriptions") || parts.len() < 2 {
            return Err(fail("it does not start with /subscriptions/<id>"));
        }
        if !word(2, "resourceGroups") || parts.len() < 4 {
            return Err(fail("it names no resource group"));
        }
        if !word(4, "providers") || parts.len() < 8 {
            return Err(fail("it names no provider resource"));
        }
        let rest = &parts[6..];
        if !rest.len().is_multiple_of(2) {
            return Err(fail("a resource type has no name"));
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

    /// Whether the resource lies within `scope` (`/subscriptions/<id>` or
    /// `/subscriptions/<id>/resourceGroups/<group>`, or a resource id), case-insensitively.
    pub fn is_within(&self, scope: &str) -> bool {
        let scope = scope.trim().trim_end_matches('/').to_ascii_lowercase();
        let id = self.to_string().to_ascii_lowercase();
        id == scope || id.starts_with(&format!("{scope}/"))
    }
}

impl fmt::Display for ArmResourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "/subscriptions/{}/resourceGroups/{}/providers/{}",
            self.subscription_id, self.resource_group, self.namespace
        )?;
        for (t, n) in &self.types {
            write!(f, "/{t}/{n}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "/subscriptions/00000000-1111-2222-3333-444444444444/resourceGroups/rg-ai/providers/Microsoft.CognitiveServices/accounts/my-aoai";

    #[test]
    fn parses_by_structure() {
        let id = ArmResourceId::parse(ID).unwrap();
        assert_eq!(id.resource_type(), "Microsoft.CognitiveServices/accounts");
        assert_eq!((id.resource_group(), id.name()), ("rg-ai", "my-aoai"));
        assert_eq!(id.to_string(), ID);
        let lower = ArmResourceId::parse(&ID.to_lowercase()).unwrap();
        assert_eq!(lower.resource_type(), "microsoft.cognitiveservices/accounts");
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
        ] {
            assert!(ArmResourceId::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn scopes_contain_their_resources_only() {
        let id = ArmResourceId::parse(ID).unwrap();
        assert!(id.is_within("/subscriptions/00000000-1111-2222-3333-444444444444"));
        assert!(id.is_within("/subscriptions/00000000-1111-2222-3333-444444444444/resourcegroups/RG-AI/"));
        assert!(!id.is_within("/subscriptions/00000000-1111-2222-3333-444444444444/resourceGroups/rg-a"));
        assert!(!id.is_within("/subscriptions/other"));
    }
}
