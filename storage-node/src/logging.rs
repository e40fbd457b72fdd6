//! Logging set-up shared by the `storage-node` and `gateway` binaries: `RUST_LOG` if set, else
//! the binary's default filter; to stderr (stdout is for command output such as `gateway admin
//! status --json`); no ANSI colour codes unless stderr is a terminal.

pub fn init(default_filter: &str) {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter)),
        )
        .init();
}
