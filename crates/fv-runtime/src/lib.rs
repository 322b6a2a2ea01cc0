//! Process glue shared by fv-server, fv-router and the binaries, so each of them does not carry
//! its own copy:
//!
//! * [`shutdown_signal`]: resolves on SIGTERM or Ctrl-C, for `serve(shutdown)`.
//! * [`config`]: reading a `.yaml`/`.yml`/`.json` config file with a size cap and parsing it
//!   into a [`serde_json::Value`], with line/column in syntax errors.
//! * [`schema`]: the one config mechanism (crate `fv-config`, re-exported) — serde structs
//!   deriving `JsonSchema` are checked key by key (paths, "did you mean", types, ranges),
//!   deserialized, and documented from the same schema. The app crates keep only their types
//!   and their cross-field rules.
//! * [`init_tracing`] and [`report_exit`]: a binary's logging setup and how its error becomes
//!   a message and an exit status ([`EXIT_CONFIG`] for a refused configuration).
//!
//! ```no_run
//! # #[derive(Debug)] struct BadConfig;
//! # impl std::fmt::Display for BadConfig {
//! #     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { f.write_str("bad") }
//! # }
//! # impl std::error::Error for BadConfig {}
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> { Ok(()) }
//! #[tokio::main]
//! async fn main() -> std::process::ExitCode {
//!     fv_runtime::init_tracing();
//!     fv_runtime::report_exit("my-server", run().await, |e| {
//!         fv_runtime::exit_code(e.is::<BadConfig>())
//!     })
//! }
//! ```
//!
//! This crate depends on no other fv-stream crate but `fv-config` (itself dependency-free).

pub mod config;
/// The one config mechanism (the `fv-config` crate), here for the app crates that use this one.
pub use fv_config as schema;

use std::error::Error;
use std::fmt;
use std::io::Write as _;
use std::process::ExitCode;

/// Exit status of a binary whose configuration was refused before anything was bound
/// (`EX_USAGE` in sysexits.h), so scripts can tell a bad config from a crash.
pub const EXIT_CONFIG: u8 = 64;

/// Exit status of a binary that failed for any other reason.
pub const EXIT_FAILURE: u8 = 1;

/// Resolves on SIGTERM or Ctrl-C; pass it to `Server::serve` / `Router::serve`.
///
/// A signal that cannot be listened for is logged once and then never fires, so the other
/// one still works.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::warn!(error = %e, "cannot listen for ctrl-c");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}

/// Installs a binary's log subscriber: the level comes from `RUST_LOG` (default `info`), and
/// logs go to stderr so stdout carries only what scripts read (`listening on ...`,
/// `--check-config` output).
///
/// Returns `false`, changing nothing, when a global subscriber is already installed.
pub fn init_tracing() -> bool {
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        // Colour codes only for a person at a terminal, not in collected log files.
        .with_ansi(std::io::stderr().is_terminal())
        // A failed log write (stderr closed: the log collector went away) must not take the
        // server down; by default the subscriber reports it on stderr, which panics.
        .log_internal_errors(false)
        .try_init()
        .is_ok()
}

/// Prints one line on stdout (e.g. `listening on ...`, which scripts and tests wait for)
/// without panicking when stdout is closed, as `println!` would.
pub fn announce(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// [`EXIT_CONFIG`] when `config_error`, else [`EXIT_FAILURE`].
pub fn exit_code(config_error: bool) -> ExitCode {
    ExitCode::from(if config_error {
        EXIT_CONFIG
    } else {
        EXIT_FAILURE
    })
}

/// Ends a binary: success is [`ExitCode::SUCCESS`]; an error is printed to stderr as
/// `program: error` (the `{:#}` form, which for `anyhow` lists every cause) and mapped to a
/// status by `classify`, usually an app crate's `exit_code`.
pub fn report_exit<E>(
    program: &str,
    result: Result<(), E>,
    classify: impl FnOnce(&(dyn Error + 'static)) -> ExitCode,
) -> ExitCode
where
    E: fmt::Display + AsRef<dyn Error + 'static>,
{
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Not `eprintln!`: a closed stderr must not turn an error exit into a panic.
            let _ = writeln!(std::io::stderr(), "{}", failure_line(program, &e));
            classify(e.as_ref())
        }
    }
}

/// The line [`report_exit`] prints.
fn failure_line(program: &str, error: &impl fmt::Display) -> String {
    format!("{program}: {error:#}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Refused;

    impl fmt::Display for Refused {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("config refused")
        }
    }

    impl Error for Refused {}

    fn classify(e: &(dyn Error + 'static)) -> ExitCode {
        exit_code(e.is::<Refused>())
    }

    #[test]
    fn exit_codes_tell_config_errors_apart() {
        assert_eq!(exit_code(true), ExitCode::from(64));
        assert_eq!(exit_code(false), ExitCode::from(1));
        let ok: Result<(), Box<dyn Error>> = Ok(());
        assert_eq!(report_exit("t", ok, classify), ExitCode::SUCCESS);
        let refused: Result<(), Box<dyn Error>> = Err(Box::new(Refused));
        assert_eq!(report_exit("t", refused, classify), ExitCode::from(64));
        let other: Result<(), Box<dyn Error>> = Err("disk on fire".into());
        assert_eq!(report_exit("t", other, classify), ExitCode::from(1));
    }

    #[test]
    fn failure_line_names_the_program() {
        assert_eq!(
            failure_line("stream-router", &Refused),
            "stream-router: config refused"
        );
    }

    #[test]
    fn init_tracing_installs_once() {
        // The first call in this test binary installs the subscriber; a second is a no-op
        // rather than a panic.
        let _ = init_tracing();
        assert!(!init_tracing());
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn shutdown_signal_resolves_on_sigterm() {
        use std::time::Duration;
        // A listener of our own first: from here on SIGTERM no longer ends the test process.
        let _guard = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("listen for SIGTERM");
        let mut task = tokio::spawn(shutdown_signal());
        let pid = std::process::id().to_string();
        // The task registers its listener when it first runs; signal until it has seen one.
        for _ in 0..400 {
            let sent = std::process::Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .expect("run kill");
            assert!(sent.success());
            if let Ok(joined) = tokio::time::timeout(Duration::from_millis(50), &mut task).await {
                joined.expect("shutdown_signal task");
                return;
            }
        }
        panic!("shutdown_signal never resolved on SIGTERM");
    }
}
