//! Test support shared by the kinds' unit tests: parse a destination table of string
//! values with a kind's parser.

use crate::settings::{Entry, Table, Value};
use crate::{ConnectorConfig, Kind};

/// Parses `pairs` (string values, `${VAR}` unresolvable) with `kind`'s parser: the
/// configuration, or the problems' messages (`key: message`) on failure.
pub(crate) fn parse_strings(
    kind: &Kind,
    pairs: &[(&str, &str)],
) -> Result<ConnectorConfig, Vec<String>> {
    let entries = pairs
        .iter()
        .enumerate()
        .map(|(i, (key, value))| Entry {
            key: (*key).to_owned(),
            key_at: 100 * (i + 1),
            value: Value::String((*value).to_owned()),
            value_at: 100 * (i + 1) + 10,
        })
        .collect();
    let env = |_: &str| None;
    let mut table = Table::new(entries, 1, &env);
    let parsed = (kind.parse)(&mut table);
    let mut problems: Vec<String> =
        table.problems().iter().map(|p| format!("{}: {}", p.key, p.message)).collect();
    for (key, _) in table.unread() {
        problems.push(format!("{key}: unknown setting"));
    }
    match parsed {
        Some(config) if problems.is_empty() => Ok(config),
        _ => Err(problems),
    }
}
