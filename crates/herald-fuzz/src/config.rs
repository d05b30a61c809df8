//! The `config` target: `herald.toml` through `Config::parse`, as `serve` and
//! `check-config` read it.
//!
//! Input: the file's text. `${VAR}` secrets resolve to a planted value. Properties: a
//! refusal lists problems that each name a line and column inside the file, in file
//! order, and say something; neither a problem nor an accepted configuration's `Debug`
//! output ever shows the planted secret.
//!
//! `file:` secrets are read from disk while parsing, so inputs naming anything but a
//! plain file name in the working directory are skipped: the fuzzer must not open
//! devices or FIFOs, whose reads may block.

use herald_cli::config::Config;

/// The value of every `${VAR}` (a URL for variables whose name says so), and the part of
/// it that must never be shown.
const PLANTED: &str = "PlantedS3cretFuzz0042";

/// Parses one file and checks its properties.
pub fn run(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if !reads_only_plain_files(&text) {
        return;
    }
    let env = |name: &str| {
        Some(if name.contains("URL") {
            format!("https://hooks.example.com/services/T0/B0/{PLANTED}")
        } else {
            format!("xoxb-{PLANTED}")
        })
    };
    let shown_inline = text.contains(PLANTED);
    match Config::parse(&text, "herald.toml", &env) {
        Ok(config) => {
            let debug = format!("{config:?}");
            assert!(shown_inline || !debug.contains(PLANTED), "Debug shows a secret: {debug}");
            for warning in config.warnings() {
                assert!(shown_inline || !warning.contains(PLANTED), "a warning shows a secret");
            }
            for (i, destination) in config.destinations.iter().enumerate() {
                let twice = config.destinations[..i].iter().any(|d| d.name == destination.name);
                assert!(!twice, "destination {:?} twice", destination.name);
            }
        }
        Err(errors) => {
            assert!(!errors.0.is_empty(), "a refusal without a problem");
            let lines = text.split('\n').count();
            let mut last = (0, 0);
            for error in &errors.0 {
                let position = location(&error.location, lines);
                assert!(position >= last, "problems out of order: {errors}");
                last = position;
                assert!(!error.message.trim().is_empty(), "a problem without words: {error:?}");
                let shown = error.to_string();
                assert!(
                    shown_inline || !shown.contains(PLANTED),
                    "a problem shows a secret: {shown}"
                );
            }
        }
    }
}

/// The line and column of `herald.toml:LINE:COLUMN`, checked to be inside the file.
fn location(location: &str, lines: usize) -> (usize, usize) {
    let mut parts = location.rsplitn(3, ':');
    let column = parts.next().and_then(|c| c.parse::<usize>().ok());
    let line = parts.next().and_then(|l| l.parse::<usize>().ok());
    let (Some(line), Some(column), Some("herald.toml")) = (line, column, parts.next()) else {
        panic!("a problem located at {location:?}, not at a line and column");
    };
    assert!((1..=lines).contains(&line) && column >= 1, "{location:?} is outside the file");
    (line, column)
}

/// Whether every `file:` reference the text may hold names a plain file in the working
/// directory. Strings are judged after TOML's escapes (`"fil\u0065:/dev/stdin"`), so a
/// text TOML cannot read is judged by its bytes, refusing any `file:` and any escape.
fn reads_only_plain_files(text: &str) -> bool {
    match toml::from_str::<toml::Table>(text) {
        Ok(table) => table.values().all(plain_files_only),
        Err(_) => !text.contains("file:") && !text.contains("\\u") && !text.contains("\\U"),
    }
}

fn plain_files_only(value: &toml::Value) -> bool {
    match value {
        toml::Value::String(text) => match text.trim().strip_prefix("file:") {
            Some(path) => !path.is_empty() && !path.contains('/') && !path.starts_with('.'),
            None => true,
        },
        toml::Value::Array(items) => items.iter().all(plain_files_only),
        toml::Value::Table(table) => table.values().all(plain_files_only),
        _ => true,
    }
}
