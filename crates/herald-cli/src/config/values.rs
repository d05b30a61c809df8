//! Parsers for the value syntaxes of `herald.toml` (durations, rate limits, database URLs,
//! names) and small helpers for messages; durations and did-you-mean are shared with the
//! destination kinds in `herald_connectors::settings`. Each parser returns what is wrong in words.

use std::path::PathBuf;

use super::Database;

pub(super) use herald_connectors::settings::parse_rate_limit;

/// Parses `server.database`. Messages never repeat the URL: it may hold a password.
pub(super) fn parse_database(url: &str) -> Result<Database, String> {
    const FORMS: &str = r#"write "sqlite://herald.db" (relative to the working directory), "sqlite:///var/lib/herald/herald.db" (absolute) or "postgres://USER@HOST:5432/DATABASE" (shared by several nodes)"#;
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
        // Checked without connecting: `check-config` must work away from the database.
        herald_store::postgres::check_url(url)?;
        return Ok(Database::Postgres { url: url.to_string() });
    }
    Err(format!("unsupported database URL; {FORMS}"))
}

/// Checks `server.node_id`: a short printable name, as it appears in logs and tables.
pub(super) fn check_node_id(id: &str) -> Result<(), String> {
    const RULE: &str =
        "a node id is 1 to 128 printable characters without spaces, e.g. \"herald-a\"";
    if id.is_empty() || id.chars().count() > 128 {
        return Err(format!("{RULE}; found {} characters", id.chars().count()));
    }
    if id.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("{RULE}; {id:?} has a space or a control character"));
    }
    Ok(())
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
