//! Parsers for the value syntaxes of `herald.toml` (durations, rate limits, database URLs,
//! names) and small helpers for messages; durations and did-you-mean are shared with the
//! destination kinds in `herald_connectors::settings`. Each parser returns what is wrong in words.

use std::num::NonZeroU32;
use std::path::PathBuf;

use herald_connectors::settings::{MAX_DURATION, parse_duration};
use herald_core::RateLimit;

use super::Database;

/// Parses `"COUNT/PERIOD"`: `"10/s"`, `"100/m"`, `"1000/h"`, `"5/250ms"`.
pub(super) fn parse_rate_limit(text: &str) -> Result<RateLimit, String> {
    const HINT: &str = r#"write e.g. "10/s", "100/m", "1000/h" or "5/250ms""#;
    let not_a_rate = || format!("not a rate limit: {text:?}; {HINT}");
    let Some((count, period)) = text.split_once('/') else {
        return Err(not_a_rate());
    };
    if count.is_empty() || !count.bytes().all(|b| b.is_ascii_digit()) {
        return Err(not_a_rate());
    }
    let count = count
        .parse::<u32>()
        .map_err(|_| format!("the count in {text:?} is too large (at most {})", u32::MAX))?;
    let Some(count) = NonZeroU32::new(count) else {
        return Err(format!("the count in {text:?} must be at least 1; {HINT}"));
    };
    // A bare unit means one of it: "s" is "1s".
    let period = if !period.is_empty() && period.bytes().all(|b| b.is_ascii_alphabetic()) {
        parse_duration(&format!("1{period}"))
    } else {
        parse_duration(period)
    };
    let Some(per) = period else {
        return Err(not_a_rate());
    };
    if per.is_zero() {
        return Err(format!("the period in {text:?} must be longer than zero; {HINT}"));
    }
    if per > MAX_DURATION {
        return Err(format!("the period in {text:?} is longer than a year; {HINT}"));
    }
    Ok(RateLimit { count, per })
}

/// Parses `server.database`. Messages never repeat the URL: it may hold a password.
pub(super) fn parse_database(url: &str) -> Result<Database, String> {
    const FORMS: &str = r#"write "sqlite://herald.db" (relative to the working directory) or "sqlite:///var/lib/herald/herald.db" (absolute)"#;
    if let Some(rest) = url.strip_prefix("sqlite:") {
        if rest.contains(":memory:") || rest.contains("mode=memory") {
            return Err(format!(
                "an in-memory SQLite database would lose every accepted broadcast on restart; \
                 herald needs a file: {FORMS}"
            ));
        }
        let Some(path) = rest.strip_prefix("//") else {
            return Err(format!("not an SQLite URL; {FORMS}"));
        };
        if path.is_empty() {
            return Err(format!("the SQLite URL names no file; {FORMS}"));
        }
        if path.contains('?') {
            return Err(format!("SQLite URL options (`?...`) are not supported; {FORMS}"));
        }
        return Ok(Database::Sqlite { path: PathBuf::from(path) });
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Err(format!("PostgreSQL is not supported yet by this build; {FORMS}"));
    }
    Err(format!("unsupported database URL; {FORMS}"))
}

/// Checks a destination or group name: `[a-z0-9][a-z0-9_-]*`, at most 64 characters.
pub(super) fn check_name(name: &str) -> Result<(), String> {
    const RULE: &str = "names are 1 to 64 characters of lowercase letters, digits, `-` and `_`, \
                        starting with a letter or digit";
    let mut bytes = name.bytes();
    let first_ok = bytes.next().is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    let rest_ok =
        bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if name.len() > 64 {
        Err(format!("name is {} characters long; {RULE}", name.chars().count()))
    } else if first_ok && rest_ok {
        Ok(())
    } else {
        Err(format!("invalid name {name:?}; {RULE}"))
    }
}

/// `` `a`, `b`, `c` ``.
pub(super) fn quoted_list<S: AsRef<str>>(items: &[S]) -> String {
    items.iter().map(|s| format!("`{}`", s.as_ref())).collect::<Vec<_>>().join(", ")
}
