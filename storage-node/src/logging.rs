//! Logging set-up shared by the `storage-node` and `gateway` binaries: `RUST_LOG` if set, else
//! the binary's default filter; to stderr (stdout is for command output such as `gateway admin
//! status --json`); no ANSI colour codes unless stderr is a terminal.
//!
//! `DMPSTORE_LOG_FORMAT=json` writes one JSON object per line instead (timestamp, level,
//! target, message and fields), for log collectors; `text` (the default) is for people.

/// The environment variable that picks the log format.
pub const LOG_FORMAT_VAR: &str = "DMPSTORE_LOG_FORMAT";

pub fn init(default_filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter);
    match std::env::var(LOG_FORMAT_VAR).as_deref() {
        Ok("json") => builder.json().flatten_event(true).init(),
        Ok("text") | Err(_) => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        Ok(other) => {
            builder.with_ansi(false).init();
            tracing::warn!(
                value = other,
                "unknown {LOG_FORMAT_VAR} (text or json): logging text"
            );
        }
    }
}
