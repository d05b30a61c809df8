//! The secrets herald was configured with, and their removal from any text that leaves
//! the process: log lines, panic messages, attempt records and API answers.
//!
//! Connectors already keep secrets out of what they say (they never quote a URL or a
//! header they were given); this is the net under them, for the paths no connector
//! controls: a dependency's error text, a destination echoing a token back, a panic.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

/// Secrets shorter than this are not redacted: they would also match ordinary words,
/// and a secret that short is no protection anyway.
pub const MIN_SECRET_LEN: usize = 8;

/// Pieces of a credential URL (path segments, query values) shorter than this are not
/// secrets on their own: `services`, `workflows` and `api-version=2016-06-01` are not.
/// Every webhook token the kinds use is longer (Slack 24, Discord 68, Teams `sig` 43).
const MIN_URL_PART_LEN: usize = 16;

/// What replaces a secret.
pub const REDACTED: &str = "[redacted]";

/// A set of secret values and the rewriting of text that might contain them.
///
/// Cheap to clone (one shared list). `Debug` shows only how many secrets it holds.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Redactor {
    /// Longest first, so a secret containing another is replaced whole.
    secrets: Arc<[String]>,
}

impl fmt::Debug for Redactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Redactor").field("secrets", &self.secrets.len()).finish()
    }
}

impl Redactor {
    /// A redactor for `values` and the parts of each that are secret on their own (see
    /// [`parts`]). Values shorter than [`MIN_SECRET_LEN`] are left out.
    pub fn new<I, S>(values: I) -> Redactor
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut secrets: Vec<String> = values
            .into_iter()
            .flat_map(|value| parts(value.as_ref()))
            .filter(|part| part.len() >= MIN_SECRET_LEN)
            .collect();
        secrets.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        secrets.dedup();
        Redactor { secrets: secrets.into() }
    }

    /// Whether there is nothing to redact.
    pub fn is_empty(&self) -> bool {
        self.secrets.is_empty()
    }

    /// `text` with every secret replaced by [`REDACTED`]; borrowed when there was none.
    pub fn redact<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let mut res = Cow::Borrowed(text);
        for secret in self.secrets.iter() {
            if res.contains(secret.as_str()) {
                res = Cow::Owned(res.replace(secret.as_str(), REDACTED));
            }
        }
        res
    }

    /// Redacts `text` in place.
    pub fn scrub(&self, text: &mut String) {
        if let Cow::Owned(clean) = self.redact(text) {
            *text = clean;
        }
    }
}

/// Whether a header's name says its value is a credential (`Authorization`,
/// `X-Api-Key`, `X-Auth-Token`, `Cookie`, ...): such a value is a secret even when
/// written inline.
pub fn is_credential_header(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    ["auth", "token", "key", "secret", "password", "signature", "cookie", "session"]
        .iter()
        .any(|word| name.contains(word))
}

/// A secret value and the pieces of it that give the secret away on their own.
///
/// A URL that is a credential (a Slack or Teams webhook) is often quoted in part: an
/// HTTP library names the path, a proxy logs the query. So for a URL the path with its
/// query, the query alone and every long path segment or query value are secrets too. Percent-encoded and
/// JSON-escaped forms are covered where they differ from the value.
pub fn parts(value: &str) -> Vec<String> {
    let value = value.trim();
    let mut parts = vec![value.to_owned()];
    if let Ok(url) = reqwest::Url::parse(value)
        && url.has_host()
    {
        let path = url.path();
        let tail = match url.query() {
            Some(query) => {
                parts.push(query.to_owned());
                let values =
                    query.split('&').map(|pair| pair.split_once('=').map_or(pair, |(_, v)| v));
                parts.extend(values.filter(|v| v.len() >= MIN_URL_PART_LEN).map(str::to_owned));
                format!("{path}?{query}")
            }
            None => path.to_owned(),
        };
        parts.push(tail);
        let segments = path.split('/').filter(|s| s.len() >= MIN_URL_PART_LEN);
        parts.extend(segments.map(str::to_owned));
        if let Some(password) = url.password() {
            parts.push(password.to_owned());
        }
    }
    let escaped: Vec<String> = parts
        .iter()
        .flat_map(|part| {
            let json = serde_json::to_string(part).unwrap_or_default();
            let json = json.trim_matches('"').to_owned();
            let encoded = percent_encode(part);
            [json, encoded]
        })
        .filter(|form| !parts.contains(form))
        .collect();
    parts.extend(escaped);
    parts
}

/// `text` with every byte outside the URL-safe set percent-encoded (as a query value).
fn percent_encode(text: &str) -> String {
    let mut res = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            res.push(char::from(byte));
        } else {
            res.push_str(&format!("%{byte:02X}"));
        }
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_replaced_wherever_they_appear() {
        let redactor = Redactor::new(["s3cr3t-token-1", "short"]);
        assert_eq!(
            redactor.redact("Bearer s3cr3t-token-1 and again s3cr3t-token-1; short stays"),
            "Bearer [redacted] and again [redacted]; short stays"
        );
        assert!(matches!(redactor.redact("nothing here"), Cow::Borrowed(_)));
    }

    #[test]
    fn a_credential_url_is_redacted_in_whole_and_in_part() {
        let url = "https://hooks.slack.com/services/T0AAAAAAA/B0BBBBBBB/XyZxYzXyZxYzXyZxYz";
        let redactor = Redactor::new([url]);
        for text in [
            format!("error sending request for url ({url})"),
            "POST /services/T0AAAAAAA/B0BBBBBBB/XyZxYzXyZxYzXyZxYz failed".to_owned(),
            "token XyZxYzXyZxYzXyZxYz echoed".to_owned(),
        ] {
            let clean = redactor.redact(&text);
            assert!(!clean.contains("XyZxYzXyZxYzXyZxYz"), "{clean}");
            assert!(clean.contains(REDACTED), "{clean}");
        }
        // The host and the fixed parts of the path are not secrets and stay readable.
        let text = "hooks.slack.com/services is down";
        assert_eq!(redactor.redact(text), text);
    }

    #[test]
    fn query_signatures_and_escaped_forms_are_covered() {
        let url = "https://prod.westus.logic.azure.com/workflows/abc/triggers/manual/paths/invoke?api-version=2016-06-01&sig=AbC/dEf+GhI=jKlmnopqrstu";
        let redactor = Redactor::new([url]);
        let clean = redactor.redact("sig=AbC%2FdEf%2BGhI%3DjKlmnopqrstu in a log");
        assert!(!clean.contains("AbC%2FdEf"), "{clean}");
        assert_eq!(redactor.redact("api-version=2016-06-01"), "api-version=2016-06-01");
        let clean = redactor.redact(r#"{"password":"p\"quoted\"pass"}"#);
        assert!(clean.contains("quoted"), "nothing to redact: {clean}");
        let quoted = Redactor::new([r#"p"quoted"pass"#]);
        let clean = quoted.redact(r#"{"password":"p\"quoted\"pass"}"#);
        assert!(!clean.contains("quoted"), "{clean}");
    }

    #[test]
    fn debug_shows_no_secret() {
        let redactor = Redactor::new(["hunter2hunter2"]);
        assert_eq!(format!("{redactor:?}"), "Redactor { secrets: 1 }");
    }
}
