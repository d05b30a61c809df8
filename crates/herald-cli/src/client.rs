//! A small client of herald's HTTP API for the CLI commands, the demo and the benchmark.

use std::path::Path;

use anyhow::{Context, bail};
use serde_json::Value;

/// Talks to one herald server.
#[derive(Debug, Clone)]
pub struct Client {
    base: String,
    http: reqwest::Client,
}

impl Client {
    /// A client of the server at `base` (`http://127.0.0.1:8080`).
    pub fn new(base: &str) -> Client {
        Client { base: base.trim_end_matches('/').to_string(), http: reqwest::Client::new() }
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
        Ok(Client { base: base.trim_end_matches('/').to_string(), http })
    }

    /// `GET path` → JSON.
    ///
    /// # Errors
    /// When the server is unreachable or answers with a problem.
    pub async fn get(&self, path: &str) -> anyhow::Result<Value> {
        let res = self.http.get(format!("{}{path}", self.base)).send().await;
        self.answer(path, res).await.map(|(_, body)| body)
    }

    /// `POST path` with a JSON body → (status, JSON).
    ///
    /// # Errors
    /// When the server is unreachable or answers with a problem.
    pub async fn post(&self, path: &str, body: &Value) -> anyhow::Result<(u16, Value)> {
        let res = self.http.post(format!("{}{path}", self.base)).json(body).send().await;
        self.answer(path, res).await
    }

    async fn answer(
        &self,
        path: &str,
        res: Result<reqwest::Response, reqwest::Error>,
    ) -> anyhow::Result<(u16, Value)> {
        let res = res.with_context(|| {
            format!("cannot reach herald at {}; is `herald serve` running? (set --server or HERALD_SERVER)", self.base)
        })?;
        let status = res.status().as_u16();
        let text = res.text().await.with_context(|| format!("reading the answer to {path}"))?;
        let body: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        if status >= 400 {
            bail!("{}", problem_text(status, &body));
        }
        Ok((status, body))
    }
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
