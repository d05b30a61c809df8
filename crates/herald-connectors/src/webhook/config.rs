//! A webhook destination's settings as configured ([`WebhookConfig`]) and their
//! validated form ([`Endpoint`]). Parse, don't check: once an `Endpoint` exists, its URL,
//! signing key and headers are known to be usable, so rendering cannot fail on them.
//!
//! Error messages name the setting and why it is wrong, but never echo the secret, a
//! header value, or the URL (webhook URLs often carry a token).

use std::fmt;

use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use reqwest::header::{HeaderName, HeaderValue};

use crate::ConnectorError;

/// Settings of a `kind = "webhook"` destination.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookConfig {
    /// Where to POST.
    pub url: String,
    /// The Standard Webhooks signing secret (`whsec_...`), already resolved.
    pub secret: Option<String>,
    /// Extra headers sent with every request.
    pub headers: Vec<(String, String)>,
}

/// Redacts the secret, header values and the URL's path and query.
impl fmt::Debug for WebhookConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let header_names: Vec<&str> = self.headers.iter().map(|(name, _)| name.as_str()).collect();
        f.debug_struct("WebhookConfig")
            .field("url", &redacted_url(&self.url))
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .field("headers", &header_names)
            .finish()
    }
}

/// A validated webhook endpoint: where to POST, how to sign, what to add.
pub struct Endpoint {
    /// The parsed `http`/`https` URL.
    pub(super) url: reqwest::Url,
    /// The signing key, when a secret is configured.
    pub(super) signer: Option<standardwebhooks::Webhook>,
    /// Extra headers, validated, values marked sensitive.
    pub(super) headers: Vec<(HeaderName, HeaderValue)>,
}

/// Redacts the signing key, header values and the URL's path and query.
impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let header_names: Vec<&str> = self.headers.iter().map(|(name, _)| name.as_str()).collect();
        f.debug_struct("Endpoint")
            .field("url", &self.url.origin().ascii_serialization())
            .field("signed", &self.signer.is_some())
            .field("headers", &header_names)
            .finish()
    }
}

/// Headers herald sets itself; configuring one of them would break signing, dedup or
/// framing, so it is rejected.
pub const RESERVED_HEADERS: &[&str] = &[
    "content-type",
    "content-length",
    "transfer-encoding",
    "host",
    "connection",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "idempotency-key",
];

/// Standard Webhooks secrets are 24 to 64 random bytes (the spec's "Signature scheme").
const SECRET_BYTES: std::ops::RangeInclusive<usize> = 24..=64;

/// Standard base64 that accepts the secret with or without its `=` padding, as the
/// reference Python library does.
const SECRET_BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

impl Endpoint {
    /// Validates `config`: an `http`/`https` URL, a `whsec_` secret of 24 to 64 bytes
    /// when set (surrounding whitespace, such as a file's final newline, is ignored),
    /// valid header names and values, none of them a header herald sets itself.
    ///
    /// # Errors
    /// Returns `ConnectorError::InvalidSetting` naming the first unusable setting.
    pub fn parse(config: &WebhookConfig) -> Result<Endpoint, ConnectorError> {
        let url = parse_url(&config.url)?;
        let signer = config.secret.as_deref().map(parse_secret).transpose()?;
        let headers = config
            .headers
            .iter()
            .map(|(name, value)| parse_header(name, value))
            .collect::<Result<_, _>>()?;
        Ok(Endpoint { url, signer, headers })
    }
}

fn parse_url(url: &str) -> Result<reqwest::Url, ConnectorError> {
    let parsed = reqwest::Url::parse(url.trim())
        .map_err(|error| invalid(format!("webhook url: not a valid URL ({error})")))?;
    match parsed.scheme() {
        "http" | "https" if parsed.has_host() => Ok(parsed),
        "http" | "https" => Err(invalid("webhook url: names no host".to_owned())),
        scheme => {
            Err(invalid(format!("webhook url: must start with http:// or https://, not {scheme}:")))
        }
    }
}

fn parse_secret(secret: &str) -> Result<standardwebhooks::Webhook, ConnectorError> {
    let secret = secret.trim();
    let Some(encoded) = secret.strip_prefix("whsec_") else {
        let why = if secret.starts_with("whsk_") || secret.starts_with("whpk_") {
            "ed25519 keys (whsk_/whpk_) are not supported; use a whsec_ secret"
        } else {
            "must be a Standard Webhooks secret, \"whsec_\" followed by base64 \
             (the value given does not start with \"whsec_\")"
        };
        return Err(invalid(format!("webhook secret: {why}")));
    };
    // The decoder's error names the offending byte and offset, part of the secret: drop it.
    let key = SECRET_BASE64.decode(encoded).map_err(|_| {
        invalid("webhook secret: the part after \"whsec_\" is not valid base64".to_owned())
    })?;
    if !SECRET_BYTES.contains(&key.len()) {
        return Err(invalid(format!(
            "webhook secret: decodes to {} bytes; Standard Webhooks secrets are {} to {} \
             random bytes",
            key.len(),
            SECRET_BYTES.start(),
            SECRET_BYTES.end()
        )));
    }
    standardwebhooks::Webhook::from_bytes(key)
        .map_err(|_| invalid("webhook secret: not usable as a signing key".to_owned()))
}

fn parse_header(name: &str, value: &str) -> Result<(HeaderName, HeaderValue), ConnectorError> {
    let parsed_name = HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| invalid(format!("webhook header {name:?}: not a valid HTTP header name")))?;
    if RESERVED_HEADERS.contains(&parsed_name.as_str()) {
        return Err(invalid(format!(
            "webhook header {name:?}: herald sets this header itself; remove it from the \
             destination's headers"
        )));
    }
    let mut parsed_value = HeaderValue::from_str(value).map_err(|_| {
        invalid(format!(
            "webhook header {name:?}: the value is not a valid HTTP header value (line breaks \
             or control characters)"
        ))
    })?;
    // Header values often are credentials (`Authorization`): keep them out of Debug output.
    parsed_value.set_sensitive(true);
    Ok((parsed_name, parsed_value))
}

fn invalid(message: String) -> ConnectorError {
    ConnectorError::InvalidSetting(message)
}

/// `scheme://host[:port]/…` for display, or a placeholder when it does not parse.
fn redacted_url(url: &str) -> String {
    match reqwest::Url::parse(url.trim()) {
        Ok(parsed) if parsed.has_host() => format!("{}/…", parsed.origin().ascii_serialization()),
        _ => "<unparsed url>".to_owned(),
    }
}
