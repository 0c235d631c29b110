//! Access tokens: JWTs the managed-identity endpoint issues and the other endpoints check.
//!
//! Tokens carry `aud`, `iss` (`https://sts.windows.net/<tenant>/`), `iat`, `nbf`, `exp`, `oid`,
//! `tid`, `appid` and `sub`, and are signed HS256 with a key generated at start, so the emulator
//! can tell its own tokens from forged ones. Azurite's `--oauth basic` checks only the claims,
//! so the same tokens work there. Lifetimes are measured on the wall clock, not the emulator's
//! movable clock: moving the clock never invalidates a token a client has cached.

use aws_lc_rs::hmac;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

/// Lifetime of an issued token, as managed identity gives (24 h).
pub const TOKEN_LIFETIME_SECONDS: i64 = 24 * 3600;
/// Clock skew tolerated on `nbf`/`exp`, as Entra-protected services allow.
const SKEW_SECONDS: i64 = 300;

/// The claims of an emulator token.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    pub aud: String,
    pub iss: String,
    pub iat: i64,
    pub nbf: i64,
    pub exp: i64,
    pub oid: String,
    pub sub: String,
    pub tid: String,
    pub appid: String,
    pub idtyp: String,
}

/// Why a presented token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the token is not a well-formed JWT")]
    Malformed,
    #[error("the token's signature is not valid")]
    BadSignature,
    #[error("the token was issued for audience '{0}'")]
    WrongAudience(String),
    #[error("the token's issuer '{0}' is not trusted")]
    WrongIssuer(String),
    #[error("the token expired at {0}")]
    Expired(i64),
    #[error("the token is not valid before {0}")]
    NotYetValid(i64),
}

/// Issues and verifies tokens for one emulator instance (one tenant, one signing key).
pub struct TokenIssuer {
    key: hmac::Key,
    tenant_id: String,
}

impl std::fmt::Debug for TokenIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenIssuer")
            .field("tenant_id", &self.tenant_id)
            .finish_non_exhaustive()
    }
}

impl TokenIssuer {
    pub fn new(signing_key: &[u8], tenant_id: String) -> Self {
        Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, signing_key),
            tenant_id,
        }
    }

    pub fn tenant_id(&self) -> &str {
        &self.tenant_id
    }

    pub fn issuer(&self) -> String {
        format!("https://sts.windows.net/{}/", self.tenant_id)
    }

    /// Issues a token for `audience` to the identity `principal_id` (application `client_id`).
    pub fn issue(&self, audience: &str, principal_id: &str, client_id: &str, now: i64) -> (String, Claims) {
        let claims = Claims {
            aud: audience.to_string(),
            iss: self.issuer(),
            iat: now,
            nbf: now,
            exp: now + TOKEN_LIFETIME_SECONDS,
            oid: principal_id.to_string(),
            sub: principal_id.to_string(),
            tid: self.tenant_id.clone(),
            appid: client_id.to_string(),
            idtyp: "app".to_string(),
        };
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap_or_default());
        let signing_input = format!("{header}.{payload}");
        let signature = URL_SAFE_NO_PAD.encode(hmac::sign(&self.key, signing_input.as_bytes()));
        (format!("{signing_input}.{signature}"), claims)
    }

    /// Checks a token's signature, issuer, lifetime and that its audience is one of `audiences`
    /// (compared without a trailing slash).
    pub fn verify(&self, token: &str, audiences: &[&str], now: i64) -> Result<Claims, TokenError> {
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed);
        };
        let signature = URL_SAFE_NO_PAD
            .decode(signature)
            .map_err(|_| TokenError::Malformed)?;
        hmac::verify(&self.key, format!("{header}.{payload}").as_bytes(), &signature)
            .map_err(|_| TokenError::BadSignature)?;
        let payload = URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| TokenError::Malformed)?;
        let claims: Claims = serde_json::from_slice(&payload).map_err(|_| TokenError::Malformed)?;
        if claims.iss != self.issuer() {
            return Err(TokenError::WrongIssuer(claims.iss));
        }
        let audience = claims.aud.trim_end_matches('/');
        if !audiences.iter().any(|a| a.trim_end_matches('/') == audience) {
            return Err(TokenError::WrongAudience(claims.aud));
        }
        if claims.exp + SKEW_SECONDS < now {
            return Err(TokenError::Expired(claims.exp));
        }
        if claims.nbf - SKEW_SECONDS > now {
            return Err(TokenError::NotYetValid(claims.nbf));
        }
        Ok(claims)
    }
}

/// Current wall-clock time in unix seconds.
pub fn wall_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issuer() -> TokenIssuer {
        TokenIssuer::new(b"0123456789abcdef0123456789abcdef", "tenant".into())
    }

    #[test]
    fn a_token_verifies_for_its_audience_only() {
        let tokens = issuer();
        let (jwt, claims) = tokens.issue("https://vault.azure.net", "oid-1", "app-1", 1_000);
        assert_eq!(
            tokens.verify(&jwt, &["https://vault.azure.net/"], 1_000),
            Ok(claims)
        );
        assert_eq!(
            tokens.verify(&jwt, &["https://management.azure.com"], 1_000),
            Err(TokenError::WrongAudience("https://vault.azure.net".into()))
        );
    }

    #[test]
    fn expired_forged_and_malformed_tokens_are_refused() {
        let tokens = issuer();
        let (jwt, _) = tokens.issue("aud", "oid", "app", 1_000);
        let later = 1_000 + TOKEN_LIFETIME_SECONDS + SKEW_SECONDS + 1;
        assert!(matches!(
            tokens.verify(&jwt, &["aud"], later),
            Err(TokenError::Expired(_))
        ));
        let other = TokenIssuer::new(b"another key entirely, 32 bytes..", "tenant".into());
        let (forged, _) = other.issue("aud", "oid", "app", 1_000);
        assert_eq!(
            tokens.verify(&forged, &["aud"], 1_000),
            Err(TokenError::BadSignature)
        );
        assert_eq!(
            tokens.verify("not-a-jwt", &["aud"], 1_000),
            Err(TokenError::Malformed)
        );
    }
}
