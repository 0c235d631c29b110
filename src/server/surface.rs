//! The HTTP surface's refusals that apply to every route, checked by a layer of
//! `crate::server::router` before any route runs. `keyflip serve` on a developer's machine acts
//! with that developer's own `az login` credentials, so no web page they visit may drive it:
//!
//! - **No browser.** A request carrying an `Origin` header, or a `Sec-Fetch-Site` other than
//!   `none`, came from a browser (every cross-site browser request carries one of them; the
//!   Functions host, curl and the Azure SDKs send neither): 403.
//! - **No DNS rebinding.** The `Host` (and the authority of an absolute-form request target) must
//!   be a loopback name or address (`localhost`, `*.localhost`, `127.0.0.0/8`, `[::1]`), or one
//!   of the [`AllowedHosts`] (the app's own `WEBSITE_HOSTNAME` and `KEYFLIP_ALLOWED_HOSTS`);
//!   compared ignoring case, the port and a trailing dot. Anything else, a request without any
//!   `Host` (HTTP/1.0; a browser always sends one, but so does every legitimate caller here) and
//!   one with two: 421.
//!
//! This module owns these rules and their answers ([`Refusal`], `{"error": …}`); it knows no
//! route and no rotation. Values quoted from the request are cut and escaped
//! ([`crate::domain::untrusted::echo`]). The settings are validated in `crate::config`.

use std::net::IpAddr;
use std::str::FromStr;

use axum::Json;
use axum::http::header::{HOST, ORIGIN};
use axum::http::uri::Authority;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::config::KEYFLIP_ALLOWED_HOSTS;
use crate::domain::untrusted::echo;

/// The fetch-metadata header every current browser sends.
pub const SEC_FETCH_SITE: &str = "sec-fetch-site";

/// The host names a request may name besides loopback ones: lower-case, without port or
/// trailing dot.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowedHosts {
    names: Vec<String>,
}

impl AllowedHosts {
    /// Loopback names and addresses only.
    pub fn loopback_only() -> Self {
        Self::default()
    }

    /// Loopback plus `names` (host names as `crate::config` validated them).
    pub fn new<S: AsRef<str>>(names: impl IntoIterator<Item = S>) -> Self {
        let mut list: Vec<String> = names.into_iter().map(|n| normalize(n.as_ref())).collect();
        list.sort();
        list.dedup();
        Self { names: list }
    }

    /// Whether `host` (a host name or address as it appears in a URL, no port) may be answered.
    pub fn allows(&self, host: &str) -> bool {
        let host = normalize(host);
        is_loopback(&host) || self.names.contains(&host)
    }
}

/// Lower case, IPv6 brackets and one trailing dot removed.
fn normalize(host: &str) -> String {
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let host = host.strip_suffix('.').unwrap_or(host);
    host.to_ascii_lowercase()
}

/// `localhost`, `*.localhost` (RFC 6761: always loopback), `127.0.0.0/8`, `::1`.
fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host.ends_with(".localhost")
        || IpAddr::from_str(host).is_ok_and(|ip| ip.is_loopback())
}

/// Why a request is refused before any route runs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error(
        "refused: the request carries {header} '{value}', so a browser sent it; keyflip acts with \
         its own Azure credentials and takes no requests from browsers (the Functions host, curl \
         and the SDKs send no {header})"
    )]
    Browser { header: &'static str, value: String },
    #[error(
        "refused: Host '{0}' is not a name of this app; loopback names, WEBSITE_HOSTNAME and the \
         names in {KEYFLIP_ALLOWED_HOSTS} are answered: add it to {KEYFLIP_ALLOWED_HOSTS} if \
         this app is reached by that name"
    )]
    ForeignHost(String),
    #[error(
        "refused: the request names no Host; send one (a loopback address, WEBSITE_HOSTNAME or a \
         name in {KEYFLIP_ALLOWED_HOSTS})"
    )]
    NoHost,
    #[error("refused: the request carries more than one Host header")]
    SeveralHosts,
}

impl Refusal {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Browser { .. } => StatusCode::FORBIDDEN,
            Self::ForeignHost(_) | Self::NoHost | Self::SeveralHosts => StatusCode::MISDIRECTED_REQUEST,
        }
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        (self.status(), Json(json!({ "error": self.to_string() }))).into_response()
    }
}

/// Checks a request's headers and target against the rules in this module's doc.
pub fn check(headers: &HeaderMap, uri: &Uri, hosts: &AllowedHosts) -> Result<(), Refusal> {
    if let Some(origin) = headers.get(ORIGIN) {
        return Err(Refusal::Browser {
            header: "Origin",
            value: shown(origin),
        });
    }
    if let Some(site) = headers.get(SEC_FETCH_SITE)
        && !site.as_bytes().trim_ascii().eq_ignore_ascii_case(b"none")
    {
        return Err(Refusal::Browser {
            header: "Sec-Fetch-Site",
            value: shown(site),
        });
    }
    let mut host_headers = headers.get_all(HOST).iter();
    let host = host_headers.next();
    if host_headers.next().is_some() {
        return Err(Refusal::SeveralHosts);
    }
    // An absolute-form target (`POST http://name/… HTTP/1.1`) names the host the request is for.
    if let Some(authority) = uri.authority() {
        allowed(authority.as_str(), hosts)?;
    }
    match host {
        Some(host) => allowed(&String::from_utf8_lossy(host.as_bytes()), hosts),
        None if uri.authority().is_some() => Ok(()),
        None => Err(Refusal::NoHost),
    }
}

/// `raw` (`host[:port]`) names an allowed host.
fn allowed(raw: &str, hosts: &AllowedHosts) -> Result<(), Refusal> {
    let foreign = || Refusal::ForeignHost(echo(raw));
    let authority = Authority::from_str(raw.trim()).map_err(|_| foreign())?;
    // `host[:digits]`: no user info, no other port (`Authority` takes any port text).
    let port_ok = match authority.as_str().strip_prefix(authority.host()) {
        Some(rest) => rest
            .strip_prefix(':')
            .map_or(rest.is_empty(), |port| port.bytes().all(|b| b.is_ascii_digit())),
        None => false,
    };
    if port_ok && hosts.allows(authority.host()) {
        Ok(())
    } else {
        Err(foreign())
    }
}

fn shown(value: &HeaderValue) -> String {
    echo(&String::from_utf8_lossy(value.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                axum::http::HeaderName::from_str(name).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    fn app_hosts() -> AllowedHosts {
        AllowedHosts::new(["myapp.azurewebsites.net", "keyflip.contoso.com"])
    }

    fn check_host(host: &str) -> Result<(), Refusal> {
        check(&headers(&[("host", host)]), &Uri::from_static("/"), &app_hosts())
    }

    #[test]
    fn loopback_names_and_addresses_are_answered_on_any_port() {
        for host in [
            "localhost",
            "LocalHost:7071",
            "localhost.",
            "api.localhost:80",
            "127.0.0.1",
            "127.0.0.1:61234",
            "127.8.9.10",
            "[::1]",
            "[::1]:8080",
        ] {
            assert_eq!(check_host(host), Ok(()), "{host}");
        }
    }

    #[test]
    fn the_app_s_own_and_listed_names_are_answered_ignoring_case_and_port() {
        for host in [
            "myapp.azurewebsites.net",
            "MyApp.AzureWebsites.NET:443",
            "myapp.azurewebsites.net.",
            "keyflip.contoso.com:8443",
        ] {
            assert_eq!(check_host(host), Ok(()), "{host}");
        }
    }

    #[test]
    fn every_other_host_is_misdirected_and_names_the_setting() {
        for host in [
            "evil.example",
            "evil.example:7071",
            "localhost.evil.example",
            "127.0.0.1.evil.example",
            "myapp.azurewebsites.net.evil.example",
            "other.azurewebsites.net",
            "0.0.0.0",
            "10.0.0.5",
            "[::2]:80",
            "127.1",
            "user@localhost",
            "localhost:port",
            "",
        ] {
            let refusal = check_host(host)
                .err()
                .unwrap_or_else(|| panic!("{host} answered"));
            assert_eq!(refusal.status(), StatusCode::MISDIRECTED_REQUEST, "{host}");
            assert!(refusal.to_string().contains("KEYFLIP_ALLOWED_HOSTS"), "{refusal}");
        }
        assert!(
            !AllowedHosts::loopback_only().allows("myapp.azurewebsites.net"),
            "only what is configured"
        );
    }

    #[test]
    fn no_host_and_two_hosts_are_refused() {
        let uri = Uri::from_static("/");
        assert_eq!(check(&HeaderMap::new(), &uri, &app_hosts()), Err(Refusal::NoHost));
        let two = headers(&[("host", "localhost"), ("host", "evil.example")]);
        assert_eq!(check(&two, &uri, &app_hosts()), Err(Refusal::SeveralHosts));
    }

    #[test]
    fn an_absolute_form_target_must_name_an_allowed_host_too() {
        let local = headers(&[("host", "localhost")]);
        let foreign = Uri::from_static("http://evil.example/api/rotate/kv/s");
        assert!(matches!(
            check(&local, &foreign, &app_hosts()),
            Err(Refusal::ForeignHost(host)) if host == "evil.example"
        ));
        let loopback = Uri::from_static("http://127.0.0.1:7071/");
        assert_eq!(check(&local, &loopback, &app_hosts()), Ok(()));
        assert_eq!(check(&HeaderMap::new(), &loopback, &app_hosts()), Ok(()));
    }

    #[test]
    fn browsers_are_refused_by_origin_or_fetch_metadata() {
        for pairs in [
            &[("host", "localhost"), ("origin", "https://evil.example")][..],
            &[("host", "localhost"), ("origin", "null")],
            &[("host", "localhost"), ("sec-fetch-site", "cross-site")],
            &[("host", "localhost"), ("sec-fetch-site", "same-site")],
            &[("host", "localhost"), ("sec-fetch-site", "same-origin")],
            &[("host", "evil.example"), ("origin", "http://evil.example")],
        ] {
            let refusal = check(&headers(pairs), &Uri::from_static("/"), &app_hosts()).unwrap_err();
            assert_eq!(refusal.status(), StatusCode::FORBIDDEN, "{pairs:?}");
            assert!(refusal.to_string().contains("browser"), "{refusal}");
        }
        let typed = headers(&[("host", "localhost"), ("sec-fetch-site", "None")]);
        assert_eq!(check(&typed, &Uri::from_static("/"), &app_hosts()), Ok(()));
    }

    #[test]
    fn quoted_values_are_cut_and_escaped() {
        let long = format!("https://{}.example", "a".repeat(500));
        let refusal = check(
            &headers(&[("host", "localhost"), ("origin", &long)]),
            &Uri::from_static("/"),
            &app_hosts(),
        )
        .unwrap_err();
        assert!(refusal.to_string().len() < 500, "{refusal}");
        let mut tabbed = HeaderMap::new();
        tabbed.insert(HOST, HeaderValue::from_static("evil\tname"));
        let refusal = check(&tabbed, &Uri::from_static("/"), &app_hosts()).unwrap_err();
        assert!(refusal.to_string().contains("evil\\tname"), "{refusal}");
    }
}
