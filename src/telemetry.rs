//! Logging set-up (tracing-subscriber) and the one helper that prints an error with its causes.
//!
//! Under the Functions host (`FUNCTIONS_CUSTOMHANDLER_PORT` is set) every line goes to
//! **stdout** as JSON: the host copies stdout and stderr into Application Insights `traces`,
//! and records every stderr line as an error. Elsewhere the output is readable text: on stdout
//! when stdout is a terminal, on stderr otherwise, so the data a command prints on stdout can
//! be piped. JSON can also be asked for explicitly (`LogFormat::from_str("json")`, for a
//! command-line flag, e.g. in a container).
//!
//! The level filter comes from `RUST_LOG` (tracing-subscriber's `EnvFilter` syntax); without
//! it keyflip logs at `info` and its dependencies at `warn`.
//!
//! `main` calls [`init`] once, after the configuration is loaded; it also replaces the panic
//! hook with one that logs where a panic happened but never its message. This module never
//! logs a value itself; what a log line may hold is the caller's business (DESIGN.md I7).

use std::collections::HashMap;
use std::fmt;
use std::io::IsTerminal;
use std::str::FromStr;

use tracing_subscriber::EnvFilter;

/// The filter used when `RUST_LOG` is unset or empty.
pub const DEFAULT_FILTER: &str = "warn,keyflip=info";

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line, on stdout.
    Json,
    /// Human-readable lines.
    Text,
}

impl LogFormat {
    /// JSON under the Functions host (`FUNCTIONS_CUSTOMHANDLER_PORT` set and not empty), text
    /// otherwise.
    pub fn detect(vars: &HashMap<String, String>) -> Self {
        if under_functions_host(vars) {
            Self::Json
        } else {
            Self::Text
        }
    }
}

impl FromStr for LogFormat {
    type Err = TelemetryError;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        match raw.trim().to_ascii_lowercase().as_str() {
            "json" => Ok(Self::Json),
            "text" => Ok(Self::Text),
            _ => Err(TelemetryError::Format(raw.to_string())),
        }
    }
}

impl fmt::Display for LogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Json => "json",
            Self::Text => "text",
        })
    }
}

/// Why logging could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("log format '{0}' is unknown; expected json or text")]
    Format(String),
    #[error(
        "RUST_LOG='{value}' is not a valid filter ({source}); expected e.g. 'info' or 'warn,keyflip=debug'"
    )]
    Filter {
        value: String,
        source: tracing_subscriber::filter::ParseError,
    },
    #[error("logging is already set up: {0}")]
    AlreadySet(String),
}

/// Where the lines go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Stdout,
    Stderr,
}

fn under_functions_host(vars: &HashMap<String, String>) -> bool {
    vars.get("FUNCTIONS_CUSTOMHANDLER_PORT")
        .is_some_and(|port| !port.trim().is_empty())
}

/// JSON always goes to stdout; so does everything under the host, whatever the format.
fn choose_target(format: LogFormat, under_host: bool, stdout_is_terminal: bool) -> Target {
    if format == LogFormat::Json || under_host || stdout_is_terminal {
        Target::Stdout
    } else {
        Target::Stderr
    }
}

/// `RUST_LOG` when set and not empty, else [`DEFAULT_FILTER`].
fn env_filter(rust_log: Option<&str>) -> Result<EnvFilter, TelemetryError> {
    let directives = rust_log
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .unwrap_or(DEFAULT_FILTER);
    EnvFilter::builder()
        .parse(directives)
        .map_err(|source| TelemetryError::Filter {
            value: directives.to_string(),
            source,
        })
}

/// Installs the global subscriber. Call once, early in `main`.
pub fn init(format: LogFormat) -> Result<(), TelemetryError> {
    let vars: HashMap<String, String> = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect();
    let filter = env_filter(vars.get("RUST_LOG").map(String::as_str))?;
    let stdout_is_terminal = std::io::stdout().is_terminal();
    let target = choose_target(format, under_functions_host(&vars), stdout_is_terminal);
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let result = match (format, target) {
        (LogFormat::Json, _) => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .with_writer(std::io::stdout)
            .try_init(),
        (LogFormat::Text, Target::Stdout) => builder
            .with_ansi(stdout_is_terminal)
            .with_writer(std::io::stdout)
            .try_init(),
        (LogFormat::Text, Target::Stderr) => builder
            .with_ansi(std::io::stderr().is_terminal())
            .with_writer(std::io::stderr)
            .try_init(),
    };
    result.map_err(|e| TelemetryError::AlreadySet(e.to_string()))?;
    install_panic_hook();
    Ok(())
}

/// Replaces the default panic hook, which prints the panic's message: a message can quote
/// whatever the panicking code held, a key value included (a slicing panic prints the string it
/// sliced). keyflip logs where it panicked, never what the message said (DESIGN.md I7).
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let location = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_else(|| "an unknown place".into());
        tracing::error!(
            %location,
            "keyflip panicked (a bug: please report it with this line); the panic's message is not shown, as it could quote a key"
        );
    }));
}

/// An error and every cause under it, `outer: cause: root cause`.
///
/// azure_core's `Display` shows only the outermost context ("non-transport error occurred
/// which will not be retried"), so every log of an error prints this instead. A cause whose
/// text the chain already holds (errors that print their source themselves) is not repeated.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut chain = error.to_string();
    let mut cause = error.source();
    while let Some(current) = cause {
        let text = current.to_string();
        if !text.is_empty() && !chain.contains(&text) {
            chain.push_str(": ");
            chain.push_str(&text);
        }
        cause = current.source();
    }
    chain
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn json_under_the_functions_host_text_elsewhere() {
        assert_eq!(
            LogFormat::detect(&vars(&[("FUNCTIONS_CUSTOMHANDLER_PORT", "7071")])),
            LogFormat::Json
        );
        assert_eq!(LogFormat::detect(&vars(&[])), LogFormat::Text);
        assert_eq!(
            LogFormat::detect(&vars(&[("FUNCTIONS_CUSTOMHANDLER_PORT", " ")])),
            LogFormat::Text
        );
    }

    #[test]
    fn formats_can_be_asked_for_by_name() {
        assert_eq!("JSON".parse::<LogFormat>().unwrap(), LogFormat::Json);
        assert_eq!(" text".parse::<LogFormat>().unwrap(), LogFormat::Text);
        let err = "yaml".parse::<LogFormat>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "log format 'yaml' is unknown; expected json or text"
        );
        assert_eq!(LogFormat::Json.to_string(), "json");
    }

    #[test]
    fn nothing_goes_to_stderr_under_the_host_or_as_json() {
        for terminal in [true, false] {
            for format in [LogFormat::Json, LogFormat::Text] {
                assert_eq!(choose_target(format, true, terminal), Target::Stdout);
            }
            assert_eq!(choose_target(LogFormat::Json, false, terminal), Target::Stdout);
        }
        assert_eq!(choose_target(LogFormat::Text, false, true), Target::Stdout);
        assert_eq!(choose_target(LogFormat::Text, false, false), Target::Stderr);
    }

    #[test]
    fn the_filter_defaults_to_info_for_keyflip_and_warn_for_the_rest() {
        assert_eq!(
            env_filter(None).unwrap().to_string(),
            env_filter(Some(DEFAULT_FILTER)).unwrap().to_string()
        );
        assert_eq!(
            env_filter(Some("  ")).unwrap().to_string(),
            env_filter(None).unwrap().to_string()
        );
        assert!(env_filter(None).unwrap().to_string().contains("keyflip=info"));
        assert_eq!(env_filter(Some("debug")).unwrap().to_string(), "debug");
        let err = env_filter(Some("keyflip=loud")).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("RUST_LOG='keyflip=loud' is not a valid filter"),
            "{err}"
        );
    }

    #[derive(Debug, thiserror::Error)]
    #[error("{message}")]
    struct Layer {
        message: &'static str,
        #[source]
        source: Option<Box<Layer>>,
    }

    fn layer(message: &'static str, source: Option<Layer>) -> Layer {
        Layer {
            message,
            source: source.map(Box::new),
        }
    }

    #[test]
    fn error_chains_walk_every_source() {
        let root = layer("invalid peer certificate: UnknownIssuer", None);
        let e = layer(
            "retry policy expired",
            Some(layer("error sending request", Some(root))),
        );
        assert_eq!(
            error_chain(&e),
            "retry policy expired: error sending request: invalid peer certificate: UnknownIssuer"
        );
        assert_eq!(error_chain(&layer("alone", None)), "alone");
    }

    #[test]
    fn causes_already_printed_are_not_repeated() {
        let e = layer("request failed: timed out", Some(layer("timed out", None)));
        assert_eq!(error_chain(&e), "request failed: timed out");
    }

    #[test]
    fn azure_core_errors_show_their_cause() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "connection refused");
        let e = azure_core::Error::new(azure_core::error::ErrorKind::Io, io)
            .with_context("non-transport error occurred which will not be retried");
        let chain = error_chain(&e);
        assert!(chain.starts_with("non-transport error occurred"), "{chain}");
        assert!(chain.contains("connection refused"), "{chain}");
    }
}
