//! An `email` destination's settings: the SMTP server URL, the TLS mode and a private
//! CA to trust, how long one SMTP command may take, optional credentials (the password
//! is a secret: never in `Debug`, errors or logs), the sender and the recipients.

use std::any::Any;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use lettre::message::Mailbox;
use lettre::transport::smtp::client::{Certificate, TlsParameters};

use crate::settings::{Table, secret};
use crate::{Connector, ConnectorConfig, ConnectorError, KindSettings};

/// The kind's own keys (besides the common policy keys).
pub(super) const KEYS: &[&str] =
    &["smtp", "tls", "tls_ca", "command_timeout", "username", "password", "from", "to"];

/// How long one SMTP command before the message's content may go unanswered by default.
/// Half the default attempt `timeout` (10 s): a server that stalls at connect, EHLO,
/// STARTTLS, AUTH, MAIL, RCPT or DATA then ends the attempt as a `Retry` (nothing was
/// handed over) before the engine's timeout would record it as `Unknown`. A healthy
/// submission server answers each in milliseconds.
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(5);

/// The PEM line that starts a certificate.
const PEM_CERTIFICATE: &str = "-----BEGIN CERTIFICATE-----";

/// How the connection to the SMTP server is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tls {
    /// `smtps://`: TLS from the first byte; `smtp://`: STARTTLS, refused if not offered.
    Required,
    /// `smtp://` only: STARTTLS when the server offers it, plain text otherwise.
    Opportunistic,
    /// Never encrypt: only for a server on this machine (loopback).
    None,
}

/// A private certificate authority trusted besides the public roots (`tls_ca`): mail
/// relays inside companies often present a certificate of their own CA.
#[derive(Clone, PartialEq, Eq)]
pub struct TlsCa {
    /// Where the certificates came from, for messages (a file, a variable, inline).
    pub source: String,
    /// PEM text holding at least one certificate.
    pub pem: String,
}

impl TlsCa {
    /// The certificates in `pem`, read from `source` (described in words).
    ///
    /// # Errors
    /// What is wrong with `pem`, as a predicate: it holds no certificate, or one that
    /// cannot serve as a trust root.
    pub fn new(source: impl Into<String>, pem: &str) -> Result<TlsCa, String> {
        check_ca(pem)?;
        Ok(TlsCa { source: source.into(), pem: pem.to_owned() })
    }
}

impl fmt::Debug for TlsCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count = self.pem.matches(PEM_CERTIFICATE).count();
        write!(f, "TlsCa({}, {count} certificate(s))", self.source)
    }
}

/// Checks that `pem` holds certificates rustls takes as roots; says what is wrong as a
/// predicate of the text (`holds no ...`).
fn check_ca(pem: &str) -> Result<(), String> {
    let hint = "give the CA's certificate in PEM (-----BEGIN CERTIFICATE-----), e.g. \
                tls_ca = \"file:/etc/herald/mail-ca.pem\"";
    if !pem.contains(PEM_CERTIFICATE) {
        return Err(format!("holds no certificate; {hint}"));
    }
    let certificate = Certificate::from_pem(pem.as_bytes())
        .map_err(|e| format!("is not readable as PEM certificates ({e}); {hint}"))?;
    // Building the TLS settings parses every certificate as a trust root, so a damaged
    // one is reported here rather than at the first delivery.
    TlsParameters::builder("localhost".to_owned())
        .add_root_certificate(certificate)
        .build_rustls()
        .map(drop)
        .map_err(|e| format!("holds a certificate that cannot be a trust root ({e}); {hint}"))
}

/// The TLS settings for a connection to `config.host`: the public roots plus
/// `config.tls_ca`.
///
/// # Errors
/// Why they cannot be built (a `tls_ca` that passed [`TlsCa::new`] always can).
pub(super) fn tls_parameters(config: &EmailConfig) -> Result<TlsParameters, String> {
    let mut builder = TlsParameters::builder(config.host.clone());
    if let Some(ca) = &config.tls_ca {
        let certificate = Certificate::from_pem(ca.pem.as_bytes())
            .map_err(|e| format!("`tls_ca` ({}) is not readable: {e}", ca.source))?;
        builder = builder.add_root_certificate(certificate);
    }
    builder.build_rustls().map_err(|e| format!("cannot set up TLS for {}: {e}", config.host))
}

/// An `email` destination's settings.
#[derive(Clone, PartialEq, Eq)]
pub struct EmailConfig {
    /// The server's host name (also the name its certificate must carry).
    pub host: String,
    /// The server's port (default 587 for `smtp://`, 465 for `smtps://`).
    pub port: u16,
    /// `smtps://`: TLS from the first byte instead of STARTTLS.
    pub implicit_tls: bool,
    /// The TLS mode.
    pub tls: Tls,
    /// A private CA trusted besides the public roots.
    pub tls_ca: Option<TlsCa>,
    /// How long each SMTP step before the content is handed over may take.
    pub command_timeout: Duration,
    /// The login name, if the server wants one.
    pub username: Option<String>,
    /// The password; never shown.
    pub password: Option<String>,
    /// The sender (`herald <herald@example.com>`).
    pub from: Mailbox,
    /// Every recipient, in configuration order.
    pub to: Vec<Mailbox>,
}

impl EmailConfig {
    /// Settings for a plain-text server on loopback (tests): `tls = "none"`, no login.
    pub fn loopback(port: u16, from: Mailbox, to: Vec<Mailbox>) -> EmailConfig {
        EmailConfig {
            host: "127.0.0.1".to_owned(),
            port,
            implicit_tls: false,
            tls: Tls::None,
            tls_ca: None,
            command_timeout: DEFAULT_COMMAND_TIMEOUT,
            username: None,
            password: None,
            from,
            to,
        }
    }

    /// The domain of the sender's address, the right-hand side of every Message-ID.
    pub fn from_domain(&self) -> &str {
        self.from.email.domain()
    }

    /// Problems that make the settings unusable: the key and what is wrong with it.
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut problems = Vec::new();
        if self.tls == Tls::None && !is_loopback(&self.host) {
            problems.push((
                "tls",
                format!(
                    "`tls = \"none\"` sends the message{} in clear text; it is only allowed for a \
                 server on this machine (127.0.0.1, ::1, localhost), not {}",
                    if self.password.is_some() { " and the password" } else { "" },
                    self.host
                ),
            ));
        }
        if self.implicit_tls && self.tls != Tls::Required {
            problems.push((
                "tls",
                "`smtps://` always uses TLS; drop `tls` or write smtp:// for STARTTLS".to_owned(),
            ));
        }
        if self.tls == Tls::None && self.tls_ca.is_some() {
            problems.push((
                "tls_ca",
                "`tls_ca` has no use with `tls = \"none\"`: drop one of them".to_owned(),
            ));
        }
        if self.username.is_some() != self.password.is_some() {
            let why = "`username` and `password` go together: give both or neither";
            problems.push(("username", why.to_owned()));
        }
        if self.to.is_empty() {
            problems.push(("to", "`to` names no recipient".to_owned()));
        }
        problems
    }
}

/// Whether `host` is this machine, where clear text never leaves it.
pub(super) fn is_loopback(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.eq_ignore_ascii_case("localhost")
        || bare.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

impl fmt::Debug for EmailConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmailConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("implicit_tls", &self.implicit_tls)
            .field("tls", &self.tls)
            .field("tls_ca", &self.tls_ca)
            .field("command_timeout", &self.command_timeout)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "[redacted]"))
            .field("from", &self.from.to_string())
            .field("to", &self.to.iter().map(ToString::to_string).collect::<Vec<_>>())
            .finish()
    }
}

/// `smtp://host[:port]` or `smtps://host[:port]`: host, port, implicit TLS.
pub(super) fn parse_server(text: &str) -> Result<(String, u16, bool), String> {
    let hint = "write e.g. \"smtp://mail.example.com:587\" (STARTTLS) or \
                \"smtps://mail.example.com:465\" (implicit TLS)";
    let url =
        reqwest::Url::parse(text.trim()).map_err(|e| format!("not a valid URL ({e}); {hint}"))?;
    let implicit_tls = match url.scheme() {
        "smtp" => false,
        "smtps" => true,
        other => {
            return Err(format!("the scheme must be smtp:// or smtps://, not {other}://; {hint}"));
        }
    };
    let host = match url.host_str().map(|h| h.trim_start_matches('[').trim_end_matches(']')) {
        Some(host) if !host.is_empty() => host.to_owned(),
        _ => return Err(format!("the URL has no host; {hint}")),
    };
    if !url.username().is_empty() || url.password().is_some() {
        return Err("put the login in `username` and `password`, not in the URL".to_owned());
    }
    if !matches!(url.path(), "" | "/") || url.query().is_some() || url.fragment().is_some() {
        return Err(format!("the URL takes only a host and a port; {hint}"));
    }
    Ok((host, url.port().unwrap_or(if implicit_tls { 465 } else { 587 }), implicit_tls))
}

/// Reads a `[destinations.x]` table of kind `email`.
pub(super) fn parse(table: &mut Table<'_>) -> Option<ConnectorConfig> {
    let server = table
        .required_string("smtp", "e.g. smtp = \"smtp://mail.example.com:587\"")
        .and_then(|text| match parse_server(&text) {
            Ok(server) => Some(server),
            Err(problem) => {
                table.problem("smtp", problem);
                None
            }
        });
    let tls = match table.choice("tls", &["required", "opportunistic", "none"]) {
        Some("opportunistic") => Tls::Opportunistic,
        Some("none") => Tls::None,
        _ => Tls::Required,
    };
    let tls_ca = ca(table);
    let command_timeout = table.duration("command_timeout").unwrap_or(DEFAULT_COMMAND_TIMEOUT);
    let username = table.string("username");
    let password = table.secret("password");
    let from = table
        .required_string("from", "e.g. from = \"herald <herald@example.com>\"")
        .and_then(|text| mailbox(table, "from", &text, None));
    let mut to = Vec::new();
    if table.require("to", "e.g. to = [\"oncall@example.com\"]")
        && let Some(list) = table.string_list("to")
    {
        for (text, at) in list {
            if let Some(address) = mailbox(table, "to", &text, Some(at)) {
                to.push(address);
            }
        }
    }
    let (Some((host, port, implicit_tls)), Some(from)) = (server, from) else {
        return None;
    };
    let config = EmailConfig {
        host,
        port,
        implicit_tls,
        tls,
        tls_ca,
        command_timeout,
        username,
        password,
        from,
        to,
    };
    for (key, problem) in config.problems() {
        table.problem(key, problem);
    }
    table.ok().then(|| ConnectorConfig::new(config))
}

/// `tls_ca`: a `file:` reference (or `${VAR}`, or the PEM inline), read like a secret
/// and checked to hold certificates now, so a wrong file fails `herald check-config`.
fn ca(table: &mut Table<'_>) -> Option<TlsCa> {
    let source = match table.entry("tls_ca").map(|e| &e.value) {
        Some(crate::settings::Value::String(raw)) => secret::source(raw),
        _ => String::new(),
    };
    let pem = table.checked_reference("tls_ca", check_ca)?;
    Some(TlsCa { source, pem })
}

fn mailbox(table: &mut Table<'_>, key: &str, text: &str, at: Option<usize>) -> Option<Mailbox> {
    match text.trim().parse::<Mailbox>() {
        Ok(mailbox) => Some(mailbox),
        Err(error) => {
            let message = format!(
                "{text:?} is not an e-mail address ({error}); write \"name@example.com\" or \
                 \"Name <name@example.com>\""
            );
            match at {
                Some(at) => table.problem_at(at, key, message),
                None => table.problem(key, message),
            }
            None
        }
    }
}

impl KindSettings for EmailConfig {
    fn kind(&self) -> &'static str {
        super::KIND.name
    }

    fn build(&self, client: crate::http::Client) -> Result<Arc<dyn Connector>, ConnectorError> {
        Ok(Arc::new(super::Email::new(self.clone(), client.outbound().clone())?))
    }

    fn servers(&self) -> Vec<crate::outbound::Server> {
        vec![crate::outbound::Server { key: "smtp", host: self.host.clone(), port: self.port }]
    }

    fn capabilities(&self) -> herald_core::Capabilities {
        super::CAPABILITIES
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}
