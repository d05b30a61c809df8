//! A destination kind's own settings, as written in one `[destinations.NAME]` table but
//! without TOML: the configuration reader hands each kind a [`Table`] of the entries it
//! did not recognise as common policy keys, and the kind's `parse` reads them with the
//! typed accessors below.
//!
//! Every accessor reports what is wrong as a [`Problem`] carrying the byte offset of the
//! offending key or value, so the configuration reader can print `file:line:column` for
//! every key; a missing required key points at the table's header. Messages never
//! contain a secret's value nor a URL (URLs often carry tokens). Keys a kind never reads
//! are reported by the reader as unknown settings.
//!
//! The value syntaxes shared with the rest of `herald.toml` (durations, secret
//! references, did-you-mean) live here too, so there is one definition of each.

pub mod secret;
#[cfg(test)]
mod tests;

use std::fmt;
use std::num::NonZeroU32;
use std::time::Duration;

use herald_core::RateLimit;

/// Examples shown after a bad duration.
pub const DURATION_HINT: &str = r#"write e.g. "250ms", "2s", "10m" or "24h""#;

/// The longest duration accepted anywhere: longer ones are typos, not policies.
pub const MAX_DURATION: Duration = Duration::from_secs(366 * 24 * 3600);

/// A setting's value.
#[derive(Clone, PartialEq)]
pub enum Value {
    /// A string.
    String(String),
    /// A whole number.
    Integer(i64),
    /// A floating-point number.
    Float(f64),
    /// `true` or `false`.
    Bool(bool),
    /// A date and time, as written.
    Datetime(String),
    /// An array, each item with its offset.
    Array(Vec<Item>),
    /// A nested table, entries in file order.
    Table(Vec<Entry>),
}

impl Value {
    /// The value's type in words, for messages (`string`, `integer`, ...).
    pub fn type_str(&self) -> &'static str {
        match self {
            Value::String(_) => "string",
            Value::Integer(_) => "integer",
            Value::Float(_) => "float",
            Value::Bool(_) => "boolean",
            Value::Datetime(_) => "datetime",
            Value::Array(_) => "array",
            Value::Table(_) => "table",
        }
    }
}

/// Shows the structure but not the strings: they may be secrets.
impl fmt::Debug for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::String(text) => write!(f, "String(<{} chars>)", text.chars().count()),
            Value::Integer(n) => write!(f, "Integer({n})"),
            Value::Float(x) => write!(f, "Float({x})"),
            Value::Bool(b) => write!(f, "Bool({b})"),
            Value::Datetime(d) => write!(f, "Datetime({d})"),
            Value::Array(items) => f.debug_list().entries(items).finish(),
            Value::Table(entries) => f.debug_list().entries(entries).finish(),
        }
    }
}

/// An array item and where it starts in the file.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    /// The item.
    pub value: Value,
    /// Byte offset of the item.
    pub at: usize,
}

/// One `key = value` entry and where its parts start in the file.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// The key, unquoted.
    pub key: String,
    /// Byte offset of the key.
    pub key_at: usize,
    /// The value.
    pub value: Value,
    /// Byte offset of the value.
    pub value_at: usize,
}

/// One problem with a setting, located by byte offset into the configuration text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Byte offset of the offending key or value (the table header for a missing key).
    pub at: usize,
    /// The key concerned, relative to the destination table (`url`, `headers.X-Team`).
    pub key: String,
    /// What is wrong and what to do about it. Never contains a secret.
    pub message: String,
}

/// A string entry of a nested table such as the webhook's `headers`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StringEntry {
    /// The key, unquoted.
    pub key: String,
    /// Byte offset of the key.
    pub key_at: usize,
    /// The value; `None` when it is not a string (already reported).
    pub value: Option<String>,
    /// Byte offset of the value.
    pub value_at: usize,
}

/// A destination table's kind-specific entries, read by the kind's `parse`.
///
/// Accessors mark the key as read, report a wrong value as a [`Problem`] and return
/// `None` for it; a kind reads every key it knows, then returns `None` unless
/// [`Table::ok`].
pub struct Table<'a> {
    /// The entries, in file order.
    entries: Vec<Entry>,
    /// Which entries a kind has read, by index into `entries`.
    read: Vec<bool>,
    /// Keys whose value the reader already reported as unusable.
    reported: Vec<String>,
    /// Byte offset of the table's header, where a missing key is reported.
    header_at: usize,
    /// Looks up environment variables for `${VAR}` secrets.
    env: &'a dyn Fn(&str) -> Option<String>,
    /// What is wrong so far.
    problems: Vec<Problem>,
    /// The values of the secrets read, for redaction.
    secrets: Vec<String>,
    /// The secrets written inline (not `${ENV}` or `file:`): key and value offset.
    inline: Vec<(String, usize)>,
}

/// Lists keys and problems; values are left out since they may be secrets.
impl fmt::Debug for Table<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let keys: Vec<&str> = self.entries.iter().map(|e| e.key.as_str()).collect();
        f.debug_struct("Table")
            .field("keys", &keys)
            .field("header_at", &self.header_at)
            .field("problems", &self.problems)
            .finish_non_exhaustive()
    }
}

impl<'a> Table<'a> {
    /// A table of `entries` (file order) whose header starts at `header_at`; `env`
    /// looks up the variables of `${VAR}` secrets.
    pub fn new(
        entries: Vec<Entry>,
        header_at: usize,
        env: &'a dyn Fn(&str) -> Option<String>,
    ) -> Table<'a> {
        let read = vec![false; entries.len()];
        Table {
            entries,
            read,
            reported: Vec::new(),
            header_at,
            env,
            problems: Vec::new(),
            secrets: Vec::new(),
            inline: Vec::new(),
        }
    }

    /// The values of every secret read so far: what herald must never repeat.
    pub fn secrets(&self) -> &[String] {
        &self.secrets
    }

    /// Records `value` as a secret derived from the ones read (an encoded credential
    /// such as `base64(email:token)`): an echo of it gives the secret away as well.
    pub fn derived_secret(&mut self, value: String) {
        self.secrets.push(value);
    }

    /// The secrets written inline in the file, as key and byte offset of the value:
    /// `check-config` suggests `${ENV}` or `file:` for them.
    pub fn inline_secrets(&self) -> &[(String, usize)] {
        &self.inline
    }

    /// Records that the reader already reported `key`'s value as unusable (an integer
    /// too large, say): the key counts as present, accessors return `None` for it
    /// without a second message, and [`Table::ok`] is false.
    pub fn already_reported(&mut self, key: &str) {
        self.reported.push(key.to_owned());
    }

    /// Whether `key` is written in the table (does not mark it read).
    pub fn has(&self, key: &str) -> bool {
        self.entries.iter().any(|e| e.key == key) || self.is_reported(key)
    }

    /// The raw entry for `key`, marked read.
    pub fn entry(&mut self, key: &str) -> Option<&Entry> {
        let index = self.entries.iter().position(|e| e.key == key)?;
        self.read[index] = true;
        self.entries.get(index)
    }

    /// The keys no accessor read, with their offsets, in file order: the reader reports
    /// them as unknown settings.
    pub fn unread(&self) -> Vec<(&str, usize)> {
        self.entries
            .iter()
            .zip(&self.read)
            .filter(|(_, read)| !**read)
            .map(|(e, _)| (e.key.as_str(), e.key_at))
            .collect()
    }

    /// Whether no problem was reported (by an accessor, the kind or the reader).
    pub fn ok(&self) -> bool {
        self.problems.is_empty() && self.reported.is_empty()
    }

    /// The problems reported so far, in the order found.
    pub fn problems(&self) -> &[Problem] {
        &self.problems
    }

    /// Reports `message` about `key`, at its value (at the header if it is absent).
    pub fn problem(&mut self, key: &str, message: impl Into<String>) {
        let at = self.entries.iter().find(|e| e.key == key).map_or(self.header_at, |e| e.value_at);
        self.problem_at(at, key, message);
    }

    /// Reports `message` about `key` (dotted for nested keys: `headers.X-Team`) at byte
    /// offset `at`.
    pub fn problem_at(&mut self, at: usize, key: &str, message: impl Into<String>) {
        self.problems.push(Problem { at, key: key.to_owned(), message: message.into() });
    }

    /// Reports `key` as missing, at the header, unless it is written; `example` shows a
    /// valid line (`e.g. channel = "C0123456789"`). True if the key is written.
    pub fn require(&mut self, key: &str, example: &str) -> bool {
        if self.has(key) {
            return true;
        }
        let message = format!("missing `{key}`; add {example}");
        self.problem_at(self.header_at, key, message);
        false
    }

    /// A string.
    pub fn string(&mut self, key: &str) -> Option<String> {
        let (value, at) = self.value(key)?;
        match value {
            Value::String(text) => Some(text),
            other => {
                self.problem_at(at, key, format!("expected a string, found {}", other.type_str()));
                None
            }
        }
    }

    /// A string that must be given; `example` as for [`Table::require`].
    pub fn required_string(&mut self, key: &str, example: &str) -> Option<String> {
        self.require(key, example).then(|| self.string(key)).flatten()
    }

    /// An `http`/`https` URL with a host, as written. Messages never repeat the URL: it
    /// may carry a token.
    pub fn url(&mut self, key: &str) -> Option<String> {
        let at = self.value_at(key);
        let text = self.string(key)?;
        let hint = "write a full URL, e.g. \"https://hooks.example/herald\"";
        let problem = match reqwest::Url::parse(&text) {
            // The parser's messages describe the shape, never the text.
            Err(e) => format!("not a valid URL ({e}); {hint}"),
            Ok(u) if u.scheme() != "http" && u.scheme() != "https" => {
                format!(
                    "the URL must start with http:// or https://, not {}://; {hint}",
                    u.scheme()
                )
            }
            Ok(u) if u.host_str().is_none_or(str::is_empty) => {
                format!("the URL has no host; {hint}")
            }
            Ok(u) => {
                // `https://user:password@host/`: the password is a secret written inline.
                if let Some(password) = u.password() {
                    self.inline.push((key.to_owned(), at));
                    self.secrets.push(password.to_owned());
                }
                return Some(text);
            }
        };
        self.problem_at(at, key, problem);
        None
    }

    /// A URL that must be given; `example` as for [`Table::require`].
    pub fn required_url(&mut self, key: &str, example: &str) -> Option<String> {
        self.require(key, example).then(|| self.url(key)).flatten()
    }

    /// A non-empty array of strings, each with its offset (`to = ["a@x", "b@y"]`); a
    /// single string is taken as a list of one.
    pub fn string_list(&mut self, key: &str) -> Option<Vec<(String, usize)>> {
        let (value, at) = self.value(key)?;
        let items = match value {
            Value::String(text) => return Some(vec![(text, at)]),
            Value::Array(items) => items,
            other => {
                let found = other.type_str();
                self.problem_at(at, key, format!("expected an array of strings, found {found}"));
                return None;
            }
        };
        if items.is_empty() {
            self.problem_at(at, key, "the list is empty; give at least one");
            return None;
        }
        let mut list = Vec::with_capacity(items.len());
        let mut bad = false;
        for item in items {
            match item.value {
                Value::String(text) => list.push((text, item.at)),
                other => {
                    let found = other.type_str();
                    self.problem_at(item.at, key, format!("expected a string, found {found}"));
                    bad = true;
                }
            }
        }
        (!bad).then_some(list)
    }

    /// A secret: `"${ENV_VAR}"`, `"file:/path"` (surrounding whitespace trimmed) or the
    /// value inline, resolved.
    pub fn secret(&mut self, key: &str) -> Option<String> {
        self.checked_secret(key, |_| Ok(()))
    }

    /// A secret that must be given; `example` as for [`Table::require`].
    pub fn required_secret(&mut self, key: &str, example: &str) -> Option<String> {
        self.require(key, example).then(|| self.secret(key)).flatten()
    }

    /// A secret whose resolved value must pass `check`; `check` says what is wrong
    /// with it as a predicate (`is not a Standard Webhooks signing secret: ...`), and
    /// the message names where the value came from, never the value.
    pub fn checked_secret(
        &mut self,
        key: &str,
        check: impl FnOnce(&str) -> Result<(), String>,
    ) -> Option<String> {
        let at = self.value_at(key);
        let raw = self.string(key)?;
        self.resolve_secret(key, &raw, at, check)
    }

    /// A value that may be kept apart like a secret (`${ENV}`, `file:` or inline) but is
    /// not one (a CA certificate): resolved and checked the same way, neither redacted
    /// nor warned about when inline.
    pub fn checked_reference(
        &mut self,
        key: &str,
        check: impl FnOnce(&str) -> Result<(), String>,
    ) -> Option<String> {
        let at = self.value_at(key);
        let raw = self.string(key)?;
        let checked = secret::resolve(&raw, self.env).and_then(|value| match check(&value) {
            Ok(()) => Ok(value),
            Err(why) => Err(format!("{} {why}", secret::source(&raw))),
        });
        checked.map_err(|message| self.problem_at(at, key, message)).ok()
    }

    /// Resolves `raw`, the text of a secret found at `at` under `key` (a nested value
    /// such as a header), records it for redaction and reports it if unusable.
    pub fn secret_text(&mut self, key: &str, raw: &str, at: usize) -> Option<String> {
        self.resolve_secret(key, raw, at, |_| Ok(()))
    }

    fn resolve_secret(
        &mut self,
        key: &str,
        raw: &str,
        at: usize,
        check: impl FnOnce(&str) -> Result<(), String>,
    ) -> Option<String> {
        if secret::is_inline(raw) {
            self.inline.push((key.to_owned(), at));
        }
        let resolved = secret::resolve(raw, self.env);
        if let Ok(value) = &resolved {
            // Redacted even when the check below refuses it: it is still a secret.
            self.secrets.push(value.clone());
        }
        let checked = resolved.and_then(|value| match check(&value) {
            Ok(()) => Ok(value),
            Err(why) => Err(format!("{} {why}", secret::source(raw))),
        });
        match checked {
            Ok(value) => Some(value),
            Err(message) => {
                self.problem_at(at, key, message);
                None
            }
        }
    }

    /// A duration longer than zero and at most a year (`"250ms"`, `"10m"`, `"1h30m"`).
    pub fn duration(&mut self, key: &str) -> Option<Duration> {
        let (value, at) = self.value(key)?;
        match check_duration(&value, false) {
            Ok(duration) => Some(duration),
            Err(message) => {
                self.problem_at(at, key, message);
                None
            }
        }
    }

    /// A rate limit `"COUNT/PERIOD"` (`"50/m"`, `"1/s"`).
    pub fn rate_limit(&mut self, key: &str) -> Option<RateLimit> {
        let at = self.value_at(key);
        let text = self.string(key)?;
        match parse_rate_limit(&text) {
            Ok(limit) => Some(limit),
            Err(message) => {
                self.problem_at(at, key, message);
                None
            }
        }
    }

    /// One of `choices`, with a did-you-mean for a near miss.
    pub fn choice<'c>(&mut self, key: &str, choices: &[&'c str]) -> Option<&'c str> {
        let at = self.value_at(key);
        let text = self.string(key)?;
        if let Some(choice) = choices.iter().find(|c| **c == text) {
            return Some(choice);
        }
        let listed: Vec<String> = choices.iter().map(|c| format!("{c:?}")).collect();
        let message = match closest(&text, choices) {
            Some(close) => format!("unknown value {text:?}; did you mean {close:?}?"),
            None => format!("unknown value {text:?}; write one of {}", listed.join(", ")),
        };
        self.problem_at(at, key, message);
        None
    }

    /// `true` or `false`.
    pub fn bool(&mut self, key: &str) -> Option<bool> {
        let (value, at) = self.value(key)?;
        match value {
            Value::Bool(b) => Some(b),
            other => {
                let found = other.type_str();
                self.problem_at(at, key, format!("expected true or false, found {found}"));
                None
            }
        }
    }

    /// A whole number from 1 to `u32::MAX`.
    pub fn positive(&mut self, key: &str) -> Option<u32> {
        let (value, at) = self.value(key)?;
        match check_positive(&value) {
            Ok(n) => Some(n),
            Err(message) => {
                self.problem_at(at, key, message);
                None
            }
        }
    }

    /// A table of strings, such as the webhook's `headers`, in file order; `expected`
    /// describes it for a wrong type (`a table of header names to values`). Values that
    /// are not strings are reported and come back as `None`, so the kind can still
    /// check their keys.
    pub fn string_table(&mut self, key: &str, expected: &str) -> Option<Vec<StringEntry>> {
        let (value, at) = self.value(key)?;
        let Value::Table(entries) = value else {
            let found = value.type_str();
            self.problem_at(at, key, format!("expected {expected}, found {found}"));
            return None;
        };
        let mut res = Vec::with_capacity(entries.len());
        for entry in entries {
            let value = match entry.value {
                Value::String(text) => Some(text),
                other => {
                    let path = format!("{key}.{}", entry.key);
                    let found = other.type_str();
                    self.problem_at(
                        entry.value_at,
                        &path,
                        format!("expected a string, found {found}"),
                    );
                    None
                }
            };
            res.push(StringEntry {
                key: entry.key,
                key_at: entry.key_at,
                value,
                value_at: entry.value_at,
            });
        }
        Some(res)
    }

    /// The value of `key` and its offset, marked read; `None` if absent or already
    /// reported.
    fn value(&mut self, key: &str) -> Option<(Value, usize)> {
        if self.is_reported(key) {
            return None;
        }
        self.entry(key).map(|e| (e.value.clone(), e.value_at))
    }

    /// Where `key`'s value starts, or the header if it is absent.
    fn value_at(&self, key: &str) -> usize {
        self.entries.iter().find(|e| e.key == key).map_or(self.header_at, |e| e.value_at)
    }

    fn is_reported(&self, key: &str) -> bool {
        self.reported.iter().any(|k| k == key)
    }
}

/// Checks a duration value: a string with a unit, at most [`MAX_DURATION`], zero only if
/// `allow_zero`. The error says what is wrong in words.
///
/// # Errors
/// The message for a value that is not such a duration.
pub fn check_duration(value: &Value, allow_zero: bool) -> Result<Duration, String> {
    match value {
        Value::String(text) => check_duration_text(text, allow_zero),
        Value::Integer(_) | Value::Float(_) => {
            Err(format!("a duration is a string with a unit; {DURATION_HINT}"))
        }
        other => Err(format!("expected a duration, found {}; {DURATION_HINT}", other.type_str())),
    }
}

/// Checks a duration string, as [`check_duration`].
///
/// # Errors
/// The message for a string that is not such a duration.
pub fn check_duration_text(text: &str, allow_zero: bool) -> Result<Duration, String> {
    match parse_duration(text) {
        None => Err(format!("not a duration: {text:?}; {DURATION_HINT}")),
        Some(d) if d.is_zero() && !allow_zero => {
            Err(format!("must be longer than zero; {DURATION_HINT}"))
        }
        Some(d) if d > MAX_DURATION => Err(format!("{text:?} is longer than a year")),
        Some(d) => Ok(d),
    }
}

/// Checks a whole number from 1 to `u32::MAX`.
///
/// # Errors
/// The message for any other value.
pub fn check_positive(value: &Value) -> Result<u32, String> {
    match value {
        Value::Integer(n) if *n < 1 => Err(format!("must be at least 1, found {n}")),
        Value::Integer(n) => {
            u32::try_from(*n).map_err(|_| format!("too large: at most {}", u32::MAX))
        }
        Value::String(text) if text.parse::<i64>().is_ok() => {
            Err(format!("expected a number, found a string; write it without quotes: {text}"))
        }
        other => Err(format!("expected a whole number, found {}", other.type_str())),
    }
}

/// Parses a duration: one or more `<whole number><unit>` parts without spaces, units
/// Parses `"COUNT/PERIOD"`: `"10/s"`, `"100/m"`, `"1000/h"`, `"5/250ms"`.
pub fn parse_rate_limit(text: &str) -> Result<RateLimit, String> {
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

/// `ms`, `s`, `m`, `h`, `d` (`"250ms"`, `"10m"`, `"1h30m"`). `None` if it is not one.
pub fn parse_duration(text: &str) -> Option<Duration> {
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
pub fn format_duration(duration: Duration) -> String {
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

/// The candidate `word` was probably meant as, if one is close enough.
pub fn closest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
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
