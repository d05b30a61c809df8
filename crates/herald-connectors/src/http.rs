//! HTTP plumbing shared by every connector: the one client, the status → outcome rules,
//! transport-error classification, `Retry-After` parsing and bounded body excerpts.
//!
//! The [`Client`] is the only way connectors send HTTP: it applies the outbound policy
//! ([`crate::outbound`]) to every request. Everything here except the client,
//! [`read_excerpt`] and [`read_answer`] is a pure function of its arguments: time comes
//! in as `now`, nothing reads the clock. Nothing here retries either; the engine schedules the next attempt
//! from the returned [`Outcome`], and the engine (not the client) bounds each attempt.

use std::error::Error as _;
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use herald_core::{Outcome, Timestamp};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, LOCATION, RETRY_AFTER};
use reqwest::{IntoUrl, Method, StatusCode};

use crate::ConnectorError;
use crate::outbound::{Outbound, Refused, Resolver};

/// The `User-Agent` herald sends to every destination.
pub const USER_AGENT: &str = concat!("herald/", env!("CARGO_PKG_VERSION"));

/// The longest wait a `Retry-After` can impose; longer requests are cut to this.
///
/// A destination asking for more than an hour is more often misconfigured than serious,
/// and asking again after an hour costs one request. A throttled attempt does not use up
/// an attempt, so the delivery stays bounded only by its maximum age either way.
pub const RETRY_AFTER_CAP: Duration = Duration::from_secs(60 * 60);

/// The most response-body bytes kept as an excerpt.
pub const EXCERPT_LIMIT: usize = 1024;

/// How long reading an excerpt may take once the status line has arrived. The outcome
/// is already decided by then, so a destination that stalls its body must not turn a
/// known answer into the engine's timeout (and so into `Unknown`).
pub const EXCERPT_READ_TIMEOUT: Duration = Duration::from_secs(1);

/// The longest piece of the destination's words quoted inside an outcome's reason.
const REASON_EXCERPT_CHARS: usize = 200;

/// The longest transport-error chain quoted inside an outcome's reason.
const ERROR_CHAIN_CHARS: usize = 300;

/// Settings of the shared HTTP client; `ClientOptions::default()` is what [`client`] uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientOptions {
    /// Bound on establishing a connection (DNS, TCP, TLS). Nothing has been sent when it
    /// fires, so that attempt ends in `Retry`.
    pub connect_timeout: Duration,
    /// Bound on a whole request, or `None` (the default) to leave it to the engine's
    /// per-attempt timeout. When it fires the attempt ends in `Unknown`, because the
    /// request may already have been written.
    pub timeout: Option<Duration>,
    /// Which addresses requests may go to (`[outbound] allow_networks`); the default is
    /// the public internet only.
    pub outbound: Outbound,
}

impl Default for ClientOptions {
    fn default() -> ClientOptions {
        ClientOptions {
            connect_timeout: Duration::from_secs(5),
            timeout: None,
            outbound: Outbound::default(),
        }
    }
}

/// The shared HTTP client could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("could not set up the HTTP client")]
pub struct ClientError(#[source] reqwest::Error);

/// The HTTP client every connector sends through: one connection pool, and the outbound
/// policy applied to every request (see [`crate::outbound`]). It is the only way
/// connectors reach the network over HTTP and it never hands out the reqwest client
/// inside, so no request can skip the policy: an IP literal is checked when the request
/// is sent ([`RequestBuilder::send`]), a name by the client's resolver, which connects
/// only to the addresses it vetted.
#[derive(Debug, Clone)]
pub struct Client {
    inner: reqwest::Client,
    outbound: Arc<Outbound>,
}

impl Client {
    /// Starts a `GET`.
    pub fn get(&self, url: impl IntoUrl) -> RequestBuilder {
        self.request(Method::GET, url)
    }

    /// Starts a `POST`.
    pub fn post(&self, url: impl IntoUrl) -> RequestBuilder {
        self.request(Method::POST, url)
    }

    /// Starts a `PUT`.
    pub fn put(&self, url: impl IntoUrl) -> RequestBuilder {
        self.request(Method::PUT, url)
    }

    /// Starts a `PATCH`.
    pub fn patch(&self, url: impl IntoUrl) -> RequestBuilder {
        self.request(Method::PATCH, url)
    }

    /// Starts a request with any method.
    pub fn request(&self, method: Method, url: impl IntoUrl) -> RequestBuilder {
        RequestBuilder {
            inner: self.inner.request(method, url),
            outbound: Arc::clone(&self.outbound),
        }
    }

    /// The outbound policy, for connectors that connect without HTTP (e-mail).
    pub fn outbound(&self) -> &Outbound {
        &self.outbound
    }
}

/// A request being built by a [`Client`]: reqwest's builder, with a `send` that checks
/// the final URL against the outbound policy first.
#[must_use = "a request is sent only by `send`"]
#[derive(Debug)]
pub struct RequestBuilder {
    inner: reqwest::RequestBuilder,
    outbound: Arc<Outbound>,
}

impl RequestBuilder {
    /// Applies `change` to the reqwest builder inside.
    fn map(self, change: impl FnOnce(reqwest::RequestBuilder) -> reqwest::RequestBuilder) -> Self {
        RequestBuilder { inner: change(self.inner), outbound: self.outbound }
    }

    /// Adds a header.
    pub fn header<K, V>(self, key: K, value: V) -> Self
    where
        HeaderName: TryFrom<K>,
        <HeaderName as TryFrom<K>>::Error: Into<::http::Error>,
        HeaderValue: TryFrom<V>,
        <HeaderValue as TryFrom<V>>::Error: Into<::http::Error>,
    {
        self.map(|inner| inner.header(key, value))
    }

    /// Adds headers.
    pub fn headers(self, headers: HeaderMap) -> Self {
        self.map(|inner| inner.headers(headers))
    }

    /// Sets `Authorization: Bearer <token>` (marked sensitive).
    pub fn bearer_auth(self, token: impl fmt::Display) -> Self {
        self.map(|inner| inner.bearer_auth(token))
    }

    /// Sets the body.
    pub fn body(self, body: impl Into<reqwest::Body>) -> Self {
        self.map(|inner| inner.body(body))
    }

    /// Sets a JSON body and `Content-Type: application/json`.
    pub fn json<T: serde::Serialize + ?Sized>(self, json: &T) -> Self {
        self.map(|inner| inner.json(json))
    }

    /// Sets a form body and its `Content-Type`.
    pub fn form<T: serde::Serialize + ?Sized>(self, form: &T) -> Self {
        self.map(|inner| inner.form(form))
    }

    /// Appends query parameters to the URL.
    pub fn query<T: serde::Serialize + ?Sized>(self, query: &T) -> Self {
        self.map(|inner| inner.query(query))
    }

    /// Bounds this request as a whole (see [`ClientOptions::timeout`]).
    pub fn timeout(self, timeout: Duration) -> Self {
        self.map(|inner| inner.timeout(timeout))
    }

    /// Sends the request, unless its host is an IP address the outbound policy refuses
    /// (a name is vetted by the client's resolver while connecting).
    ///
    /// # Errors
    /// [`SendError::Refused`] when the address is refused (nothing was sent);
    /// [`SendError::Transport`] when no answer came, including a name refused by the
    /// resolver ([`classify_error`] finds the refusal among its causes).
    pub async fn send(self) -> Result<reqwest::Response, SendError> {
        let (client, request) = self.inner.build_split();
        let request = request.map_err(SendError::Transport)?;
        // The URL parser writes every IPv4 form (`2130706433`, `0x7f.1`) as a dotted quad
        // and IPv6 in brackets, so an IP host always parses here.
        let host = request.url().host_str().unwrap_or_default();
        let bare = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
        if let Ok(address) = bare.parse::<IpAddr>() {
            self.outbound.check(address).map_err(SendError::Refused)?;
        }
        client.execute(request).await.map_err(SendError::Transport)
    }
}

/// Why a request got no answer.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The outbound policy refused the destination's address; nothing was sent.
    #[error(transparent)]
    Refused(Refused),
    /// The request could not be built, sent or answered. reqwest's own message names the
    /// URL, which may carry a token: quote it through [`classify_error`], which does not.
    #[error("the request to the destination failed")]
    Transport(#[source] reqwest::Error),
}

/// Builds the client all connectors share: one connection pool, rustls, HTTP/1.1,
/// `TCP_NODELAY`, a 5 s connect timeout, `User-Agent: herald/<version>`, **no
/// redirects** (a destination must not bounce a message, or its credentials, elsewhere),
/// **no proxy** (not even from `HTTP_PROXY`/`HTTPS_PROXY`: a proxy would connect on
/// herald's behalf, out of the outbound policy's sight) and the public internet only.
///
/// # Panics
/// Panics if the TLS backend cannot be initialised, exactly like
/// `reqwest::Client::new`; use [`client_with`] to handle that as an error.
pub fn client() -> Client {
    // The only failure is TLS backend initialisation; rustls with compiled-in roots has
    // nothing from the environment to fail on.
    client_with(&ClientOptions::default()).expect("the TLS backend initialises")
}

/// Builds the shared client with `options`; see [`client`] for what is always set.
///
/// # Errors
/// Returns `ClientError` if the TLS backend cannot be initialised.
pub fn client_with(options: &ClientOptions) -> Result<Client, ClientError> {
    let outbound = Arc::new(options.outbound.clone());
    let resolver = Resolver { outbound: Arc::clone(&outbound) };
    let mut builder = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .dns_resolver(Arc::new(resolver))
        .connect_timeout(options.connect_timeout)
        .user_agent(USER_AGENT)
        .tcp_nodelay(true);
    if let Some(timeout) = options.timeout {
        builder = builder.timeout(timeout);
    }
    let inner = builder.build().map_err(ClientError)?;
    Ok(Client { inner, outbound })
}

/// Maps an HTTP status to an outcome. Pure and total: every `u16` has an answer.
///
/// `retry_after` is the parsed `Retry-After` header, if any. `detail` is what the
/// destination said (a body excerpt) or, for a redirect, where it points; it is quoted
/// in the reason, shortened.
///
/// | status | outcome |
/// |---|---|
/// | 2xx | `Delivered { remote_ref: None }` (a connector that knows the ref sets it) |
/// | 1xx | `Retry` (an interim answer and no final one) |
/// | 3xx | `Permanent` (redirects are not followed) |
/// | 408 | `Retry { after: retry_after }` |
/// | 429 | `Throttled { after: retry_after }` |
/// | 503 with `Retry-After` | `Throttled` |
/// | other 5xx, 503 without | `Retry { after: retry_after }` |
/// | other 4xx | `Permanent` |
/// | anything else | `Unknown` (not a status HTTP defines) |
///
/// A 502 or 504 from a gateway may come after the origin took the request; it is still
/// `Retry` here, as DESIGN.md says. A connector without deduplication or look-up that
/// cares can treat those two as `Unknown` itself.
pub fn classify(status: u16, retry_after: Option<Duration>, detail: &str) -> Outcome {
    let head = status_line(status);
    let said = quoted(detail);
    match status {
        200..=299 => Outcome::delivered(None),
        100..=199 => Outcome::Retry {
            reason: format!(
                "{head} from the destination: an interim answer and no final one; herald will \
                 try again{said}"
            ),
            after: retry_after,
        },
        300..=399 => {
            let target =
                if detail.is_empty() { "elsewhere".to_owned() } else { format!("to {detail}") };
            Outcome::Permanent {
                reason: format!(
                    "{head} from the destination: it redirects {target}, and herald does not \
                     follow redirects; set the destination's URL to the final address"
                ),
            }
        }
        408 => Outcome::Retry {
            reason: format!(
                "{head} from the destination: it gave up waiting for the request; herald will \
                 try again{said}"
            ),
            after: retry_after,
        },
        429 => Outcome::Throttled {
            reason: format!(
                "{head} from the destination: it asks herald to slow down{}{said}",
                wait_words(retry_after)
            ),
            after: retry_after,
        },
        503 if retry_after.is_some() => Outcome::Throttled {
            reason: format!(
                "{head} from the destination: it is temporarily unavailable and asks herald to \
                 come back{}{said}",
                wait_words(retry_after)
            ),
            after: retry_after,
        },
        500..=599 => Outcome::Retry {
            reason: format!(
                "{head} from the destination: {}; herald will try again{said}",
                server_error_words(status)
            ),
            after: retry_after,
        },
        400..=499 => Outcome::Permanent {
            reason: format!("{head} from the destination: {}{said}", client_error_words(status)),
        },
        _ => Outcome::Unknown {
            reason: format!(
                "HTTP {status} from the destination is not a status HTTP defines; herald cannot \
                 tell whether the message was taken{said}"
            ),
        },
    }
}

/// Parses a `Retry-After` value: delay-seconds or an HTTP-date, relative to `now`.
///
/// Returns `None` for anything else (the header is then ignored). Lenient where servers
/// are known to stray from RFC 9110: a fraction of a second rounds up to the next whole
/// second, a negative number or a date in the past means "now" (zero), and every result
/// is capped at [`RETRY_AFTER_CAP`].
pub fn parse_retry_after(value: &str, now: Timestamp) -> Option<Duration> {
    let value = value.trim();
    if let Some(delay) = parse_delay_seconds(value) {
        return Some(delay.min(RETRY_AFTER_CAP));
    }
    let date = httpdate::parse_http_date(value).ok()?;
    let wait = match date.duration_since(UNIX_EPOCH) {
        Ok(since_epoch) => {
            let millis = i64::try_from(since_epoch.as_millis()).unwrap_or(i64::MAX);
            Timestamp::from_millis(millis).since(now)
        }
        // A date before 1970 is long past.
        Err(_) => Duration::ZERO,
    };
    Some(wait.min(RETRY_AFTER_CAP))
}

/// Reads the `Retry-After` header of an answer, if present and understood.
pub fn retry_after(headers: &HeaderMap, now: Timestamp) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?;
    parse_retry_after(value, now)
}

/// Maps a failure to get an answer to an outcome.
///
/// - the outbound policy refused the address (an IP literal, or a name the resolver
///   refused): `Permanent`, with the refusal's words (the rule and the key that allows
///   it); sending again cannot help until the configuration changes;
/// - could not connect (refused, DNS, TLS handshake, connect timeout): nothing was sent,
///   so `Retry`;
/// - a timeout, or the connection failing after it was established: the request may
///   have been written and acted on, so `Unknown`;
/// - the request could not even be built: retrying cannot help, so `Permanent`.
///
/// The reason quotes the error's causes but never reqwest's own message, which names
/// the URL (a webhook URL often carries a token).
pub fn classify_error(error: &SendError) -> Outcome {
    match error {
        SendError::Refused(refused) => refused_outcome(refused),
        SendError::Transport(error) => match refusal_in(error) {
            Some(refused) => refused_outcome(refused),
            None => classify_transport(error),
        },
    }
}

/// A destination the outbound policy refused: permanent, in the refusal's words.
fn refused_outcome(refused: &Refused) -> Outcome {
    Outcome::Permanent { reason: refused.to_string() }
}

/// The policy's refusal among the causes of `error` (the resolver's answer).
fn refusal_in(error: &reqwest::Error) -> Option<&Refused> {
    let mut source = error.source();
    while let Some(cause) = source {
        if let Some(refused) = cause.downcast_ref::<Refused>() {
            return Some(refused);
        }
        source = cause.source();
    }
    None
}

/// Maps a transport failure (no HTTP answer, no refusal) to an outcome.
fn classify_transport(error: &reqwest::Error) -> Outcome {
    let chain = error_chain(error);
    if error.is_builder() {
        Outcome::Permanent { reason: format!("herald could not build the request: {chain}") }
    } else if error.is_connect() {
        // Checked before `is_timeout`: a connect timeout is both, and nothing was sent.
        Outcome::Retry {
            reason: format!("could not connect to the destination, so nothing was sent: {chain}"),
            after: None,
        }
    } else if error.is_timeout() {
        Outcome::Unknown {
            reason: format!(
                "no answer from the destination in time; the request may have reached it: \
                 {chain}"
            ),
        }
    } else if error.is_redirect() {
        Outcome::Permanent {
            reason: "the destination redirected the request, and herald does not follow \
                     redirects; set the destination's URL to the final address"
                .to_owned(),
        }
    } else if let Some(status) = error.status() {
        classify(status.as_u16(), None, "")
    } else {
        Outcome::Unknown {
            reason: format!(
                "the connection failed after the request may have reached the destination: \
                 {chain}"
            ),
        }
    }
}

/// What a destination answered, reduced to what classification and the attempt log use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The HTTP status code.
    pub status: u16,
    /// The `Retry-After` delay, if the header was present and understood.
    pub retry_after: Option<Duration>,
    /// For a redirect, the origin (`scheme://host[:port]`) it points to; never its path
    /// or query, which may carry a token.
    pub location: Option<String>,
    /// At most [`EXCERPT_LIMIT`] bytes of the body, on one line (see [`excerpt`]).
    pub excerpt: String,
}

impl Answer {
    /// The outcome per [`classify`]; a redirect quotes where it points, else the excerpt.
    pub fn outcome(&self) -> Outcome {
        let detail = if (300..=399).contains(&self.status) {
            self.location.as_deref().unwrap_or("")
        } else {
            &self.excerpt
        };
        classify(self.status, self.retry_after, detail)
    }
}

/// Reads the status, `Retry-After`, `Location` and a bounded excerpt of `response`.
///
/// Never buffers more than about [`EXCERPT_LIMIT`] bytes of the body and never waits
/// longer than [`EXCERPT_READ_TIMEOUT`] for it; the answer is already known.
pub async fn read_answer(mut response: reqwest::Response, now: Timestamp) -> Answer {
    let status = response.status().as_u16();
    let retry_after = retry_after(response.headers(), now);
    let location =
        response.headers().get(LOCATION).and_then(|value| value.to_str().ok()).map(redirect_target);
    let excerpt =
        tokio::time::timeout(EXCERPT_READ_TIMEOUT, read_excerpt(&mut response, EXCERPT_LIMIT))
            .await
            .unwrap_or_else(|_| "(the destination did not finish sending its answer)".to_owned());
    Answer { status, retry_after, location, excerpt }
}

/// Reads at most `limit` bytes (plus one, to know it was cut) of a body and renders
/// them with [`excerpt`]. A body that fails midway yields what arrived before.
pub async fn read_excerpt(response: &mut reqwest::Response, limit: usize) -> String {
    excerpt(&read_capped(response, limit.saturating_add(1)).await, limit)
}

/// Reads at most `limit` bytes of a body. A body that fails midway yields what arrived
/// before: either way it is all there is to quote or parse.
pub async fn read_capped(response: &mut reqwest::Response, limit: usize) -> Vec<u8> {
    let mut buf = Vec::new();
    while buf.len() < limit {
        match response.chunk().await {
            Ok(Some(chunk)) => buf.extend_from_slice(&chunk[..chunk.len().min(limit - buf.len())]),
            Ok(None) | Err(_) => break,
        }
    }
    buf
}

/// Reads a whole body of at most `cap` bytes: the bytes that arrived, and whether that
/// is the complete body (false when it was larger than `cap` or broke midway, so a
/// status that was answered cannot be trusted to mean its body).
pub async fn read_whole(response: &mut reqwest::Response, cap: usize) -> (Vec<u8>, bool) {
    let mut bytes = Vec::new();
    let complete = loop {
        match response.chunk().await {
            Ok(Some(chunk)) if bytes.len() + chunk.len() <= cap => bytes.extend_from_slice(&chunk),
            Ok(Some(_)) | Err(_) => break false,
            Ok(None) => break true,
        }
    };
    (bytes, complete)
}

/// Renders at most `limit` bytes of `body` as one line: invalid UTF-8 replaced, control
/// characters and runs of whitespace turned into single spaces, `…` appended if cut.
pub fn excerpt(body: &[u8], limit: usize) -> String {
    let truncated = body.len() > limit;
    let mut cut = body.len().min(limit);
    // Don't split a multi-byte character: back up over continuation bytes.
    if truncated {
        while cut > 0 && body.get(cut).is_some_and(|byte| byte & 0b1100_0000 == 0b1000_0000) {
            cut -= 1;
        }
    }
    let text = String::from_utf8_lossy(&body[..cut]);
    let cleaned: String = text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    let mut res = cleaned.split_whitespace().collect::<Vec<_>>().join(" ");
    if truncated {
        res.push('…');
    }
    res
}

/// `HTTP 404 Not Found`, or `HTTP 499` for a status without a standard phrase.
fn status_line(status: u16) -> String {
    match StatusCode::from_u16(status).ok().and_then(|code| code.canonical_reason()) {
        Some(phrase) => format!("HTTP {status} {phrase}"),
        None => format!("HTTP {status}"),
    }
}

/// ` (it said: "…")` with `detail` shortened, or nothing when it is empty.
fn quoted(detail: &str) -> String {
    if detail.is_empty() {
        return String::new();
    }
    let mut short: String = detail.chars().take(REASON_EXCERPT_CHARS).collect();
    if short.len() < detail.len() && !short.ends_with('…') {
        short.push('…');
    }
    format!(" (it said: \"{short}\")")
}

/// ` for 30s`, or nothing when the destination named no delay.
fn wait_words(retry_after: Option<Duration>) -> String {
    match retry_after {
        Some(wait) => format!(" for {}", humantime::format_duration(wait)),
        None => String::new(),
    }
}

/// What a 5xx means, in words.
fn server_error_words(status: u16) -> &'static str {
    match status {
        502 | 504 => "a gateway in front of it failed",
        503 => "it is temporarily unavailable",
        _ => "it failed on its side",
    }
}

/// What a 4xx means and what a person can do about it.
fn client_error_words(status: u16) -> &'static str {
    match status {
        400 => "it rejected the request as invalid",
        401 => "check the destination's credentials",
        403 => "it refused access; check the destination's credentials and permissions",
        404 => "check the destination's URL",
        405 => "the URL does not accept this method; check the destination's URL",
        410 => "the endpoint is gone for good; remove the destination or give it a new URL",
        413 => "the message is too large for it; shorten the message",
        415 => "it does not accept the content type herald sent; check the destination's URL",
        422 => "it rejected the content of the message",
        _ => "it rejected the request, and sending it again will not help",
    }
}

/// Delay-seconds per RFC 9110 §10.2.3 (`1*DIGIT`), plus a leading `-` (zero) and a
/// fraction (rounded up). Saturates instead of overflowing.
fn parse_delay_seconds(value: &str) -> Option<Duration> {
    let (negative, number) = match value.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, value),
    };
    let (whole, fraction) = match number.split_once('.') {
        Some((whole, fraction)) if !fraction.is_empty() => (whole, fraction),
        Some(_) => return None,
        None => (number, ""),
    };
    let all_digits = |text: &str| text.bytes().all(|byte| byte.is_ascii_digit());
    if whole.is_empty() || !all_digits(whole) || !all_digits(fraction) {
        return None;
    }
    if negative {
        return Some(Duration::ZERO);
    }
    // Only digits remain, so parsing fails on overflow alone.
    let seconds = whole.parse::<u64>().unwrap_or(u64::MAX);
    let round_up = u64::from(fraction.bytes().any(|byte| byte != b'0'));
    Some(Duration::from_secs(seconds.saturating_add(round_up)))
}

/// The origin a `Location` points to, for quoting: `scheme://host[:port]`, or words for
/// a relative one. The path and query may carry a token, so they are never quoted.
fn redirect_target(location: &str) -> String {
    match reqwest::Url::parse(location) {
        Ok(url) if url.has_host() => url.origin().ascii_serialization(),
        Ok(_) => "an address herald cannot use".to_owned(),
        Err(_) => "another path on the same server".to_owned(),
    }
}

/// The causes of a transport error joined with `: `, shortened. Starts below reqwest's
/// own message because that one names the URL.
fn error_chain(error: &reqwest::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if parts.last() != Some(&text) {
            parts.push(text);
        }
        source = cause.source();
    }
    let joined =
        if parts.is_empty() { error_kind_words(error).to_owned() } else { parts.join(": ") };
    let mut res: String = joined.chars().take(ERROR_CHAIN_CHARS).collect();
    if res.len() < joined.len() {
        res.push('…');
    }
    res
}

/// A URL-free description of a transport error that has no causes.
fn error_kind_words(error: &reqwest::Error) -> &'static str {
    if error.is_builder() {
        "invalid request"
    } else if error.is_timeout() {
        "timed out"
    } else if error.is_body() {
        "request or response body error"
    } else {
        "error sending request"
    }
}

#[cfg(test)]
mod tests;

/// Checks a configured API base URL (`key`, e.g. `base_url`) and returns it without a
/// trailing slash; `example` shows a good one in the error.
///
/// # Errors
/// `ConnectorError::InvalidSetting` when it is not an http(s) URL with a host.
pub(crate) fn api_base(value: &str, key: &str, example: &str) -> Result<String, ConnectorError> {
    let url = reqwest::Url::parse(value)
        .map_err(|error| ConnectorError::InvalidSetting(format!("{key}: not a URL ({error})")))?;
    if !matches!(url.scheme(), "http" | "https") || !url.has_host() {
        return Err(ConnectorError::InvalidSetting(format!(
            "{key}: must be an http(s) URL such as {example}"
        )));
    }
    Ok(value.trim_end_matches('/').to_owned())
}

/// An API's answer as the JSON connectors classify it: status, the delay it asked for,
/// its headers and at most the reader's limit of its body.
#[derive(Debug)]
pub(crate) struct ApiAnswer {
    /// The HTTP status.
    pub(crate) status: u16,
    /// `Retry-After`, if the answer carried one.
    pub(crate) retry_after: Option<Duration>,
    /// The headers (rate-limit and error-type headers).
    pub(crate) headers: HeaderMap,
    /// The body, capped.
    pub(crate) body: Vec<u8>,
}

/// Sends `request` and reads the answer's body up to `limit` bytes, waiting at most
/// `read_within` for the body once the status arrived (`None`: as long as the attempt
/// lasts, for a body the outcome depends on).
///
/// # Errors
/// The transport error when no answer arrived.
pub(crate) async fn exchange(
    request: RequestBuilder,
    now: Timestamp,
    limit: usize,
    read_within: Option<Duration>,
) -> Result<ApiAnswer, SendError> {
    let mut response = request.send().await?;
    let status = response.status().as_u16();
    let retry_after = retry_after(response.headers(), now);
    let headers = response.headers().clone();
    let body = match read_within {
        Some(within) => tokio::time::timeout(within, read_capped(&mut response, limit))
            .await
            .unwrap_or_default(),
        None => read_capped(&mut response, limit).await,
    };
    Ok(ApiAnswer { status, retry_after, headers, body })
}
