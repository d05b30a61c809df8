//! `[telemetry]`: where herald's traces go (OTLP over HTTP), under what service name,
//! with which credentials, and how many.
//!
//! The table is read through `settings::Table`, like a destination's kind-specific
//! keys, so header values are secrets in the same way as a webhook's headers.

use herald_connectors::redact;
use herald_connectors::settings::{self, Entry, Table, Value as SettingValue, secret};
use toml::de::DeTable;

use super::{Checker, in_file_order};
use crate::config::TelemetryConfig;

/// The settings of `[telemetry]`.
pub(super) const TELEMETRY_KEYS: &[&str] =
    &["otlp_endpoint", "service_name", "headers", "sample_ratio"];

/// The path OTLP/HTTP collectors take traces at, appended to a base endpoint.
const TRACES_PATH: &str = "/v1/traces";

/// Headers the exporter sets itself.
const RESERVED: &[&str] =
    &["content-type", "content-length", "content-encoding", "transfer-encoding", "host"];

impl Checker<'_> {
    /// The `[telemetry]` table whose header is at `header`; `None` when it has a problem
    /// (reported).
    pub(super) fn telemetry(
        &mut self,
        header: usize,
        table: &DeTable<'_>,
    ) -> Option<TelemetryConfig> {
        let before = self.diags.len();
        let mut entries = Vec::new();
        let mut unusable = Vec::new();
        for (key, value) in in_file_order(table) {
            let name = key.get_ref().as_ref();
            match self.setting(value, &format!("telemetry.{name}")) {
                Some(converted) => entries.push(Entry {
                    key: name.to_owned(),
                    key_at: key.span().start,
                    value: converted,
                    value_at: value.span().start,
                }),
                None => unusable.push(name),
            }
        }
        let mut table = Table::new(entries, header, self.env);
        for name in unusable {
            table.already_reported(name);
        }
        let traces_url = table
            .required_string("otlp_endpoint", "otlp_endpoint = \"http://127.0.0.1:4318\"")
            .and_then(|text| {
                let at = table.entry("otlp_endpoint").map_or(header, |e| e.value_at);
                traces_url(&text)
                    .map_err(|message| table.problem_at(at, "otlp_endpoint", message))
                    .ok()
            });
        let service_name = service_name(&mut table);
        let headers = headers(&mut table);
        let sample_ratio = sample_ratio(&mut table);
        self.secrets.extend(table.secrets().iter().cloned());
        for (key, at) in table.inline_secrets() {
            self.inline_secret(*at, &format!("telemetry.{key}"));
        }
        for problem in table.problems() {
            self.error(problem.at, &format!("telemetry.{}", problem.key), problem.message.clone());
        }
        for (name, at) in table.unread() {
            let message = match settings::closest(name, TELEMETRY_KEYS) {
                Some(close) => format!("unknown setting `{name}`; did you mean `{close}`?"),
                None => format!(
                    "unknown setting `{name}` in [telemetry]; valid settings: {}",
                    TELEMETRY_KEYS.join(", ")
                ),
            };
            self.error(at, &format!("telemetry.{name}"), message);
        }
        if self.diags.len() > before {
            return None;
        }
        Some(TelemetryConfig { traces_url: traces_url?, service_name, headers, sample_ratio })
    }
}

/// The traces URL for `otlp_endpoint`: a base endpoint gets `/v1/traces` appended to
/// its path (as the OpenTelemetry specification does for `OTEL_EXPORTER_OTLP_ENDPOINT`),
/// a URL already ending in `/v1/traces` is taken as it is. Messages never repeat the URL.
fn traces_url(text: &str) -> Result<String, String> {
    let hint = "write the collector's OTLP/HTTP address, e.g. \"http://127.0.0.1:4318\" \
                (/v1/traces is appended) or \"https://otel.example:4318/v1/traces\"";
    let mut url = reqwest::Url::parse(text).map_err(|e| {
        if text.contains("://") {
            format!("not a valid URL ({e}); {hint}")
        } else {
            format!("the URL must start with http:// or https://; {hint}")
        }
    })?;
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err(format!(
            "the URL must start with http:// or https:// (OTLP over HTTP; gRPC is not \
             supported), not {}://; {hint}",
            url.scheme()
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("the URL has no host; {hint}"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("the URL carries credentials (user:password@); give them as a header \
                    instead, e.g. headers = { Authorization = \"${OTEL_AUTH}\" }, which herald \
                    keeps out of its logs"
            .into());
    }
    if url.fragment().is_some() {
        return Err(format!("the URL has a #fragment, which HTTP never sends; {hint}"));
    }
    if !url.path().ends_with(TRACES_PATH) {
        let path = format!("{}{TRACES_PATH}", url.path().trim_end_matches('/'));
        url.set_path(&path);
    }
    Ok(url.into())
}

/// `service_name`: the `service.name` of every span (`herald`).
fn service_name(table: &mut Table<'_>) -> String {
    let at = table.entry("service_name").map(|e| e.value_at);
    let Some(name) = table.string("service_name") else {
        return "herald".into();
    };
    let at = at.unwrap_or_default();
    if name.trim().is_empty() {
        table.problem_at(at, "service_name", "the service name is empty; write e.g. \"herald\"");
    } else if name.chars().count() > 255 || name.chars().any(char::is_control) {
        table.problem_at(
            at,
            "service_name",
            "a service name is 1 to 255 characters without control characters, e.g. \
             \"herald-eu\"",
        );
    }
    name
}

/// `headers`: sent with every export. A credential header's value (by its name), and
/// any value given as `${ENV}` or `file:`, is a secret: resolved, redacted everywhere.
fn headers(table: &mut Table<'_>) -> Vec<(String, String)> {
    let mut headers: Vec<(String, String)> = Vec::new();
    let Some(entries) = table.string_table(
        "headers",
        "a table of header names to values, e.g. headers = { Authorization = \"${OTEL_AUTH}\" }",
    ) else {
        return headers;
    };
    for entry in entries {
        let name = entry.key.as_str();
        let path = format!("headers.{name}");
        if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
            let message = format!("{name:?} is not a valid header name (letters, digits and -)");
            table.problem_at(entry.key_at, &path, message);
        } else if RESERVED.contains(&name.to_ascii_lowercase().as_str()) {
            let message =
                format!("header `{name}` is set by the exporter and cannot be configured");
            table.problem_at(entry.key_at, &path, message);
        } else if headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(name)) {
            let message = format!("header `{name}` is given twice (header names ignore case)");
            table.problem_at(entry.key_at, &path, message);
        }
        let Some(raw) = entry.value else {
            continue;
        };
        let value = if redact::is_credential_header(name) || !secret::is_inline(&raw) {
            let Some(value) = table.secret_text(&path, &raw, entry.value_at) else {
                continue;
            };
            value
        } else {
            raw
        };
        if reqwest::header::HeaderValue::from_str(&value).is_err() {
            table.problem_at(
                entry.value_at,
                &path,
                "header values are visible ASCII without line breaks or control characters",
            );
        }
        headers.push((entry.key, value));
    }
    headers
}

/// `sample_ratio`: the share of traces kept, from 0 to 1 (`1`: all).
fn sample_ratio(table: &mut Table<'_>) -> f64 {
    const HINT: &str = "write a share of traces from 0 to 1, e.g. 0.1 to export one in ten";
    let Some(entry) = table.entry("sample_ratio") else {
        return 1.0;
    };
    let at = entry.value_at;
    let problem = match &entry.value {
        SettingValue::Float(x) if (0.0..=1.0).contains(x) => return *x,
        SettingValue::Integer(n) if (0..=1).contains(n) => return *n as f64,
        SettingValue::Float(x) => format!("must be from 0 to 1, found {x}; {HINT}"),
        SettingValue::Integer(n) => format!("must be from 0 to 1, found {n}; {HINT}"),
        SettingValue::String(text) => {
            format!("expected a number, found a string {text:?}; {HINT}, without quotes")
        }
        other => format!("expected a number, found {}; {HINT}", other.type_str()),
    };
    table.problem_at(at, "sample_ratio", problem);
    1.0
}
