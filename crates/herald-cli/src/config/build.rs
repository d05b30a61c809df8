//! Walks the parsed TOML document, checks every value and collects every problem with the
//! byte offset of the offending key or value.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::time::Duration;

use herald_connectors::ConnectorConfig;
use herald_connectors::outbound::{self, Outbound};
use herald_connectors::redact::Redactor;
use herald_connectors::settings::{self, Entry, Item, Table, secret};
use herald_core::{FailureRate, OnUnknown};
use herald_engine::LaneSettings;
use toml::Spanned;
use toml::de::{DeString, DeTable, DeValue};

mod telemetry;
mod tokens;

use super::values;
use super::{Config, Database, DestinationConfig, RetentionConfig, ServerConfig};
use crate::tls::{TlsIdentity, TlsProblem};

/// A TOML key with its span.
type Key<'i> = Spanned<DeString<'i>>;
/// A TOML value with its span.
type Value<'i> = Spanned<DeValue<'i>>;

/// The top-level tables.
const TOP_LEVEL: &[&str] =
    &["server", "destinations", "groups", "retention", "outbound", "tokens", "telemetry"];
/// The settings of `[server]`.
const SERVER_KEYS: &[&str] = &[
    "listen",
    "database",
    "node_id",
    "shutdown_grace",
    "max_concurrent_requests",
    "request_timeout",
    "store_timeout",
    "submit_queue",
    "tls_cert",
    "tls_key",
    "max_body_bytes",
    "max_header_bytes",
    "header_read_timeout",
    "max_connections",
    "metrics_public",
];
/// The bounds of `server.max_header_bytes`: below, ordinary requests (a few cookies or a
/// long token) would be refused; above, hyper's read buffer is the limit anyway.
const HEADER_BYTES: std::ops::RangeInclusive<u32> = 1024..=256 * 1024;
/// The settings of `[retention]`.
const RETENTION_KEYS: &[&str] = &["delivered", "failed"];
/// The settings of `[outbound]`.
const OUTBOUND_KEYS: &[&str] = &["allow_networks"];
/// The settings every destination has, whatever its kind.
const COMMON_KEYS: &[&str] = &[
    "kind",
    "max_attempts",
    "backoff_base",
    "backoff_max",
    "max_age",
    "timeout",
    "rate_limit",
    "concurrency",
    "on_unknown",
    "dedupe",
    "circuit_failures",
    "circuit_failure_rate",
    "circuit_cool_down",
];

/// One problem, located by byte offset into the text.
#[derive(Debug)]
pub(super) struct Diag {
    /// Where in the text.
    pub(super) offset: usize,
    /// The dotted key concerned, or empty.
    pub(super) key: String,
    /// What is wrong and what to do.
    pub(super) message: String,
}

/// `origin:line:column` for a byte offset (1-based, columns in characters).
pub(super) fn location(text: &str, origin: &str, offset: usize) -> String {
    let (line, column) = line_column(text, offset);
    format!("{origin}:{line}:{column}")
}

/// The 1-based line and column (in characters) of a byte offset.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

/// Parses and checks a whole document; `kinds` are the destination kinds it may use
/// (`herald_connectors::KINDS`, or test kinds).
pub(super) fn parse(
    text: &str,
    origin: &str,
    env: &dyn Fn(&str) -> Option<String>,
    kinds: &[&'static herald_connectors::Kind],
) -> Result<Config, Vec<Diag>> {
    let (document, syntax_errors) = DeTable::parse_recoverable(text);
    if !syntax_errors.is_empty() {
        return Err(syntax(text, &syntax_errors));
    }
    let mut checker =
        Checker { diags: Vec::new(), env, kinds, secrets: Vec::new(), inline: Vec::new() };
    let mut config = checker.document(document.get_ref());
    if checker.diags.is_empty() {
        config.redactor = Redactor::new(&checker.secrets);
        checker.inline.sort_by_key(|d| d.offset);
        config.inline_secrets = checker
            .inline
            .into_iter()
            .map(|d| format!("{}: {}", location(text, origin, d.offset), d.message))
            .collect();
        Ok(config)
    } else {
        checker.diags.sort_by_key(|d| d.offset);
        Err(checker.diags)
    }
}

/// Syntax errors, in order, at most one per line: after the first error on a line the
/// parser's recovery tends to report echoes of it.
fn syntax(text: &str, errors: &[toml::de::Error]) -> Vec<Diag> {
    let mut errors: Vec<(usize, &str)> =
        errors.iter().map(|e| (e.span().map_or(0, |s| s.start), e.message())).collect();
    errors.sort_by_key(|(offset, _)| *offset);
    let mut last_line = 0;
    let mut diags = Vec::new();
    for (offset, message) in errors {
        let (line, _) = line_column(text, offset);
        if line == last_line {
            continue;
        }
        last_line = line;
        diags.push(Diag {
            offset,
            key: String::new(),
            message: format!("invalid TOML: {message}"),
        });
    }
    diags
}

/// Where PEM text came from, in words: a file, a variable or the setting itself.
fn pem_source(raw: &str) -> String {
    if raw.starts_with("file:") || raw.starts_with("${") {
        secret::source(raw)
    } else {
        "the inline PEM text".to_owned()
    }
}

/// `server.tls_cert` or `server.tls_key` as written, with where.
struct TlsSetting {
    /// The value: `file:/path`, `${VAR}` or inline PEM.
    raw: String,
    /// Where the key is (for "set without the other").
    key_at: usize,
    /// Where the value is (for problems with what it refers to).
    value_at: usize,
}

/// Collects problems while building the configuration.
struct Checker<'e> {
    diags: Vec<Diag>,
    env: &'e dyn Fn(&str) -> Option<String>,
    /// The kinds a destination may have; each reads its own keys.
    kinds: &'e [&'static herald_connectors::Kind],
    /// Every secret value read, for the redactor.
    secrets: Vec<String>,
    /// Secrets written inline, with what to do instead.
    inline: Vec<Diag>,
}

/// The entries of a table in file order (tables iterate sorted by key otherwise).
fn in_file_order<'t, 'i>(table: &'t DeTable<'i>) -> Vec<(&'t Key<'i>, &'t Value<'i>)> {
    let mut entries: Vec<_> = table.iter().collect();
    entries.sort_by_key(|(k, _)| k.span().start);
    entries
}

/// What a destination's `kind` turned out to be.
enum Kind {
    /// Not given.
    Missing,
    /// Given but unusable; already reported.
    Invalid,
    /// A kind this build has.
    Known(&'static herald_connectors::Kind),
}

impl Checker<'_> {
    fn error(&mut self, offset: usize, key: &str, message: impl Into<String>) {
        self.diags.push(Diag { offset, key: key.to_owned(), message: message.into() });
    }

    fn document(&mut self, root: &DeTable<'_>) -> Config {
        let mut config = Config::default();
        let mut destination_names = Vec::new();
        let mut groups = None;
        for (key, value) in in_file_order(root) {
            match key.get_ref().as_ref() {
                "server" => {
                    if let Some(table) = self.table(value, "server", "a [server] table") {
                        config.server = self.server(table);
                    }
                }
                "destinations" => {
                    (config.destinations, destination_names) = self.destinations(value);
                }
                "groups" => groups = Some(value),
                "retention" => {
                    if let Some(table) = self.table(value, "retention", "a [retention] table") {
                        config.retention = self.retention(table);
                    }
                }
                "outbound" => {
                    if let Some(table) = self.table(value, "outbound", "an [outbound] table") {
                        config.outbound = self.outbound(table);
                    }
                }
                "tokens" => config.tokens = self.tokens(value),
                "telemetry" => {
                    if let Some(table) = self.table(value, "telemetry", "a [telemetry] table") {
                        config.telemetry = self.telemetry(key.span().start, table);
                    }
                }
                _ => self.unknown_top_level(key, value),
            }
        }
        if let Some(value) = groups {
            config.groups = self.groups(value, &destination_names);
        }
        self.exposure(root, config.server.listen, !config.tokens.is_empty());
        config
    }

    fn unknown_top_level(&mut self, key: &Key<'_>, value: &Value<'_>) {
        let name = key.get_ref().as_ref();
        let layout = "herald.toml has [server], [destinations.NAME], [groups], [retention], \
                      [outbound], [[tokens]] and [telemetry]";
        let message = if SERVER_KEYS.contains(&name) {
            format!("unknown top-level key `{name}`; it belongs in the [server] table")
        } else if COMMON_KEYS.contains(&name) || self.kinds.iter().any(|k| k.keys.contains(&name)) {
            format!("unknown top-level key `{name}`; it belongs in a [destinations.NAME] table")
        } else if telemetry::TELEMETRY_KEYS.contains(&name) {
            format!("unknown top-level key `{name}`; it belongs in the [telemetry] table")
        } else if let Some(close) = settings::closest(name, TOP_LEVEL) {
            format!("unknown table `{name}`; did you mean [{close}]?")
        } else if value.get_ref().is_table() {
            format!("unknown table [{name}]; {layout}")
        } else {
            format!("unknown top-level key `{name}`; {layout}")
        };
        self.error(key.span().start, name, message);
    }

    /// `server.database`: a URL, or `${ENV}` / `file:` holding one (a PostgreSQL URL
    /// may carry a password, which is then a secret like any other).
    fn database(&mut self, value: &Value<'_>, path: &str) -> Option<Database> {
        let at = value.span().start;
        let raw = self.string(value, path)?;
        let url = if secret::is_inline(raw) {
            raw.to_owned()
        } else {
            match secret::resolve(raw, self.env) {
                Ok(url) => url,
                Err(message) => {
                    self.error(at, path, message);
                    return None;
                }
            }
        };
        let password = reqwest::Url::parse(&url)
            .ok()
            .and_then(|parsed| parsed.password().map(str::to_owned))
            .filter(|password| !password.is_empty());
        if let Some(password) = password {
            self.secrets.push(password);
            if secret::is_inline(raw) {
                self.inline_secret(at, path);
            }
        }
        match values::parse_database(&url) {
            Ok(database) => Some(database),
            Err(message) => {
                let message = if secret::is_inline(raw) {
                    message
                } else {
                    format!("{}: {message}", secret::source(raw))
                };
                self.error(at, path, message);
                None
            }
        }
    }

    /// Notes a secret written inline at `offset` under `key`.
    fn inline_secret(&mut self, offset: usize, key: &str) {
        self.inline.push(Diag {
            offset,
            key: key.to_owned(),
            message: format!(
                "{key} holds a secret written inline; anyone who can read herald.toml (or a \
                 copy in version control) can use it. Write \"${{ENV_VAR}}\" or \
                 \"file:/run/secrets/NAME\" instead"
            ),
        });
    }

    fn server(&mut self, table: &DeTable<'_>) -> ServerConfig {
        let mut server = ServerConfig::default();
        let (mut tls_cert, mut tls_key) = (None, None);
        for (key, value) in in_file_order(table) {
            let name = key.get_ref().as_ref();
            let path = format!("server.{name}");
            match name {
                "listen" => {
                    if let Some(text) = self.string(value, &path) {
                        match text.parse::<SocketAddr>() {
                            Ok(addr) => server.listen = addr,
                            Err(_) => self.error(
                                value.span().start,
                                &path,
                                format!(
                                    "{text:?} is not an IP address with a port; write e.g. \
                                     \"127.0.0.1:8080\" or \"[::]:8080\""
                                ),
                            ),
                        }
                    }
                }
                "database" => {
                    if let Some(database) = self.database(value, &path) {
                        server.database = database;
                    }
                }
                "node_id" => {
                    if let Some(text) = self.string(value, &path) {
                        match values::check_node_id(text) {
                            Ok(()) => server.node_id = Some(text.to_string()),
                            Err(message) => self.error(value.span().start, &path, message),
                        }
                    }
                }
                "shutdown_grace" => {
                    if let Some(grace) = self.duration(value, &path, true) {
                        server.shutdown_grace = grace;
                    }
                }
                "max_concurrent_requests" => {
                    if let Some(n) = self.positive(value, &path) {
                        server.max_concurrent_requests = n as usize;
                    }
                }
                "submit_queue" => {
                    if let Some(n) = self.positive(value, &path) {
                        server.submit_queue = n as usize;
                    }
                }
                "request_timeout" => {
                    if let Some(timeout) = self.duration(value, &path, false) {
                        server.request_timeout = timeout;
                    }
                }
                "store_timeout" => {
                    if let Some(timeout) = self.duration(value, &path, false) {
                        server.store_timeout = timeout;
                    }
                }
                "tls_cert" | "tls_key" => {
                    if let Some(text) = self.string(value, &path) {
                        let setting = TlsSetting {
                            raw: text.to_owned(),
                            key_at: key.span().start,
                            value_at: value.span().start,
                        };
                        if name == "tls_cert" {
                            tls_cert = Some(setting);
                        } else {
                            tls_key = Some(setting);
                        }
                    }
                }
                "max_body_bytes" => {
                    if let Some(n) = self.positive(value, &path) {
                        server.max_body_bytes = n as usize;
                    }
                }
                "max_header_bytes" => {
                    if let Some(n) = self.positive(value, &path) {
                        if HEADER_BYTES.contains(&n) {
                            server.max_header_bytes = n as usize;
                        } else {
                            self.error(
                                value.span().start,
                                &path,
                                format!(
                                    "must be from {} to {} bytes, found {n}; the default, \
                                     16384, fits long tokens and cookies",
                                    HEADER_BYTES.start(),
                                    HEADER_BYTES.end()
                                ),
                            );
                        }
                    }
                }
                "header_read_timeout" => {
                    if let Some(timeout) = self.duration(value, &path, false) {
                        server.header_read_timeout = timeout;
                    }
                }
                "max_connections" => {
                    if let Some(n) = self.positive(value, &path) {
                        server.max_connections = n as usize;
                    }
                }
                "metrics_public" => match value.get_ref() {
                    DeValue::Boolean(public) => server.metrics_public = *public,
                    other => self.error(
                        value.span().start,
                        &path,
                        format!(
                            "expected true or false, found {}; true lets anyone read /metrics \
                             without a token",
                            other.type_str()
                        ),
                    ),
                },
                _ => {
                    let message = match settings::closest(name, SERVER_KEYS) {
                        Some(close) => format!("unknown setting `{name}`; did you mean `{close}`?"),
                        None => format!(
                            "unknown setting `{name}` in [server]; valid settings: {}",
                            SERVER_KEYS.join(", ")
                        ),
                    };
                    self.error(key.span().start, &path, message);
                }
            }
        }
        server.tls = self.tls(tls_cert, tls_key);
        server
    }

    /// `server.tls_cert` and `server.tls_key`: both or neither; each read and parsed, and
    /// the key checked against the certificate.
    fn tls(&mut self, cert: Option<TlsSetting>, key: Option<TlsSetting>) -> Option<TlsIdentity> {
        let (cert, key) = match (cert, key) {
            (Some(cert), Some(key)) => (cert, key),
            (None, None) => return None,
            (Some(cert), None) => {
                self.error(
                    cert.key_at,
                    "server.tls_cert",
                    "tls_cert is set without tls_key; inbound TLS needs both, the certificate \
                     chain and its private key: add tls_key = \"file:/etc/herald/tls.key\" or \
                     remove tls_cert to serve plain HTTP",
                );
                return None;
            }
            (None, Some(key)) => {
                self.error(
                    key.key_at,
                    "server.tls_key",
                    "tls_key is set without tls_cert; inbound TLS needs both, the certificate \
                     chain and its private key: add tls_cert = \"file:/etc/herald/tls.crt\" or \
                     remove tls_key to serve plain HTTP",
                );
                return None;
            }
        };
        let cert_pem = self.pem(&cert, "server.tls_cert", "/etc/herald/tls.crt");
        let key_pem = self.pem(&key, "server.tls_key", "/etc/herald/tls.key");
        if let Some(pem) = &key_pem {
            // The private key is a secret; a line of it quoted anywhere gives part away.
            self.secrets.push(pem.clone());
            let body = pem.lines().filter(|line| !line.starts_with("-----"));
            self.secrets.extend(body.map(str::to_owned));
            if secret::is_inline(&key.raw) {
                self.inline_secret(key.value_at, "server.tls_key");
            }
        }
        let (cert_pem, key_pem) = (cert_pem?, key_pem?);
        let (cert_source, key_source) = (pem_source(&cert.raw), pem_source(&key.raw));
        let problems = match TlsIdentity::new(&cert_source, &cert_pem, &key_source, &key_pem) {
            Ok(identity) => return Some(identity),
            Err(problems) => problems,
        };
        for problem in problems {
            match problem {
                TlsProblem::Cert(message) => {
                    self.error(cert.value_at, "server.tls_cert", format!("{cert_source} {message}"))
                }
                TlsProblem::Key(message) => {
                    self.error(key.value_at, "server.tls_key", format!("{key_source} {message}"));
                }
            }
        }
        None
    }

    /// The PEM text a TLS setting refers to (`file:`, `${VAR}` or inline).
    fn pem(&mut self, setting: &TlsSetting, path: &str, example: &str) -> Option<String> {
        let raw = setting.raw.as_str();
        let reference = raw.starts_with("file:") || raw.starts_with("${");
        if !reference && !raw.contains("-----BEGIN") {
            let hint = if raw.starts_with('/') || raw.starts_with('.') {
                format!("to read the file, write \"file:{raw}\"")
            } else {
                format!("write e.g. \"file:{example}\"")
            };
            self.error(
                setting.value_at,
                path,
                format!("expected \"file:/path\", \"${{VAR}}\" or PEM text; {hint}"),
            );
            return None;
        }
        match secret::resolve(raw, self.env) {
            Ok(pem) => Some(pem),
            Err(message) => {
                self.error(setting.value_at, path, message);
                None
            }
        }
    }

    fn retention(&mut self, table: &DeTable<'_>) -> RetentionConfig {
        let mut retention = RetentionConfig::default();
        for (key, value) in in_file_order(table) {
            let name = key.get_ref().as_ref();
            let path = format!("retention.{name}");
            match name {
                "delivered" => {
                    if let Some(age) = self.duration(value, &path, false) {
                        retention.delivered = age;
                    }
                }
                "failed" => {
                    if let Some(age) = self.duration(value, &path, false) {
                        retention.failed = age;
                    }
                }
                _ => {
                    let message = match settings::closest(name, RETENTION_KEYS) {
                        Some(close) => format!("unknown setting `{name}`; did you mean `{close}`?"),
                        None => format!(
                            "unknown setting `{name}` in [retention]; valid settings: {} \
                             (how long terminal broadcasts are kept, e.g. \"7d\")",
                            RETENTION_KEYS.join(", ")
                        ),
                    };
                    self.error(key.span().start, &path, message);
                }
            }
        }
        retention
    }

    /// `[outbound]`: the networks destinations may reach besides the public internet.
    fn outbound(&mut self, table: &DeTable<'_>) -> Outbound {
        let mut networks = Vec::new();
        for (key, value) in in_file_order(table) {
            let name = key.get_ref().as_ref();
            let path = format!("outbound.{name}");
            if name != "allow_networks" {
                let message = match settings::closest(name, OUTBOUND_KEYS) {
                    Some(close) => format!("unknown setting `{name}`; did you mean `{close}`?"),
                    None => format!(
                        "unknown setting `{name}` in [outbound]; valid settings: {} (the \
                         private networks destinations may reach, e.g. [\"10.20.0.0/16\"])",
                        OUTBOUND_KEYS.join(", ")
                    ),
                };
                self.error(key.span().start, &path, message);
                continue;
            }
            let DeValue::Array(items) = value.get_ref() else {
                self.error(
                    value.span().start,
                    &path,
                    format!(
                        "expected a list of networks, e.g. allow_networks = [\"10.20.0.0/16\"], \
                         found {}",
                        value.get_ref().type_str()
                    ),
                );
                continue;
            };
            for item in items.iter() {
                let Some(text) = self.string(item, &path) else { continue };
                match outbound::parse_network(text) {
                    Ok(network) => networks.push(network),
                    Err(message) => self.error(item.span().start, &path, message),
                }
            }
        }
        Outbound::allowing(networks)
    }

    /// The valid destinations, and the names of all destinations (valid or not, so that
    /// groups naming a broken destination are not reported twice).
    fn destinations(&mut self, value: &Value<'_>) -> (Vec<DestinationConfig>, Vec<String>) {
        let mut valid = Vec::new();
        let mut names = Vec::new();
        let Some(table) = self.table(
            value,
            "destinations",
            "one table per destination, e.g. [destinations.ops-webhook]",
        ) else {
            return (valid, names);
        };
        for (key, value) in in_file_order(table) {
            let name = key.get_ref().as_ref();
            let path = format!("destinations.{name}");
            names.push(name.to_owned());
            let before = self.diags.len();
            if let Err(message) = values::check_name(name) {
                self.error(key.span().start, &path, message);
            }
            let Some(table) = self.table(value, &path, &format!("a table [destinations.{name}]"))
            else {
                continue;
            };
            let destination = self.destination(name, key.span().start, table);
            if let Some(destination) = destination.filter(|_| self.diags.len() == before) {
                valid.push(destination);
            }
        }
        (valid, names)
    }

    fn destination(
        &mut self,
        name: &str,
        header: usize,
        table: &DeTable<'_>,
    ) -> Option<DestinationConfig> {
        let prefix = format!("destinations.{name}");
        let mut settings = LaneSettings::default();
        let mut kind = Kind::Missing;
        let mut specific = Vec::new();
        // Whether the operator set these: a kind's defaults apply only where not.
        let (mut rate_limit_set, mut concurrency_set) = (false, false);
        // Where backoff_base and backoff_max were set, and whether both parsed.
        let (mut base_at, mut max_at, mut backoff_ok) = (None, None, true);
        for (key, value) in in_file_order(table) {
            let setting = key.get_ref().as_ref();
            let path = format!("{prefix}.{setting}");
            let policy = &mut settings.policy;
            match setting {
                "kind" => kind = self.kind(value, &path),
                "max_attempts" => {
                    if let Some(n) = self.positive(value, &path) {
                        policy.max_attempts = n;
                    }
                }
                "backoff_base" | "backoff_max" => {
                    let parsed = self.duration(value, &path, false);
                    backoff_ok &= parsed.is_some();
                    if let Some(d) = parsed {
                        if setting == "backoff_base" {
                            (policy.backoff_base, base_at) = (d, Some(value.span().start));
                        } else {
                            (policy.backoff_max, max_at) = (d, Some(value.span().start));
                        }
                    }
                }
                "max_age" => {
                    if let Some(d) = self.duration(value, &path, false) {
                        policy.max_age = d;
                    }
                }
                "timeout" => {
                    if let Some(d) = self.duration(value, &path, false) {
                        policy.timeout = d;
                    }
                }
                "on_unknown" => {
                    if let Some(text) = self.string(value, &path) {
                        match text {
                            "resend" => policy.on_unknown = OnUnknown::Resend,
                            "hold" => policy.on_unknown = OnUnknown::Hold,
                            _ => self.error(
                                value.span().start,
                                &path,
                                format!(
                                    "unknown policy {text:?}; write \"resend\" (send again, may \
                                     duplicate) or \"hold\" (park the delivery for an operator)"
                                ),
                            ),
                        }
                    }
                }
                "dedupe" => match value.get_ref() {
                    DeValue::Boolean(dedupe) => settings.dedupe = Some(*dedupe),
                    other => self.error(
                        value.span().start,
                        &path,
                        format!(
                            "expected true or false, found {}; write true if the receiver drops \
                             a second copy with the same idempotency key, false if it does not",
                            other.type_str()
                        ),
                    ),
                },
                "rate_limit" => {
                    rate_limit_set = true;
                    if let Some(text) = self.string(value, &path) {
                        match values::parse_rate_limit(text) {
                            Ok(limit) => settings.rate_limit = Some(limit),
                            Err(message) => self.error(value.span().start, &path, message),
                        }
                    }
                }
                "concurrency" => {
                    concurrency_set = true;
                    if let Some(n) = self.positive(value, &path) {
                        match usize::try_from(n) {
                            Ok(n) => settings.concurrency = n,
                            Err(_) => self.error(value.span().start, &path, "too large"),
                        }
                    }
                }
                "circuit_failures" => {
                    if let Some(n) = self.positive(value, &path) {
                        settings.circuit.min_failures = n;
                    }
                }
                "circuit_failure_rate" => {
                    if let Some(rate) = self.failure_rate(value, &path) {
                        settings.circuit.failure_rate = rate;
                    }
                }
                "circuit_cool_down" => {
                    if let Some(d) = self.duration(value, &path, false) {
                        settings.circuit.cool_down = Some(d);
                    }
                }
                _ => specific.push((key, value)),
            }
        }

        let policy = &settings.policy;
        if backoff_ok && policy.backoff_base > policy.backoff_max {
            let (at, key) = match (base_at, max_at) {
                (Some(at), _) => (at, "backoff_base"),
                (None, Some(at)) => (at, "backoff_max"),
                (None, None) => (header, "backoff_base"),
            };
            let message = format!(
                "backoff_base ({}) is longer than backoff_max ({}); lower backoff_base or raise \
                 backoff_max",
                settings::format_duration(policy.backoff_base),
                settings::format_duration(policy.backoff_max)
            );
            self.error(at, &format!("{prefix}.{key}"), message);
        }

        let connector = match kind {
            Kind::Known(kind) => {
                if !rate_limit_set {
                    settings.rate_limit = kind.defaults.rate_limit;
                }
                if let (false, Some(concurrency)) = (concurrency_set, kind.defaults.concurrency) {
                    settings.concurrency = concurrency;
                }
                self.kind_settings(kind, &prefix, header, &specific)
            }
            Kind::Invalid => None,
            Kind::Missing => {
                let known: Vec<&str> = self.kinds.iter().map(|k| k.name).collect();
                self.error(
                    header,
                    &format!("{prefix}.kind"),
                    format!(
                        "missing `kind`; add e.g. kind = \"webhook\" (known kinds: {})",
                        known.join(", ")
                    ),
                );
                // Still point out keys that no kind has.
                let all: Vec<&str> =
                    self.kinds.iter().flat_map(|k| k.keys.iter().copied()).collect();
                for (key, _) in &specific {
                    let name = key.get_ref().as_ref();
                    if !all.contains(&name) {
                        self.unknown_setting(&prefix, name, key.span().start, &all);
                    }
                }
                None
            }
        };
        Some(DestinationConfig { name: name.to_owned(), connector: connector?, settings })
    }

    fn kind(&mut self, value: &Value<'_>, path: &str) -> Kind {
        let Some(text) = self.string(value, path) else {
            return Kind::Invalid;
        };
        if let Some(known) = self.kinds.iter().find(|k| k.name == text) {
            return Kind::Known(known);
        }
        let known: Vec<&str> = self.kinds.iter().map(|k| k.name).collect();
        let message = format!("unknown kind {text:?}; known kinds: {}", known.join(", "));
        self.error(value.span().start, path, message);
        Kind::Invalid
    }

    /// Reports a setting that is neither common nor one of `kind_keys`.
    fn unknown_setting(&mut self, prefix: &str, name: &str, at: usize, kind_keys: &[&str]) {
        let valid: Vec<&str> = COMMON_KEYS.iter().chain(kind_keys).copied().collect();
        let message = match settings::closest(name, &valid) {
            Some(close) => format!("unknown setting `{name}`; did you mean `{close}`?"),
            None => format!("unknown setting `{name}`; valid settings: {}", valid.join(", ")),
        };
        self.error(at, &format!("{prefix}.{name}"), message);
    }

    /// Hands the kind-specific entries to `kind`'s parser and reports its problems
    /// (with their locations) and the keys it did not read.
    fn kind_settings(
        &mut self,
        kind: &herald_connectors::Kind,
        prefix: &str,
        header: usize,
        specific: &[(&Key<'_>, &Value<'_>)],
    ) -> Option<ConnectorConfig> {
        let before = self.diags.len();
        let mut entries = Vec::with_capacity(specific.len());
        let mut unusable = Vec::new();
        for (key, value) in specific {
            let name = key.get_ref().as_ref();
            match self.setting(value, &format!("{prefix}.{name}")) {
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
        let config = (kind.parse)(&mut table);
        self.secrets.extend(table.secrets().iter().cloned());
        for (key, at) in table.inline_secrets() {
            self.inline_secret(*at, &format!("{prefix}.{key}"));
        }
        for problem in table.problems() {
            self.error(problem.at, &format!("{prefix}.{}", problem.key), problem.message.clone());
        }
        for (name, at) in table.unread() {
            self.unknown_setting(prefix, name, at, kind.keys);
        }
        if config.is_none() && self.diags.len() == before {
            // A kind that rejects its settings must say why; never drop a destination silently.
            self.error(
                header,
                &format!("{prefix}.kind"),
                format!("the {} settings were rejected without a reason (a herald bug)", kind.name),
            );
        }
        config
    }

    /// A TOML value in the kinds' TOML-free form; `None` (reported) for a number that
    /// does not fit.
    fn setting(&mut self, value: &Value<'_>, path: &str) -> Option<settings::Value> {
        let at = value.span().start;
        Some(match value.get_ref() {
            DeValue::String(text) => settings::Value::String(text.to_string()),
            DeValue::Integer(int) => match i64::from_str_radix(int.as_str(), int.radix()) {
                Ok(n) => settings::Value::Integer(n),
                Err(_) => {
                    self.error(at, path, format!("too large: at most {}", i64::MAX));
                    return None;
                }
            },
            DeValue::Float(float) => match float.as_str().parse::<f64>() {
                Ok(x) => settings::Value::Float(x),
                Err(_) => {
                    self.error(at, path, "not a number herald can read");
                    return None;
                }
            },
            DeValue::Boolean(b) => settings::Value::Bool(*b),
            DeValue::Datetime(datetime) => settings::Value::Datetime(datetime.to_string()),
            DeValue::Array(items) => settings::Value::Array(
                items
                    .iter()
                    .filter_map(|item| {
                        let value = self.setting(item, path)?;
                        Some(Item { value, at: item.span().start })
                    })
                    .collect(),
            ),
            DeValue::Table(table) => {
                let mut entries = Vec::new();
                for (key, value) in in_file_order(table) {
                    let name = key.get_ref().as_ref();
                    if let Some(converted) = self.setting(value, &format!("{path}.{name}")) {
                        entries.push(Entry {
                            key: name.to_owned(),
                            key_at: key.span().start,
                            value: converted,
                            value_at: value.span().start,
                        });
                    }
                }
                settings::Value::Table(entries)
            }
        })
    }

    fn groups(
        &mut self,
        value: &Value<'_>,
        destinations: &[String],
    ) -> BTreeMap<String, Vec<String>> {
        let mut groups = BTreeMap::new();
        let Some(table) =
            self.table(value, "groups", "a [groups] table, e.g. p1 = [\"ops-webhook\"]")
        else {
            return groups;
        };
        let group_names: HashSet<&str> = table.iter().map(|(k, _)| k.get_ref().as_ref()).collect();
        let destination_names: Vec<&str> = destinations.iter().map(String::as_str).collect();
        for (key, value) in in_file_order(table) {
            let name = key.get_ref().as_ref();
            let path = format!("groups.{name}");
            if let Err(message) = values::check_name(name) {
                self.error(key.span().start, &path, message);
            }
            if destination_names.contains(&name) {
                self.error(
                    key.span().start,
                    &path,
                    format!(
                        "group `{name}` has the same name as a destination; rename one of them"
                    ),
                );
            }
            let DeValue::Array(items) = value.get_ref() else {
                self.error(
                    value.span().start,
                    &path,
                    format!(
                        "expected a list of destination names, e.g. {name} = [\"ops-webhook\"], \
                         found {}",
                        value.get_ref().type_str()
                    ),
                );
                continue;
            };
            if items.is_empty() {
                self.error(
                    value.span().start,
                    &path,
                    format!("group `{name}` is empty; list at least one destination"),
                );
            }
            let mut members = Vec::new();
            for item in items.iter() {
                let Some(member) = self.string(item, &path) else {
                    continue;
                };
                if destination_names.contains(&member) {
                    members.push(member.to_owned());
                } else if group_names.contains(member) {
                    self.error(
                        item.span().start,
                        &path,
                        format!(
                            "`{member}` is a group; groups may not contain other groups, list \
                             its destinations instead"
                        ),
                    );
                } else {
                    let mut message = format!("unknown destination `{member}`");
                    if let Some(close) = settings::closest(member, &destination_names) {
                        message.push_str(&format!("; did you mean `{close}`?"));
                    } else if destination_names.is_empty() {
                        message.push_str("; no destinations are configured");
                    } else {
                        message
                            .push_str(&format!("; destinations: {}", destination_names.join(", ")));
                    }
                    self.error(item.span().start, &path, message);
                }
            }
            groups.insert(name.to_owned(), members);
        }
        groups
    }

    // Typed accessors: each reports a wrong type at the value and returns `None`.

    fn table<'t, 'i>(
        &mut self,
        value: &'t Value<'i>,
        path: &str,
        expected: &str,
    ) -> Option<&'t DeTable<'i>> {
        match value.get_ref() {
            DeValue::Table(table) => Some(table),
            other => {
                let found = other.type_str();
                self.error(value.span().start, path, format!("expected {expected}, found {found}"));
                None
            }
        }
    }

    fn string<'t>(&mut self, value: &'t Value<'_>, path: &str) -> Option<&'t str> {
        match value.get_ref() {
            DeValue::String(text) => Some(text.as_ref()),
            other => {
                let found = other.type_str();
                self.error(value.span().start, path, format!("expected a string, found {found}"));
                None
            }
        }
    }

    /// A whole number from 1 to `u32::MAX`.
    fn positive(&mut self, value: &Value<'_>, path: &str) -> Option<u32> {
        let problem = match value.get_ref() {
            DeValue::Integer(int) => match i64::from_str_radix(int.as_str(), int.radix()) {
                Ok(n) if n < 1 => format!("must be at least 1, found {n}"),
                Ok(n) => match u32::try_from(n) {
                    Ok(n) => return Some(n),
                    Err(_) => format!("too large: at most {}", u32::MAX),
                },
                Err(_) => format!("too large: at most {}", u32::MAX),
            },
            DeValue::String(text) if text.parse::<i64>().is_ok() => {
                format!("expected a number, found a string; write it without quotes: {text}")
            }
            other => format!("expected a whole number, found {}", other.type_str()),
        };
        self.error(value.span().start, path, problem);
        None
    }

    /// A share of failures: a number in `(0, 1]`.
    fn failure_rate(&mut self, value: &Value<'_>, path: &str) -> Option<FailureRate> {
        const HINT: &str = "write a share of attempts between 0 and 1, e.g. 0.8 for 80 %";
        let number = match value.get_ref() {
            DeValue::Float(float) => float.as_str().parse::<f64>().ok(),
            DeValue::Integer(int) => {
                i64::from_str_radix(int.as_str(), int.radix()).ok().map(|n| n as f64)
            }
            _ => None,
        };
        let problem = match (number, value.get_ref()) {
            (Some(n), _) => match FailureRate::new(n) {
                Some(rate) => return Some(rate),
                None => format!("must be more than 0 and at most 1, found {n}; {HINT}"),
            },
            (None, DeValue::String(text)) => {
                format!("expected a number, found a string {text:?}; {HINT}, without quotes")
            }
            (None, other) => format!("expected a number, found {}; {HINT}", other.type_str()),
        };
        self.error(value.span().start, path, problem);
        None
    }

    /// A duration string; zero only if `allow_zero`.
    fn duration(&mut self, value: &Value<'_>, path: &str, allow_zero: bool) -> Option<Duration> {
        let checked = match value.get_ref() {
            DeValue::String(text) => settings::check_duration_text(text, allow_zero),
            DeValue::Integer(_) | DeValue::Float(_) => {
                Err(format!("a duration is a string with a unit; {}", settings::DURATION_HINT))
            }
            other => Err(format!(
                "expected a duration, found {}; {}",
                other.type_str(),
                settings::DURATION_HINT
            )),
        };
        match checked {
            Ok(duration) => Some(duration),
            Err(message) => {
                self.error(value.span().start, path, message);
                None
            }
        }
    }
}
