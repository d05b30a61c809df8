//! Live per-destination progress of a broadcast, for `send --wait` and the demo.

use std::collections::HashMap;
use std::io::Write;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::client::Client;

/// How often the broadcast is re-read while following it.
const REFRESH: Duration = Duration::from_millis(100);

/// One delivery's line as last printed.
fn describe(delivery: &Value) -> String {
    let text = |key: &str| delivery.get(key).and_then(Value::as_str).unwrap_or("");
    let number = |key: &str| delivery.get(key).and_then(Value::as_u64).unwrap_or(0);
    let state = text("state");
    let mut res = match state {
        "pending" if number("attempts") > 0 => {
            format!(
                "retrying   (attempt {} of {} failed)",
                number("attempts"),
                number("max_attempts")
            )
        }
        "failed" => format!("FAILED     ({})", text("failure_reason")),
        "delivered" if delivery.get("unconfirmed").and_then(Value::as_bool) == Some(true) => {
            "delivered  (unconfirmed: accepted, the destination does not confirm posts)".to_string()
        }
        other => format!("{other:<10}"),
    };
    if state != "delivered" && !text("last_error").is_empty() {
        let error: String = text("last_error").chars().take(70).collect();
        res.push_str(&format!("  {error}"));
    }
    res
}

/// The label of a delivery: destination plus which message of the thread.
fn label(delivery: &Value) -> String {
    let destination = delivery.get("destination").and_then(Value::as_str).unwrap_or("?");
    let seq = delivery.get("seq").and_then(Value::as_u64).unwrap_or(0);
    let which = if seq == 0 { "original".to_string() } else { format!("update {seq}") };
    format!("{destination:<16} {which:<9}")
}

/// Re-reads broadcast `id` until it is no longer in progress (or `timeout` passes),
/// printing a line whenever a delivery changes. Returns the last view.
///
/// # Errors
/// When the server cannot be read.
pub async fn follow(
    client: &Client,
    id: &str,
    timeout: Duration,
    out: &mut impl Write,
) -> anyhow::Result<Value> {
    let started = Instant::now();
    let mut shown: HashMap<String, String> = HashMap::new();
    loop {
        let view = client.get(&format!("/v1/broadcasts/{id}")).await?;
        let deliveries =
            view.get("deliveries").and_then(Value::as_array).cloned().unwrap_or_default();
        for delivery in &deliveries {
            let key = delivery.get("id").and_then(Value::as_str).unwrap_or("").to_string();
            let line = describe(delivery);
            if shown.get(&key) != Some(&line) {
                writeln!(
                    out,
                    "  {:>6.1}s  {}  {line}",
                    started.elapsed().as_secs_f64(),
                    label(delivery)
                )?;
                shown.insert(key, line);
            }
        }
        out.flush()?;
        let state = view.get("state").and_then(Value::as_str).unwrap_or("");
        if state != "in_progress" || started.elapsed() >= timeout {
            return Ok(view);
        }
        tokio::time::sleep(REFRESH).await;
    }
}

/// The closing summary: counts per state and the overall state.
pub fn summary(view: &Value) -> String {
    let count =
        |key: &str| view.pointer(&format!("/summary/{key}")).and_then(Value::as_u64).unwrap_or(0);
    format!(
        "{}: {} delivered, {} failed, {} pending, {} cancelled (of {})",
        view.get("state").and_then(Value::as_str).unwrap_or("?"),
        count("delivered"),
        count("failed"),
        count("pending"),
        count("cancelled"),
        count("total"),
    )
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::describe;

    #[test]
    fn each_state_reads_in_plain_words() {
        let line = |d: serde_json::Value| describe(&d);
        assert_eq!(line(json!({"state": "delivered"})).trim_end(), "delivered");
        assert!(
            line(json!({"state": "delivered", "unconfirmed": true})).contains("unconfirmed"),
            "an unconfirmed post must say so"
        );
        let retrying = line(json!({
            "state": "pending", "attempts": 2, "max_attempts": 8, "last_error": "HTTP 503"
        }));
        assert!(retrying.starts_with("retrying   (attempt 2 of 8 failed)  HTTP 503"), "{retrying}");
        let failed = line(json!({"state": "failed", "failure_reason": "permanent"}));
        assert!(failed.starts_with("FAILED     (permanent)"), "{failed}");
    }
}
