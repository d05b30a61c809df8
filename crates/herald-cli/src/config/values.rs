//! Parsers for the value syntaxes of `herald.toml` (durations, rate limits, database URLs,
//! names) and small helpers for messages. Each parser returns what is wrong in words.

use std::num::NonZeroU32;
use std::path::PathBuf;
use std::time::Duration;

use herald_core::RateLimit;

use super::Database;

/// Examples shown after a bad duration.
pub(super) const DURATION_HINT: &str = r#"write e.g. "250ms", "2s", "10m" or "24h""#;

/// The longest duration accepted anywhere: longer ones are typos, not policies.
pub(super) const MAX_DURATION: Duration = Duration::from_secs(366 * 24 * 3600);

/// Parses a duration: one or more `<whole number><unit>` parts without spaces, units
/// `ms`, `s`, `m`, `h`, `d` (`"250ms"`, `"10m"`, `"1h30m"`). `None` if it is not one.
pub(super) fn parse_duration(text: &str) -> Option<Duration> {
    let mut rest = text;
    let mut total_ms: u64 = 0;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        if digits == 0 {
            return None;
        }
        let number: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let letters = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_alphabetic()).len();
        let unit_ms: u64 = match &rest[..letters] {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => return None,
        };
        rest = &rest[letters..];
        total_ms = total_ms.checked_add(number.checked_mul(unit_ms)?)?;
    }
    Some(Duration::from_millis(total_ms))
}

/// Writes a duration in the largest unit that is exact (`"10m"`, `"1500ms"`).
pub(super) fn format_duration(duration: Duration) -> String {
    let ms = duration.as_millis();
    if ms == 0 {
        "0s".to_owned()
    } else if ms.is_multiple_of(3_600_000) {
        format!("{}h", ms / 3_600_000)
    } else if ms.is_multiple_of(60_000) {
        format!("{}m", ms / 60_000)
    } else if ms.is_multiple_of(1_000) {
        format!("{}s", ms / 1_000)
    } else {
        format!("{ms}ms")
    }
}

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

/// The candidate `word` was probably meant as, if one is close enough.
pub(super) fn closest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let word = word.to_ascii_lowercase();
    candidates
        .iter()
        .map(|c| (edit_distance(&word, c), *c))
        .filter(|(d, c)| *d <= 2 && d * 3 <= c.len())
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Levenshtein distance, by characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = if ca == *cb { diagonal } else { 1 + diagonal.min(above).min(row[j]) };
            diagonal = above;
        }
    }
    row[b.len()]
}

/// `` `a`, `b`, `c` ``.
pub(super) fn quoted_list<S: AsRef<str>>(items: &[S]) -> String {
    items.iter().map(|s| format!("`{}`", s.as_ref())).collect::<Vec<_>>().join(", ")
}

/// A URL reduced to its scheme and host, for debug output (paths often carry tokens).
pub(super) fn redact_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(u) => match u.port() {
            Some(port) => format!("{}://{}:{port}/…", u.scheme(), u.host_str().unwrap_or("")),
            None => format!("{}://{}/…", u.scheme(), u.host_str().unwrap_or("")),
        },
        Err(_) => "<invalid>".to_owned(),
    }
}
