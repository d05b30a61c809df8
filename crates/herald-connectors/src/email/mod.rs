//! The e-mail connector (`kind = "email"`): one SMTP transaction per attempt, through
//! `lettre`'s connection so each recipient's RCPT reply is seen on its own
//! (shared/DESTINATIONS.md §9).
//!
//! Every attempt of a delivery carries the same `Message-ID` (`<delivery_id@from-domain>`),
//! so a follow-up names its original in `In-Reply-To` and `References` without a look-up,
//! and a receiver that drops repeated ids (Gmail per user, some ticket systems) drops a
//! resend. SMTP has no key receivers must honour and no look-up: after a reply lost
//! behind the final `.` the destination's `on_unknown` decides.
//!
//! Recipients: one transaction names every recipient still owed the message. Those the
//! server refuses for good (5yz at RCPT) are dropped and reported; those refused for now
//! (4yz) make the attempt a `Retry`, and the retry names only them, never a recipient
//! whose transaction already ended in a 2yz. That memory lives in this process: after a
//! restart a retry goes to every recipient not yet known to be served, with the same
//! `Message-ID`. It is forgotten when the delivery ends here.
//!
//! Where: herald resolves the server's name itself and vets every address with the
//! outbound policy (`[outbound] allow_networks`), then connects to those addresses only;
//! a refused one ends the attempt `Permanent`, naming the rule and the key.
//!
//! Time: every step before the content is handed over (connecting with the greeting and
//! EHLO, STARTTLS, AUTH, MAIL FROM, each RCPT TO, DATA, writing the content) must end
//! within `command_timeout`, else the attempt is a `Retry`: nothing was handed over, so
//! it is safe to send again. Once the content and the final `.` are written, herald waits
//! for the reply as long as the engine's `timeout` allows, whose expiry records the
//! attempt `Unknown`: the server may hold the message.

mod classify;
mod config;
mod render;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use herald_core::{Capabilities, Outcome};
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, TlsParameters};
use lettre::transport::smtp::commands::{Data, Mail, Quit, Rcpt};
use lettre::transport::smtp::extension::{ClientId, Extension, MailBodyParameter, MailParameter};

pub use classify::{Progress, Step, lost, reply, settle};
pub use config::{DEFAULT_COMMAND_TIMEOUT, EmailConfig, Tls, TlsCa};
pub use render::{compose, escape, html, markdown, message_id, subject, text};

use crate::outbound::{Outbound, ResolveError};
use crate::{Connector, ConnectorError, Report, Request};

/// The `email` kind. Submission servers limit senders loosely (hundreds of messages an
/// hour); two transactions at once keep a burst from opening many connections.
pub const KIND: crate::Kind = crate::Kind {
    name: "email",
    keys: config::KEYS,
    parse: config::parse,
    defaults: crate::Defaults { rate_limit: None, concurrency: Some(2) },
    capabilities: CAPABILITIES,
};

/// No key receivers must honour, no look-up, no edit; a follow-up is a reply in the
/// original's thread (`In-Reply-To`/`References`).
pub const CAPABILITIES: Capabilities =
    Capabilities { dedupe_by_key: false, lookup: false, edit: false, thread_reply: true };

/// How long QUIT may take once the message is accepted: its answer changes nothing.
const QUIT_TIMEOUT: Duration = Duration::from_secs(5);

/// Deliveries with recipients still owed, remembered at most: a delivery abandoned
/// between attempts (expired, cancelled) must not grow the map for ever.
const REMEMBERED: usize = 10_000;

/// An e-mail destination.
pub struct Email {
    config: EmailConfig,
    /// Which addresses the SMTP server may have (`[outbound] allow_networks`).
    outbound: Outbound,
    /// The TLS settings (public roots plus `tls_ca`), built once.
    tls: TlsParameters,
    /// Per delivery id: the recipients served or refused so far.
    progress: Mutex<HashMap<String, (u64, Progress)>>,
    /// Orders `progress` entries by first use, to forget the oldest when full.
    counter: Mutex<u64>,
}

impl std::fmt::Debug for Email {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Email").field("config", &self.config).finish_non_exhaustive()
    }
}

/// How one attempt's transaction ended, before the delivery's memory is applied.
#[derive(Debug, Default)]
struct Transaction {
    /// Recipients served in this transaction (2yz after the final `.`).
    delivered: Vec<String>,
    /// Recipients refused for good, with the server's words.
    refused: Vec<(String, String)>,
    /// Recipients refused for now, with the server's words.
    deferred: Vec<(String, String)>,
    /// What ended the attempt as a whole, if something did.
    failure: Option<Outcome>,
    /// The final reply's words (the queue id, when the server names one).
    queued: Option<String>,
    /// A step went unanswered: the connection is dropped rather than politely closed.
    stalled: bool,
}

impl Email {
    /// A connector for `config` that connects only where `outbound` allows.
    ///
    /// # Errors
    /// `ConnectorError::InvalidSetting` if the settings are unusable (never echoing the
    /// password).
    pub fn new(config: EmailConfig, outbound: Outbound) -> Result<Email, ConnectorError> {
        if let Some((_, problem)) = config.problems().into_iter().next() {
            return Err(ConnectorError::InvalidSetting(problem));
        }
        let tls = config::tls_parameters(&config).map_err(ConnectorError::InvalidSetting)?;
        Ok(Email {
            config,
            outbound,
            tls,
            progress: Mutex::new(HashMap::new()),
            counter: Mutex::new(0),
        })
    }

    fn progress_of(&self, delivery_id: &str) -> Progress {
        let map = self.progress.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        map.get(delivery_id).map(|(_, p)| p.clone()).unwrap_or_default()
    }

    fn remember(&self, delivery_id: &str, progress: Progress, done: bool) {
        let mut map = self.progress.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if done || progress == Progress::default() {
            map.remove(delivery_id);
            return;
        }
        let order = map.get(delivery_id).map(|(order, _)| *order).unwrap_or_else(|| {
            let mut counter =
                self.counter.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            *counter += 1;
            *counter
        });
        map.insert(delivery_id.to_owned(), (order, progress));
        if map.len() > REMEMBERED
            && let Some(oldest) =
                map.iter().min_by_key(|(_, (order, _))| *order).map(|(k, _)| k.clone())
        {
            map.remove(&oldest);
        }
    }

    /// Runs `step`'s exchange `future` within `command_timeout`; a stall is a `Retry`.
    async fn within<T, E>(
        &self,
        step: Step,
        done: &mut Transaction,
        future: impl Future<Output = Result<T, E>>,
    ) -> Result<Result<T, E>, Outcome> {
        tokio::time::timeout(self.config.command_timeout, future).await.map_err(|_| {
            done.stalled = true;
            stalled(step, self.config.command_timeout)
        })
    }

    /// The outcome of a failed TLS set-up at `step`: a certificate herald does not trust
    /// is permanent (it will not fix itself), anything else is a lost connection.
    fn tls_failed(&self, step: Step, error: &lettre::transport::smtp::Error) -> Outcome {
        match certificate_problem(error) {
            Some(why) => Outcome::Permanent {
                reason: format!(
                    "the SMTP server {}'s TLS certificate is not trusted ({why}): if the relay \
                     uses a private certificate authority, give its certificate in `tls_ca = \
                     \"file:/path/ca.pem\"`{}; if the name does not match, `smtp` must name a \
                     host the certificate covers",
                    self.config.host,
                    match &self.config.tls_ca {
                        Some(ca) => format!(" (now: {})", ca.source),
                        None => String::new(),
                    }
                ),
            },
            None => failed(step, error),
        }
    }

    /// One SMTP transaction to `recipients` carrying `email`.
    async fn transaction(&self, email: &[u8], recipients: &[String]) -> Transaction {
        let mut done = Transaction::default();
        let mut connection = match self.open(&mut done).await {
            Ok(connection) => connection,
            Err(failure) => {
                done.failure = Some(failure);
                return done;
            }
        };
        let outcome = self.exchange(&mut connection, email, recipients, &mut done).await;
        if let Err(failure) = outcome {
            done.failure = Some(failure);
        }
        // A server that left a command unanswered gets no QUIT: closing the connection
        // ends its transaction, and a late reply could be taken for QUIT's.
        if !done.stalled {
            // QUIT in the background: its answer changes nothing, and waiting for it
            // would let the engine's timeout turn an accepted message into an `Unknown`.
            tokio::spawn(async move {
                let _ = tokio::time::timeout(QUIT_TIMEOUT, connection.command(Quit)).await;
            });
        }
        done
    }

    /// Connects, says EHLO, protects the connection as configured and logs in.
    ///
    /// The server's name is resolved here and every address vetted by the outbound
    /// policy; the connection goes to those addresses only (no second look-up that could
    /// answer differently), while TLS still verifies the configured name.
    async fn open(&self, done: &mut Transaction) -> Result<AsyncSmtpConnection, Outcome> {
        let config = &self.config;
        let implicit = config.implicit_tls.then(|| self.tls.clone());
        let hello = ClientId::default();
        let connect = async {
            let addresses = self.outbound.resolve(&config.host, config.port).await?;
            AsyncSmtpConnection::connect_tokio1(
                addresses.as_slice(),
                Some(config.command_timeout),
                &hello,
                implicit,
                None,
            )
            .await
            .map_err(Opening::Smtp)
        };
        let mut connection = match self.within(Step::Connect, done, connect).await? {
            Ok(connection) => connection,
            Err(Opening::Resolve(ResolveError::Refused(refused))) => {
                return Err(Outcome::Permanent { reason: refused.to_string() });
            }
            Err(Opening::Resolve(lookup)) => {
                return Err(lost(Step::Connect, &crate::text::cut(&lookup.to_string(), 200)));
            }
            Err(Opening::Smtp(error)) => return Err(self.tls_failed(Step::Connect, &error)),
        };
        if !config.implicit_tls {
            let offered = connection.can_starttls();
            match config.tls {
                Tls::Required if !offered => {
                    return Err(Outcome::Permanent {
                        reason: format!(
                            "the SMTP server {} does not offer STARTTLS and `tls = \"required\"`: \
                             use smtps://, or `tls = \"opportunistic\"` if clear text is acceptable",
                            config.host
                        ),
                    });
                }
                Tls::Required | Tls::Opportunistic if offered => {
                    let upgrade = connection.starttls(self.tls.clone(), &hello);
                    self.within(Step::StartTls, done, upgrade)
                        .await?
                        .map_err(|e| self.tls_failed(Step::StartTls, &e))?;
                }
                _ => {}
            }
        }
        if let (Some(username), Some(password)) = (&config.username, &config.password) {
            if !connection.is_encrypted() && !config::is_loopback(&config.host) {
                return Err(Outcome::Permanent {
                    reason: format!(
                        "the connection to {} is not encrypted (the server offers no STARTTLS): \
                         herald does not send the password in clear text",
                        config.host
                    ),
                });
            }
            let credentials = Credentials::new(username.clone(), password.clone());
            let login = connection.auth(&[Mechanism::Plain, Mechanism::Login], &credentials);
            self.within(Step::Auth, done, login).await?.map_err(|e| failed(Step::Auth, &e))?;
        }
        Ok(connection)
    }

    /// MAIL FROM, one RCPT TO per recipient, DATA and the content.
    async fn exchange(
        &self,
        connection: &mut AsyncSmtpConnection,
        email: &[u8],
        recipients: &[String],
        done: &mut Transaction,
    ) -> Result<(), Outcome> {
        let info = connection.server_info();
        let mut parameters = Vec::new();
        let non_ascii = !self.config.from.email.to_string().is_ascii()
            || recipients.iter().any(|r| !r.is_ascii());
        if non_ascii {
            if !info.supports_feature(Extension::SmtpUtfEight) {
                return Err(Outcome::Permanent {
                    reason: "an address is not ASCII and the server does not offer SMTPUTF8"
                        .to_owned(),
                });
            }
            parameters.push(MailParameter::SmtpUtfEight);
        }
        if !email.is_ascii() && info.supports_feature(Extension::EightBitMime) {
            parameters.push(MailParameter::Body(MailBodyParameter::EightBitMime));
        }
        let mail = connection.command(Mail::new(Some(self.config.from.email.clone()), parameters));
        self.within(Step::MailFrom, done, mail).await?.map_err(|e| failed(Step::MailFrom, &e))?;
        let mut accepted = Vec::new();
        for recipient in recipients {
            let address = recipient.parse().map_err(|e| Outcome::Permanent {
                reason: format!("{recipient} is not an address: {e}"),
            })?;
            let rcpt = connection.command(Rcpt::new(address, Vec::new()));
            match self.within(Step::Rcpt, done, rcpt).await? {
                Ok(_) => accepted.push(recipient.clone()),
                Err(error) => match error.status() {
                    Some(code) => {
                        let said = format!("{} {}", u16::from(code), words(&error));
                        if u16::from(code) >= 500 {
                            done.refused.push((recipient.clone(), said));
                        } else {
                            done.deferred.push((recipient.clone(), said));
                        }
                    }
                    None => return Err(failed(Step::Rcpt, &error)),
                },
            }
        }
        if accepted.is_empty() {
            return Ok(());
        }
        // From DATA on, a refusal covers every accepted recipient alike.
        let refuse_all = |done: &mut Transaction, error: &lettre::transport::smtp::Error, step| {
            let Some(code) = error.status() else { return Err(failed(step, error)) };
            let said = format!("{} {}", u16::from(code), words(error));
            let list = if u16::from(code) >= 500 { &mut done.refused } else { &mut done.deferred };
            list.extend(accepted.iter().map(|r| (r.clone(), format!("{said} at {step}"))));
            Ok(())
        };
        if let Err(error) = self.within(Step::Data, done, connection.command(Data)).await? {
            return refuse_all(done, &error, Step::Data);
        }
        // The content is bounded like a command until it is all written; from the final
        // `.` on the server may take the message, so its reply is awaited as long as the
        // engine's timeout allows.
        let handed_over = AtomicBool::new(false);
        let parts = std::iter::once(email).chain(std::iter::from_fn(|| {
            handed_over.store(true, Ordering::Release);
            None
        }));
        let content = connection.message_iter(parts);
        tokio::pin!(content);
        let reply = match tokio::time::timeout(self.config.command_timeout, &mut content).await {
            Ok(reply) => reply,
            Err(_) if handed_over.load(Ordering::Acquire) => content.await,
            Err(_) => {
                done.stalled = true;
                return Err(stalled(Step::Content, self.config.command_timeout));
            }
        };
        let step =
            if handed_over.load(Ordering::Acquire) { Step::EndOfData } else { Step::Content };
        match reply {
            Ok(response) => {
                done.queued = Some(format!(
                    "{} {}",
                    u16::from(response.code()),
                    response.message().collect::<Vec<_>>().join(" ")
                ));
                done.delivered = accepted.clone();
                Ok(())
            }
            Err(error) => refuse_all(done, &error, step),
        }
    }
}

/// Why no connection to the SMTP server was opened.
enum Opening {
    /// Its name did not resolve, or the outbound policy refused an address.
    Resolve(ResolveError),
    /// Connecting, the greeting, EHLO or implicit TLS failed.
    Smtp(lettre::transport::smtp::Error),
}

impl From<ResolveError> for Opening {
    fn from(error: ResolveError) -> Opening {
        Opening::Resolve(error)
    }
}

/// The server's words in a negative reply (lettre keeps them as the error's source).
fn words(error: &lettre::transport::smtp::Error) -> String {
    let text = std::error::Error::source(error).map(ToString::to_string).unwrap_or_default();
    crate::text::cut(text.trim(), 200).into_owned()
}

/// A step left unanswered for `limit`: nothing was handed over, so it is a `Retry`.
fn stalled(step: Step, limit: Duration) -> Outcome {
    Outcome::Retry {
        reason: format!(
            "the SMTP server did not answer {step} within {} (`command_timeout`); nothing was \
             handed over",
            crate::settings::format_duration(limit)
        ),
        after: None,
    }
}

/// What was wrong with the server's certificate, if that is why TLS failed: rustls says
/// `invalid peer certificate: …` (lettre keeps its error as the source).
fn certificate_problem(error: &lettre::transport::smtp::Error) -> Option<String> {
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        let text = cause.to_string();
        if let Some(at) = text.find("invalid peer certificate") {
            return Some(crate::text::cut(text[at..].trim(), 200).into_owned());
        }
        source = cause.source();
    }
    None
}

/// The outcome of `error` at `step`: a reply's class if the server answered, else a
/// lost connection.
fn failed(step: Step, error: &lettre::transport::smtp::Error) -> Outcome {
    match error.status() {
        Some(code) => reply(step, u16::from(code), &words(error)),
        None => lost(step, &crate::text::cut(&error.to_string(), 200)),
    }
}

#[async_trait]
impl Connector for Email {
    fn kind(&self) -> &'static str {
        KIND.name
    }

    fn capabilities(&self) -> Capabilities {
        CAPABILITIES
    }

    async fn send(&self, request: &Request<'_>) -> Report {
        let id = message_id(request.delivery_id, self.config.from_domain());
        let email = match render::compose(&self.config, request) {
            Ok(email) => email,
            Err(reason) => {
                return Report {
                    outcome: Outcome::Permanent { reason },
                    status: None,
                    detail: None,
                    pause: None,
                };
            }
        };
        let mut progress = self.progress_of(request.delivery_id);
        let owed: Vec<String> = self
            .config
            .to
            .iter()
            .map(|m| m.email.to_string())
            .filter(|r| !progress.delivered.contains(r) && !progress.refused.contains_key(r))
            .collect();
        let done = if owed.is_empty() {
            Transaction::default()
        } else {
            self.transaction(&email, &owed).await
        };
        progress.delivered.extend(done.delivered.iter().cloned());
        progress.refused.extend(done.refused.iter().cloned());
        let (outcome, refusals) = settle(&progress, done.failure, &done.deferred, &id);
        let finished = matches!(outcome, Outcome::Delivered { .. } | Outcome::Permanent { .. });
        self.remember(request.delivery_id, progress, finished);
        if let Some(refusals) = &refusals {
            tracing::warn!(destination = request.destination, "{refusals}");
        }
        let detail = match (done.queued, refusals) {
            (Some(queued), Some(refusals)) => Some(format!("{queued}; {refusals}")),
            (queued, refusals) => queued.or(refusals),
        };
        Report { outcome, status: None, detail, pause: None }
    }
}
