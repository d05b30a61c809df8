//! A small client of herald's HTTP API for the CLI commands, the demo and the benchmark,
//! and where the commands find their API token ([`Bearer::load`]).

use std::path::Path;

use anyhow::{Context, bail};
use serde_json::Value;

/// The environment variable the commands read their API token from.
pub const TOKEN_VAR: &str = "HERALD_TOKEN";

/// Talks to one herald server.
#[derive(Debug, Clone)]
pub struct Client {
    base: String,
    http: reqwest::Client,
    bearer: Option<Bearer>,
}

/// An API token and where it came from (for messages; never the token itself).
#[derive(Clone)]
pub struct Bearer {
    token: String,
    source: String,
}

/// Never shows the token.
impl std::fmt::Debug for Bearer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bearer").field("source", &self.source).finish_non_exhaustive()
    }
}

impl Bearer {
    /// The token itself, for an `Authorization: Bearer` header another client sends
    /// (the benchmark's load process).
    pub fn secret(&self) -> &str {
        &self.token
    }

    /// The token in `file` if given, else in `HERALD_TOKEN` if set and not empty.
    ///
    /// # Errors
    /// When the file cannot be read or is empty, or the token cannot be a token (a
    /// space or control character, or a `sha256:` hash). Messages never show the token.
    pub fn load(file: Option<&Path>) -> anyhow::Result<Option<Bearer>> {
        let (token, source) = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read the token file {}", path.display()))?;
                (text, format!("--token-file {}", path.display()))
            }
            None => match std::env::var(TOKEN_VAR) {
                Ok(text) if !text.trim().is_empty() => (text, TOKEN_VAR.to_string()),
                _ => return Ok(None),
            },
        };
        let token = token.trim().to_string();
        if token.is_empty() {
            bail!("{source}: the file is empty; put the token `herald token create` printed in it");
        }
        if token.starts_with("sha256:") {
            bail!(
                "{source} holds a token's hash, which belongs in the server's [[tokens]]; the \
                 client needs the token itself (the `hrld_...` line `herald token create` printed)"
            );
        }
        if !token.bytes().all(|b| b.is_ascii_graphic()) {
            bail!(
                "{source} has characters a token cannot have (spaces, line breaks or non-ASCII); \
                 it should hold only the `hrld_...` token `herald token create` printed"
            );
        }
        Ok(Some(Bearer { token, source }))
    }
}

impl Client {
    /// A client of the server at `base` (`http://127.0.0.1:8080`), without a token.
    pub fn new(base: &str) -> Client {
        Client {
            base: base.trim_end_matches('/').to_string(),
            http: reqwest::Client::new(),
            bearer: None,
        }
    }

    /// The server's base URL, for messages.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// This client, sending `bearer` (if any) as `Authorization: Bearer` on every request.
    pub fn with_bearer(mut self, bearer: Option<Bearer>) -> Client {
        self.bearer = bearer;
        self
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let req = self.http.request(method, format!("{}{path}", self.base));
        match &self.bearer {
            Some(bearer) => req.bearer_auth(&bearer.token),
            None => req,
        }
    }

    /// A client of the server at `base` that, besides the public roots, trusts the CA
    /// certificates in the PEM file `ca_file` (an `https://` herald whose certificate a
    /// private CA issued).
    ///
    /// # Errors
    /// When `ca_file` cannot be read or holds no usable certificate.
    pub fn trusting(base: &str, ca_file: &Path) -> anyhow::Result<Client> {
        let shown = ca_file.display();
        let pem = std::fs::read(ca_file).with_context(|| {
            format!("cannot read the CA file {shown} (--ca-file, HERALD_CA_FILE)")
        })?;
        let certificates = reqwest::Certificate::from_pem_bundle(&pem)
            .with_context(|| format!("the CA file {shown} is not readable as PEM certificates"))?;
        if certificates.is_empty() {
            bail!(
                "the CA file {shown} holds no certificate; give the CA's certificate in PEM \
                 (-----BEGIN CERTIFICATE-----)"
            );
        }
        let mut builder = reqwest::Client::builder();
        for certificate in certificates {
            builder = builder.add_root_certificate(certificate);
        }
        let http = builder
            .build()
            .with_context(|| format!("cannot use the certificates in {shown} as trust roots"))?;
        Ok(Client { base: base.trim_end_matches('/').to_string(), http, bearer: None })
    }

    /// `GET path` → JSON.
    ///
    /// # Errors
    /// When the server is unreachable or answers with a problem.
    pub async fn get(&self, path: &str) -> anyhow::Result<Value> {
        let res = self.request(reqwest::Method::GET, path).send().await;
        self.answer(path, res).await.map(|(_, body)| body)
    }

    /// `POST path` with a JSON body → (status, JSON).
    ///
    /// # Errors
    /// When the server is unreachable or answers with a problem.
    pub async fn post(&self, path: &str, body: &Value) -> anyhow::Result<(u16, Value)> {
        let res = self.request(reqwest::Method::POST, path).json(body).send().await;
        self.answer(path, res).await
    }

    /// `GET path` as a `text/event-stream`: the open response, whose body the caller
    /// reads as it arrives.
    ///
    /// # Errors
    /// [`StreamError::Refused`] when the server answers 4xx (asking again will not help),
    /// [`StreamError::Transient`] when it cannot be reached or answers 5xx.
    pub async fn events(&self, path: &str) -> Result<reqwest::Response, StreamError> {
        let res = self
            .request(reqwest::Method::GET, path)
            .header(reqwest::header::ACCEPT, "text/event-stream")
            .send()
            .await
            .map_err(|error| StreamError::Transient(self.unreachable(error)))?;
        let status = res.status().as_u16();
        if status < 400 {
            return Ok(res);
        }
        let text = res.text().await.unwrap_or_default();
        let body: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        let error = anyhow::anyhow!("{}", self.problem(status, &body));
        Err(if status < 500 { StreamError::Refused(error) } else { StreamError::Transient(error) })
    }

    fn unreachable(&self, error: reqwest::Error) -> anyhow::Error {
        anyhow::Error::new(error).context(format!(
            "cannot reach herald at {}; is `herald serve` running? (set --server or HERALD_SERVER)",
            self.base
        ))
    }

    async fn answer(
        &self,
        path: &str,
        res: Result<reqwest::Response, reqwest::Error>,
    ) -> anyhow::Result<(u16, Value)> {
        let res = res.map_err(|error| self.unreachable(error))?;
        let status = res.status().as_u16();
        let text = res.text().await.with_context(|| format!("reading the answer to {path}"))?;
        let body: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        if status >= 400 {
            bail!("{}", self.problem(status, &body));
        }
        Ok((status, body))
    }

    /// An error answer in words, with a hint about the token where it matters.
    fn problem(&self, status: u16, body: &Value) -> String {
        let mut text = problem_text(status, body);
        match (status, &self.bearer) {
            (401, None) => text.push_str(&format!(
                "\nherald sent no token: put one in {TOKEN_VAR} or a file named by --token-file"
            )),
            (401, Some(bearer)) => text.push_str(&format!(
                "\nthe token from {} is not one the server knows",
                bearer.source
            )),
            (403, Some(bearer)) => text.push_str(&format!(
                "\nthe token from {} lacks the scope; use one that has it",
                bearer.source
            )),
            _ => {}
        }
        text
    }
}

/// Why an event stream could not be opened.
#[derive(Debug)]
pub enum StreamError {
    /// The server is unreachable or failed (5xx): worth another try.
    Transient(anyhow::Error),
    /// The server refused the request (4xx): another try gets the same answer.
    Refused(anyhow::Error),
}

/// A problem+json answer as one or more readable lines.
fn problem_text(status: u16, body: &Value) -> String {
    let title = body.get("title").and_then(Value::as_str).unwrap_or("request failed");
    let mut res = format!("HTTP {status} {title}");
    if let Some(detail) = body.get("detail").and_then(Value::as_str) {
        res.push_str(": ");
        res.push_str(detail);
    }
    // A single field error is already the detail; list them only when there are more.
    if let Some(errors) = body.get("errors").and_then(Value::as_array).filter(|e| e.len() > 1) {
        for error in errors {
            let field = error.get("field").and_then(Value::as_str).unwrap_or("?");
            let message = error.get("message").and_then(Value::as_str).unwrap_or("");
            res.push_str(&format!("\n  {field}: {message}"));
        }
    }
    if let Value::String(text) = body {
        res.push_str(": ");
        res.push_str(text);
    }
    res
}
