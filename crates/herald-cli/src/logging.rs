//! Where herald's own words go, the log on stderr and panic messages, each passed through
//! the configured secrets' redactor first.
//!
//! The redactor is known only once the configuration is read, after logging started,
//! so it lives in a process-wide slot that [`set_secrets`] fills.

use std::io::{self, Write};
use std::sync::RwLock;

use herald_connectors::redact::Redactor;
use tracing_subscriber::filter::{FilterExt as _, filter_fn};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{Layer, Registry};

/// The secrets of the configuration in use; empty until [`set_secrets`].
static SECRETS: RwLock<Option<Redactor>> = RwLock::new(None);

/// From now on, every log line, panic message and [`redact`]ed text leaves out the
/// secrets `redactor` holds.
pub fn set_secrets(redactor: Redactor) {
    let mut slot = SECRETS.write().unwrap_or_else(std::sync::PoisonError::into_inner);
    *slot = Some(redactor);
}

/// `text` without any configured secret.
pub fn redact(text: &str) -> String {
    let slot = SECRETS.read().unwrap_or_else(std::sync::PoisonError::into_inner);
    match slot.as_ref() {
        Some(redactor) => redactor.redact(text).into_owned(),
        None => text.to_owned(),
    }
}

/// The layer that turns herald's spans into exported traces (`crate::telemetry`).
pub type TracesLayer = Box<dyn Layer<Registry> + Send + Sync>;

/// Starts logging to stderr (`RUST_LOG` overrides `default_filter`), with `traces`
/// beside it when `[telemetry]` is configured, and installs the panic hook; both redact.
///
/// herald's own spans exist for traces only: the log never shows them, so its lines
/// read the same with or without telemetry, and without it the spans are disabled at
/// their call sites (no layer wants them), which costs next to nothing.
pub fn init(default_filter: &str, traces: Option<TracesLayer>) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    let not_heralds_span =
        filter_fn(|meta| !(meta.is_span() && meta.target().starts_with("herald")));
    let log = tracing_subscriber::fmt::layer()
        .with_writer(|| Stderr)
        .with_filter(filter.and(not_heralds_span));
    tracing_subscriber::registry().with(traces).with(log).init();
    install_panic_hook(|text| {
        let _ = writeln!(io::stderr().lock(), "{text}");
    });
}

/// Replaces the panic hook with one that hands `sink` the usual report (thread,
/// location, message, backtrace when `RUST_BACKTRACE` asks for it), redacted.
fn install_panic_hook(sink: fn(&str)) {
    std::panic::set_hook(Box::new(move |info| {
        let thread = std::thread::current();
        let name = thread.name().unwrap_or("<unnamed>");
        let backtrace = std::backtrace::Backtrace::capture();
        let text = match backtrace.status() {
            std::backtrace::BacktraceStatus::Captured => {
                format!("thread '{name}' {info}\nstack backtrace:\n{backtrace}")
            }
            _ => format!(
                "thread '{name}' {info}\nnote: run with `RUST_BACKTRACE=1` to display a backtrace"
            ),
        };
        sink(&redact(&text));
    }));
}

/// Standard error, redacted. The formatter hands over one whole event per write, so a
/// secret is never split between two writes.
struct Stderr;

impl Write for Stderr {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        io::stderr().lock().write_all(redact(&text).as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        io::stderr().flush()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// What the test's panic hook was handed.
    static CAUGHT: Mutex<String> = Mutex::new(String::new());

    /// The slot and the hook are process-wide; this is the only unit test that sets
    /// either, and it puts the default hook back.
    #[test]
    fn log_lines_and_panic_messages_leave_the_secrets_out() {
        set_secrets(Redactor::new(["planted-secret-value"]));
        assert_eq!(redact("a planted-secret-value b"), "a [redacted] b");
        assert_eq!(redact("no secret here"), "no secret here");

        install_panic_hook(|text| {
            CAUGHT.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push_str(text);
        });
        let panicked = std::thread::Builder::new()
            .name("connector".into())
            .spawn(|| panic!("cannot parse the answer to planted-secret-value"))
            .map(|thread| thread.join().is_err());
        drop(std::panic::take_hook());
        assert!(matches!(panicked, Ok(true)));
        let caught = CAUGHT.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        assert!(caught.starts_with("thread 'connector' panicked at"), "{caught}");
        assert!(caught.contains("cannot parse the answer to [redacted]"), "{caught}");
        assert!(!caught.contains("planted-secret-value"), "{caught}");
    }
}
