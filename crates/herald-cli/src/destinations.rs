//! `herald destinations`: each destination's health and counts as a table.

use serde_json::Value;

/// Longest reason shown in the table; `--output json` has the whole text.
const REASON_WIDTH: usize = 60;

/// The state of a destination in one word or two: what holds it back, if anything.
pub fn state(destination: &Value) -> &'static str {
    let flag = |key: &str| destination.get(key).and_then(Value::as_bool).unwrap_or(false);
    let circuit = destination.get("circuit").and_then(Value::as_str).unwrap_or("");
    if flag("paused") {
        "paused"
    } else if circuit == "open" {
        "circuit open"
    } else if circuit == "half_open" {
        "circuit probing"
    } else if flag("throttled") {
        "throttled"
    } else {
        "healthy"
    }
}

/// Why the destination is held back (or its last error), and what brings it back.
fn reason(destination: &Value) -> String {
    let text = |key: &str| destination.get(key).and_then(Value::as_str);
    let name = text("name").unwrap_or("");
    let res = if let Some(reason) = text("paused_reason") {
        format!("{reason} (resume: POST /v1/destinations/{name}/resume)")
    } else if destination.get("paused").and_then(Value::as_bool) == Some(true) {
        format!("paused by an operator (resume: POST /v1/destinations/{name}/resume)")
    } else if let Some(reason) = text("circuit_reason") {
        match text("circuit_open_until") {
            Some(until) => format!("{reason}; next probe at {until}"),
            None => reason.to_string(),
        }
    } else {
        text("last_error").unwrap_or("-").to_string()
    };
    if res.chars().count() > REASON_WIDTH {
        let cut: String = res.chars().take(REASON_WIDTH - 3).collect();
        format!("{cut}...")
    } else {
        res
    }
}

/// The table of `GET /v1/destinations`'s answer, one line per destination.
pub fn table(view: &Value) -> String {
    let header =
        ["NAME", "KIND", "STATE", "PENDING", "HELD", "DELIVERED", "FAILED", "LAST ERROR / REASON"];
    let mut rows: Vec<Vec<String>> = vec![header.iter().map(|h| h.to_string()).collect()];
    for d in view.get("destinations").and_then(Value::as_array).into_iter().flatten() {
        let text = |key: &str| d.get(key).and_then(Value::as_str).unwrap_or("").to_string();
        let n = |key: &str| d.get(key).and_then(Value::as_u64).unwrap_or(0).to_string();
        rows.push(vec![
            text("name"),
            text("kind"),
            state(d).to_string(),
            n("pending"),
            n("held"),
            n("delivered"),
            n("failed"),
            reason(d),
        ]);
    }
    let mut widths = vec![0usize; header.len()];
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut res = String::new();
    for row in &rows {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .enumerate()
            // Counts align right, words left.
            .map(|(i, (cell, &width))| {
                if (3..7).contains(&i) {
                    format!("{cell:>width$}")
                } else {
                    format!("{cell:<width$}")
                }
            })
            .collect();
        res.push_str(cells.join("  ").trim_end());
        res.push('\n');
    }
    // The table cuts reasons short; what holds a destination back, and what brings it
    // back, is worth its whole text.
    for d in view.get("destinations").and_then(Value::as_array).into_iter().flatten() {
        let text = |key: &str| d.get(key).and_then(Value::as_str);
        let name = text("name").unwrap_or("");
        if let Some(reason) = text("paused_reason") {
            res.push_str(&format!("{name}: paused by the destination: {reason}\n"));
            res.push_str(&format!("  resume with: POST /v1/destinations/{name}/resume\n"));
        }
        if let Some(reason) = text("circuit_reason") {
            let circuit = text("circuit").unwrap_or("");
            match text("circuit_open_until") {
                Some(until) => res.push_str(&format!(
                    "{name}: circuit {circuit}: {reason}; next probe at {until}\n"
                )),
                None => res.push_str(&format!("{name}: circuit {circuit}: {reason}\n")),
            }
        }
    }
    res
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::table;

    #[test]
    fn each_destination_gets_a_row_saying_what_holds_it_back() {
        let view = json!({"destinations": [
            {"name": "ops", "kind": "webhook", "circuit": "closed", "paused": false,
             "throttled": false, "pending": 2, "held": 0, "delivered": 10, "failed": 1,
             "last_error": "HTTP 503"},
            {"name": "chat", "kind": "slack", "circuit": "open", "paused": false,
             "throttled": false, "pending": 0, "held": 1, "delivered": 0, "failed": 0,
             "circuit_reason": "5 failures in a row", "circuit_open_until": "2026-12-03T12:00:30Z"},
            {"name": "pager", "kind": "pagerduty", "circuit": "closed", "paused": true,
             "paused_reason": "the routing key was revoked", "throttled": false},
            {"name": "slow", "kind": "teams", "circuit": "closed", "paused": false, "throttled": true},
        ]});
        let text = table(&view);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 8, "{text}");
        assert!(lines[0].starts_with("NAME   KIND       STATE"), "{text}");
        assert!(lines[1].contains("healthy") && lines[1].ends_with("HTTP 503"), "{text}");
        assert!(lines[2].contains("circuit open"), "{text}");
        assert!(
            lines[2].ends_with("5 failures in a row; next probe at 2026-12-03T12:00:30Z"),
            "{text}"
        );
        assert!(
            lines[3].contains("paused") && lines[3].contains("routing key was revoked"),
            "{text}"
        );
        assert!(lines[4].contains("throttled"), "{text}");
        assert_eq!(
            lines[5..],
            [
                "chat: circuit open: 5 failures in a row; next probe at 2026-12-03T12:00:30Z",
                "pager: paused by the destination: the routing key was revoked",
                "  resume with: POST /v1/destinations/pager/resume"
            ]
        );
    }
}
