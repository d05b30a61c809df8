//! How a followed broadcast is shown: one row per delivery, as a table redrawn in place
//! on a terminal or as one plain line per change elsewhere (pipes, logs, `NO_COLOR`).
//!
//! A small hand-written renderer: the table needs only "cursor up" and "clear line",
//! which every terminal since the VT100 understands, so a terminal crate would add a
//! dependency tree for two escape sequences.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::time::{Duration, SystemTime};

use serde_json::Value;

/// Longest last error shown in the table; the full text is in `herald status`.
const ERROR_WIDTH: usize = 48;

/// Where and how progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Display {
    /// A table redrawn in place (stdout is a terminal that takes escape sequences).
    Terminal,
    /// One line per change, each printed once, in order.
    Plain,
    /// Nothing while following (`--output json` prints the end result only).
    Silent,
}

impl Display {
    /// [`Display::Terminal`] when stdout is a terminal, `NO_COLOR` is unset or empty
    /// and `TERM` is not `dumb`; [`Display::Plain`] otherwise.
    pub fn detect() -> Display {
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|value| !value.is_empty());
        let dumb = std::env::var("TERM").is_ok_and(|term| term == "dumb");
        if std::io::stdout().is_terminal() && !no_color && !dumb {
            Display::Terminal
        } else {
            Display::Plain
        }
    }
}

/// The deliveries of one broadcast as last shown.
#[derive(Debug)]
pub struct Board {
    display: Display,
    /// Per delivery id, what its last plain line reported (see [`signature`]).
    shown: HashMap<String, String>,
    /// How many lines the last drawn table took, to move back over them.
    drawn: usize,
}

impl Board {
    /// An empty board drawn as `display` says.
    pub fn new(display: Display) -> Board {
        Board { display, shown: HashMap::new(), drawn: 0 }
    }

    /// How this board draws.
    pub fn display(&self) -> Display {
        self.display
    }

    /// Shows `view` (a broadcast as the API answers it), observed at `now`.
    ///
    /// # Errors
    /// When `out` cannot be written.
    pub fn show(
        &mut self,
        view: &Value,
        now: SystemTime,
        out: &mut impl Write,
    ) -> std::io::Result<()> {
        match self.display {
            Display::Silent => Ok(()),
            Display::Plain => self.lines(view, now, out),
            Display::Terminal => self.redraw(view, now, out),
        }
    }

    /// A line for each delivery whose state changed since its last line.
    fn lines(
        &mut self,
        view: &Value,
        now: SystemTime,
        out: &mut impl Write,
    ) -> std::io::Result<()> {
        for delivery in deliveries(view) {
            let id = text(delivery, "id").to_string();
            // A claim is no event of the stream, only something a re-read may catch in
            // passing; the lines read it as the state it was claimed from (its attempt
            // count and last error are those until the attempt's outcome), so they are
            // the same whenever the re-read happens.
            let mut delivery = delivery.clone();
            if text(&delivery, "state") == "in_flight" {
                delivery["state"] = Value::from("pending");
            }
            let signature = signature(&delivery);
            if self.shown.get(&id) == Some(&signature) {
                continue;
            }
            writeln!(out, "{} {} {}", clock(now), label(&delivery), phrase(&delivery, now))?;
            self.shown.insert(id, signature);
        }
        out.flush()
    }

    /// The table drawn over the previous one.
    fn redraw(
        &mut self,
        view: &Value,
        now: SystemTime,
        out: &mut impl Write,
    ) -> std::io::Result<()> {
        let lines = table(view, now);
        let mut text = String::new();
        if self.drawn > 0 {
            // Cursor up over the last table, then each line cleared before it is written.
            text.push_str(&format!("\x1b[{}A", self.drawn));
        }
        for line in &lines {
            text.push_str("\r\x1b[2K");
            text.push_str(line);
            text.push('\n');
        }
        // Clear what is left of a longer previous table.
        text.push_str("\x1b[J");
        self.drawn = lines.len();
        out.write_all(text.as_bytes())?;
        out.flush()
    }
}

/// The broadcast's deliveries.
fn deliveries(view: &Value) -> impl Iterator<Item = &Value> {
    view.get("deliveries").and_then(Value::as_array).into_iter().flatten()
}

fn text<'a>(value: &'a Value, key: &str) -> &'a str {
    value.get(key).and_then(Value::as_str).unwrap_or("")
}

fn number(value: &Value, key: &str) -> u64 {
    value.get(key).and_then(Value::as_u64).unwrap_or(0)
}

/// What makes two reports of a delivery the same change: its state and attempt count
/// (the relative "next in" of a retry moves with the clock, not with the delivery).
fn signature(delivery: &Value) -> String {
    format!("{}/{}", text(delivery, "state"), number(delivery, "attempts"))
}

/// The destination, plus which message of the thread for an update.
pub fn label(delivery: &Value) -> String {
    match number(delivery, "seq") {
        0 => text(delivery, "destination").to_string(),
        seq => format!("{} update {seq}", text(delivery, "destination")),
    }
}

/// `3 of 8`: attempts made of those allowed.
fn attempt(delivery: &Value) -> String {
    format!("{} of {}", number(delivery, "attempts"), number(delivery, "max_attempts"))
}

/// The last error cut to `width` characters.
fn shorten(error: &str, width: usize) -> String {
    if error.chars().count() <= width {
        return error.to_string();
    }
    let mut res: String = error.chars().take(width.saturating_sub(3)).collect();
    res.push_str("...");
    res
}

/// What a delivery's state means, in words, as a plain line says it.
pub fn phrase(delivery: &Value, now: SystemTime) -> String {
    let error = text(delivery, "last_error");
    let state = text(delivery, "state");
    match state {
        "pending" if number(delivery, "attempts") > 0 => {
            let mut res = format!("retrying (attempt {})", attempt(delivery));
            if !error.is_empty() {
                res.push_str(&format!(": {}", shorten(error, 120)));
            }
            if let Some(next) = next_attempt(delivery, now) {
                res.push_str(&format!("; next {next}"));
            }
            res
        }
        "in_flight" => format!("sending (attempt {})", number(delivery, "attempts").max(1)),
        "waiting" => "waiting for the earlier message of its thread".to_string(),
        "held" => format!(
            "held (attempt {}): {}; release it with `herald retry {}` or `herald cancel {}`",
            attempt(delivery),
            text(delivery, "hold_reason"),
            text(delivery, "id"),
            text(delivery, "id")
        ),
        "delivered" => {
            let mut res = format!("delivered (attempt {})", attempt(delivery));
            if delivery.get("unconfirmed").and_then(Value::as_bool) == Some(true) {
                res.push_str(
                    ", unconfirmed: the destination accepted it but does not confirm posts",
                );
            } else if let Some(remote_ref) = delivery.get("remote_ref").and_then(Value::as_str) {
                res.push_str(&format!(", ref {remote_ref}"));
            }
            res
        }
        "failed" => {
            let mut res = format!(
                "FAILED ({}, attempt {})",
                text(delivery, "failure_reason"),
                attempt(delivery)
            );
            if !error.is_empty() {
                res.push_str(&format!(": {}", shorten(error, 120)));
            }
            res
        }
        other => other.to_string(),
    }
}

/// When the next attempt is due, relative to `now` (`in 2s`, `now`), for a pending delivery.
fn next_attempt(delivery: &Value, now: SystemTime) -> Option<String> {
    if text(delivery, "state") != "pending" {
        return None;
    }
    let at = humantime::parse_rfc3339_weak(delivery.get("next_attempt_at")?.as_str()?).ok()?;
    match at.duration_since(now) {
        Ok(wait) if wait >= Duration::from_millis(500) => {
            // Whole seconds read best; sub-second waits are "now" to a person.
            let secs = Duration::from_secs((wait.as_millis() as u64 + 500) / 1000);
            Some(format!("in {}", humantime::format_duration(secs)))
        }
        _ => Some("now".to_string()),
    }
}

/// `12:00:01.234`: the UTC time of day, to the millisecond.
fn clock(now: SystemTime) -> String {
    let stamp = humantime::format_rfc3339_millis(now).to_string();
    // `2026-12-03T12:00:01.234Z` → `12:00:01.234`.
    stamp.get(11..23).unwrap_or(&stamp).to_string()
}

/// The table's lines: a header, one row per delivery, the k-of-N summary.
fn table(view: &Value, now: SystemTime) -> Vec<String> {
    let header = ["DESTINATION", "STATE", "ATTEMPT", "NEXT", "LAST ERROR", "REMOTE REF"];
    let mut rows: Vec<[String; 6]> = vec![header.map(String::from)];
    for delivery in deliveries(view) {
        let state = match text(delivery, "state") {
            "pending" if number(delivery, "attempts") > 0 => "retrying".to_string(),
            "in_flight" => "sending".to_string(),
            "failed" => format!("failed ({})", text(delivery, "failure_reason")),
            other => other.to_string(),
        };
        rows.push([
            label(delivery),
            state,
            attempt(delivery),
            next_attempt(delivery, now).unwrap_or_else(|| "-".to_string()),
            match text(delivery, "last_error") {
                "" => "-".to_string(),
                error => shorten(error, ERROR_WIDTH),
            },
            match delivery.get("remote_ref").and_then(Value::as_str) {
                Some(remote_ref) => remote_ref.to_string(),
                None => "-".to_string(),
            },
        ]);
    }
    let mut widths = [0usize; 6];
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut lines: Vec<String> = rows
        .iter()
        .map(|row| {
            let cells: Vec<String> =
                row.iter().zip(widths).map(|(cell, width)| format!("{cell:<width$}")).collect();
            cells.join("  ").trim_end().to_string()
        })
        .collect();
    lines.push(summary(view));
    lines
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
    use std::time::{Duration, SystemTime};

    use serde_json::{Value, json};

    use super::{Board, Display, phrase};

    fn at(text: &str) -> SystemTime {
        humantime::parse_rfc3339(text).unwrap_or(SystemTime::UNIX_EPOCH)
    }

    #[test]
    fn each_state_reads_in_plain_words() {
        let now = at("2026-12-03T12:00:01.234Z");
        let line = |d: Value| phrase(&d, now);
        assert_eq!(
            line(json!({"state": "pending", "attempts": 1, "max_attempts": 8,
                "last_error": "HTTP 503 Service Unavailable", "next_attempt_at": "2026-12-03T12:00:03.200Z"})),
            "retrying (attempt 1 of 8): HTTP 503 Service Unavailable; next in 2s"
        );
        assert_eq!(
            line(
                json!({"state": "delivered", "attempts": 2, "max_attempts": 8, "remote_ref": "m-1"})
            ),
            "delivered (attempt 2 of 8), ref m-1"
        );
        assert!(
            line(json!({"state": "delivered", "unconfirmed": true})).contains("unconfirmed"),
            "an unconfirmed post must say so"
        );
        assert_eq!(
            line(json!({"state": "failed", "failure_reason": "permanent", "attempts": 1,
                "max_attempts": 8, "last_error": "HTTP 404"})),
            "FAILED (permanent, attempt 1 of 8): HTTP 404"
        );
        assert!(line(json!({"state": "held", "id": "d_1"})).contains("herald retry d_1"));
    }

    #[test]
    fn plain_lines_report_each_change_once() {
        let mut board = Board::new(Display::Plain);
        let now = at("2026-12-03T12:00:01.234Z");
        let view = |state: &str, attempts: u64| {
            json!({"deliveries": [{"id": "d_1", "destination": "ops", "state": state,
                "attempts": attempts, "max_attempts": 8}]})
        };
        let mut out = Vec::new();
        for (state, attempts) in [
            ("in_flight", 0),
            ("pending", 0),
            ("pending", 1),
            ("in_flight", 1),
            ("pending", 1),
            ("delivered", 2),
        ] {
            board.show(&view(state, attempts), now, &mut out).unwrap_or_default();
        }
        let text = String::from_utf8_lossy(&out);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines,
            [
                "12:00:01.234 ops pending",
                "12:00:01.234 ops retrying (attempt 1 of 8)",
                "12:00:01.234 ops delivered (attempt 2 of 8)"
            ]
        );
    }

    #[test]
    fn the_terminal_table_is_redrawn_over_itself() {
        let mut board = Board::new(Display::Terminal);
        let now = at("2026-12-03T12:00:00Z");
        let view = json!({"state": "in_progress", "summary": {"total": 1, "pending": 1},
            "deliveries": [{"id": "d_1", "destination": "ops", "state": "pending",
            "attempts": 1, "max_attempts": 8, "last_error": "HTTP 503",
            "next_attempt_at": "2026-12-03T12:00:04Z"}]});
        let mut out = Vec::new();
        board.show(&view, now, &mut out).unwrap_or_default();
        board.show(&view, now + Duration::from_secs(1), &mut out).unwrap_or_default();
        let text = String::from_utf8_lossy(&out);
        assert_eq!(text.matches("\x1b[3A").count(), 1, "one move up over 3 lines: {text:?}");
        assert!(text.contains("ops          retrying  1 of 8   in 4s"), "{text:?}");
        assert!(text.contains("in 3s"), "the countdown moves with the clock: {text:?}");
    }
}
