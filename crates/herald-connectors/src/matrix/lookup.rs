//! Reconciliation after the transaction-id window: find the event an ambiguous attempt
//! may have created before sending it again (shared/DESTINATIONS.md §5).
//!
//! A resend with the same txnId is a retransmission only while the homeserver remembers
//! the txnId: Synapse keeps it 24 h after the event. The event, if it exists, was sent at
//! or after the delivery's creation, so while the delivery is younger than
//! `lookup_after` (default [`DEFAULT_LOOKUP_AFTER`], 12 h: half Synapse's 24 h, room
//! for clocks and for servers that forget sooner) herald simply resends. Past it, an
//! ambiguous attempt first reads the room backwards from now (`GET /rooms/{roomId}/
//! messages?dir=b`, herald's own `m.room.message` events, [`PAGE`] per read, following
//! `end`) until events older than the delivery's creation minus [`MARGIN`], and takes
//! an event whose `unsigned.transaction_id` is the txnId (shown only to the device that
//! sent it) or whose content carries the delivery id in `org.herald.delivery` from
//! herald's own user (any device: after a day the device may have changed). Found: the
//! delivery is done with that event. Not found within the window: it is sent.
//!
//! A look-up that cannot tell is never "not there": more than [`MAX_PAGES`] reads is
//! `Unknown`; a rate-limited read is `Reconciling` (no attempt used); any other failed
//! read is `Unknown`, or `Permanent` when the server refuses for good. Pure parts
//! ([`scan`], [`due`]) are separate from the reads.

use std::time::Duration;

use herald_core::{Outcome, Timestamp};
use serde_json::{Value, json};

use super::Matrix;
use crate::Report;

/// How old a delivery must be before an ambiguous attempt looks for its event instead
/// of resending with the same txnId.
pub const DEFAULT_LOOKUP_AFTER: Duration = Duration::from_secs(12 * 3600);

/// How long Synapse remembers a txnId (`_cleanup_old_transaction_ids`): `lookup_after`
/// may not be longer.
pub const TXN_MEMORY: Duration = Duration::from_secs(24 * 3600);

/// How far before the delivery's creation the look-up reads: room for a difference
/// between herald's clock and the homeserver's (`origin_server_ts`).
pub const MARGIN: Duration = Duration::from_secs(10 * 60);

/// Events asked for per read.
pub const PAGE: usize = 100;

/// The most reads one look-up makes before it gives up as `Unknown`: 5,000 of herald's
/// own messages in the window.
pub const MAX_PAGES: usize = 50;

/// How long to wait before looking again when the server throttled the look-up without
/// saying for how long.
const THROTTLED_WAIT: Duration = Duration::from_secs(10);

/// Whether an attempt must look before sending: the last attempt was ambiguous and the
/// delivery is at least `lookup_after` old (measured from its creation, the earliest
/// moment its event can have been sent, so its txnId is at most that old).
pub fn due(ambiguous: bool, created_at: Timestamp, now: Timestamp, lookup_after: Duration) -> bool {
    ambiguous && now.since(created_at) >= lookup_after
}

/// The event being looked for.
#[derive(Debug, Clone, Copy)]
pub struct Wanted<'a> {
    /// The txnId it was sent with.
    pub txn_id: &'a str,
    /// The delivery id its content carries in `org.herald.delivery`.
    pub delivery_id: &'a str,
    /// herald's user id: only its events count.
    pub sender: &'a str,
    /// Events older than this (ms since the epoch, the server's clock) end the search.
    pub since_ms: i64,
}

/// What one page of `/messages` (newest first) says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scanned {
    /// The event is there: its id.
    Found(String),
    /// It is not in the window: the page reached events older than the window, or the
    /// room's beginning.
    NotThere,
    /// Read on from this `end` token.
    Next(String),
}

/// Whether `event` is the one `wanted`.
pub fn is_wanted(event: &Value, wanted: &Wanted<'_>) -> bool {
    let txn = event.pointer("/unsigned/transaction_id").and_then(Value::as_str);
    let marker = event.pointer("/content/org.herald.delivery").and_then(Value::as_str);
    let sender = event.get("sender").and_then(Value::as_str);
    txn == Some(wanted.txn_id)
        || (marker == Some(wanted.delivery_id) && sender == Some(wanted.sender))
}

/// Looks through one answer of `/messages?dir=b`.
pub fn scan(page: &Value, wanted: &Wanted<'_>) -> Scanned {
    let events = page.get("chunk").and_then(Value::as_array).map_or(&[][..], Vec::as_slice);
    if let Some(id) = events
        .iter()
        .find(|event| is_wanted(event, wanted))
        .and_then(|event| event.get("event_id").and_then(Value::as_str))
    {
        return Scanned::Found(id.to_owned());
    }
    let older = events.iter().any(|event| {
        event.get("origin_server_ts").and_then(Value::as_i64).is_some_and(|ts| ts < wanted.since_ms)
    });
    match page.get("end").and_then(Value::as_str) {
        Some(end) if !older => Scanned::Next(end.to_owned()),
        _ => Scanned::NotThere,
    }
}

/// The `/messages` filter: herald's own messages only, so the reads skip everyone
/// else's traffic.
pub fn filter(sender: &str) -> String {
    json!({ "types": ["m.room.message"], "senders": [sender] }).to_string()
}

/// A failed read as the attempt's report: never "not there".
fn failed(report: Report) -> Report {
    let outcome = match report.outcome {
        Outcome::Throttled { after, reason } => Outcome::Reconciling {
            after: after.unwrap_or(THROTTLED_WAIT),
            reason: format!("the look-up was rate limited: {reason}"),
        },
        Outcome::Permanent { reason } => Outcome::Permanent {
            reason: format!(
                "herald could not read the room to learn whether the event was sent \
                 ({reason}); it may have been"
            ),
        },
        other => Outcome::Unknown {
            reason: format!(
                "the look-up for a possibly sent event failed: {}",
                other.reason().unwrap_or("no reason")
            ),
        },
    };
    Report { outcome, ..report }
}

impl Matrix {
    /// Looks for the event of `delivery_id` in `room`, from now back to `created_at`
    /// minus [`MARGIN`]: its id, `None` if it is not there, or the report of a look-up
    /// that cannot tell.
    pub(super) async fn find(
        &self,
        room: &str,
        delivery_id: &str,
        created_at: Timestamp,
        now: Timestamp,
    ) -> Result<Option<String>, Report> {
        let sender = self.user_id(now).await.map_err(failed)?;
        let txn_id = super::txn_id(delivery_id);
        let wanted = Wanted {
            txn_id: &txn_id,
            delivery_id,
            sender: &sender,
            since_ms: created_at.as_millis().saturating_sub(millis(MARGIN)),
        };
        let filter = filter(&sender);
        let limit = PAGE.to_string();
        let mut from: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let mut query = vec![("dir", "b"), ("limit", limit.as_str()), ("filter", &filter)];
            if let Some(token) = &from {
                query.push(("from", token));
            }
            let segments = ["rooms", room, "messages"];
            let page = self
                .authed(reqwest::Method::GET, &segments, &query, None, now)
                .await
                .map_err(failed)?;
            match scan(&page, &wanted) {
                Scanned::Found(id) => return Ok(Some(id)),
                Scanned::NotThere => return Ok(None),
                Scanned::Next(end) => from = Some(end),
            }
        }
        Err(Report {
            outcome: Outcome::Unknown {
                reason: format!(
                    "herald sent more than {} messages to the room since the delivery began; \
                     the look-up stopped before reaching its start and cannot tell whether \
                     the event was sent",
                    PAGE * MAX_PAGES
                ),
            },
            status: Some(200),
            detail: None,
            pause: None,
        })
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}
