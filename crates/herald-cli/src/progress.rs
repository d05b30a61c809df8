//! Following a broadcast live over its event stream, for `send --wait`,
//! `status --follow`, `update --wait` and the demo.
//!
//! No polling: the stream opens with a `snapshot` (the first table), each `delivery`
//! event triggers one read of the broadcast for what the event does not carry (attempt
//! count, last error, next attempt, remote ref), and `done` carries the final state. A
//! dropped stream is reopened a bounded number of times with backoff; the snapshot each
//! new stream starts with resynchronises the board.

use std::io::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use futures_util::StreamExt;
use herald_engine::{Clock, SystemClock};
use serde_json::Value;
use tokio::time::Instant;

use crate::board::{Board, Display};
use crate::client::{Client, StreamError};
use crate::sse::SseParser;

/// Reopenings of a dropped stream in a row before giving up.
const RECONNECTS: u32 = 6;

/// The first wait before reopening a dropped stream; doubles each time, up to [`BACKOFF_MAX`].
const BACKOFF: Duration = Duration::from_millis(250);

/// The longest wait between two reopenings.
const BACKOFF_MAX: Duration = Duration::from_secs(4);

/// Silence after which a stream counts as dropped: the server sends a keep-alive
/// comment every 15 s, so this much quiet means the connection is dead.
const IDLE: Duration = Duration::from_secs(45);

/// How often the terminal table is redrawn for its relative times.
const TICK: Duration = Duration::from_secs(1);

/// How following a broadcast ended.
#[derive(Debug)]
pub struct Followed {
    /// The broadcast as last seen.
    pub view: Value,
    /// Whether the wait ran out before the broadcast ended.
    pub timed_out: bool,
}

impl Followed {
    /// Whether every delivery was delivered.
    pub fn delivered(&self) -> bool {
        !self.timed_out && self.view.get("state").and_then(Value::as_str) == Some("delivered")
    }
}

/// Follows broadcast `id` until it is no longer in progress or `timeout` passes,
/// showing its deliveries on `out` as `display` says.
///
/// # Errors
/// When the server refuses the stream (unknown broadcast, missing token), the stream
/// cannot be (re)opened after [`RECONNECTS`] tries, or `out` cannot be written.
pub async fn follow(
    client: &Client,
    id: &str,
    timeout: Duration,
    display: Display,
    out: &mut impl Write,
) -> anyhow::Result<Followed> {
    let deadline = Instant::now() + timeout;
    let mut follower = Follower { client, id, board: Board::new(display), view: None };
    let mut drops = 0u32;
    let path = format!("/v1/broadcasts/{id}/events");
    loop {
        let opened = tokio::select! {
            opened = client.events(&path) => opened,
            () = tokio::time::sleep_until(deadline) => return follower.timed_out(),
        };
        let error = match opened {
            Ok(response) => match follower.read(response, deadline, out).await? {
                Stream::Ended(view) => return Ok(Followed { view, timed_out: false }),
                Stream::TimedOut => return follower.timed_out(),
                Stream::Dropped { progressed, why } => {
                    if progressed {
                        drops = 0;
                    }
                    why
                }
            },
            Err(StreamError::Refused(error)) => {
                return Err(error.context(format!("cannot follow broadcast {id}")));
            }
            Err(StreamError::Transient(error)) => error,
        };
        drops += 1;
        if drops > RECONNECTS {
            return Err(error.context(format!(
                "lost the event stream of broadcast {id} and could not reopen it ({RECONNECTS} \
                 tries); `herald status {id}` shows where it stands"
            )));
        }
        tracing::debug!(error = %format!("{error:#}"), drops, "The event stream dropped; reopening it.");
        let backoff = BACKOFF.saturating_mul(1 << (drops - 1).min(8)).min(BACKOFF_MAX);
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            () = tokio::time::sleep_until(deadline) => return follower.timed_out(),
        }
    }
}

/// How reading one opened stream ended.
enum Stream {
    /// `done` arrived: the broadcast as it ended.
    Ended(Value),
    /// The wait ran out.
    TimedOut,
    /// The connection broke or went quiet; `progressed` if an event came first.
    Dropped { progressed: bool, why: anyhow::Error },
}

struct Follower<'a> {
    client: &'a Client,
    id: &'a str,
    board: Board,
    /// The broadcast as last seen.
    view: Option<Value>,
}

impl Follower<'_> {
    /// Reads `response` as an event stream until it ends, drops or the deadline passes.
    async fn read(
        &mut self,
        response: reqwest::Response,
        deadline: Instant,
        out: &mut impl Write,
    ) -> anyhow::Result<Stream> {
        let mut bytes = response.bytes_stream();
        let mut parser = SseParser::default();
        let mut progressed = false;
        let mut tick = tokio::time::interval(TICK);
        loop {
            let chunk = tokio::select! {
                chunk = tokio::time::timeout(IDLE, bytes.next()) => chunk,
                () = tokio::time::sleep_until(deadline) => return Ok(Stream::TimedOut),
                _ = tick.tick(), if self.board_ticks() => {
                    self.redraw(out)?;
                    continue;
                }
            };
            let chunk = match chunk {
                Ok(Some(Ok(chunk))) => chunk,
                Ok(Some(Err(error))) => {
                    let why = anyhow::Error::new(error).context("the event stream broke");
                    return Ok(Stream::Dropped { progressed, why });
                }
                Ok(None) => {
                    let why = anyhow::anyhow!("the server closed the event stream before `done`");
                    return Ok(Stream::Dropped { progressed, why });
                }
                Err(_) => {
                    let why = anyhow::anyhow!("the event stream was silent for {IDLE:?}");
                    return Ok(Stream::Dropped { progressed, why });
                }
            };
            // Several changes arriving together are shown after one read of the broadcast.
            let mut changed = false;
            for event in parser.push(&chunk) {
                progressed = true;
                match event.name.as_str() {
                    "snapshot" => self.show(parse(&event.data)?, out)?,
                    "delivery" => changed = true,
                    "done" => {
                        let view = parse(&event.data)?;
                        self.show(view.clone(), out)?;
                        return Ok(Stream::Ended(view));
                    }
                    // Unknown events may come from a newer server; they are not ours.
                    _ => {}
                }
            }
            if changed {
                self.reread(out).await?;
            }
        }
    }

    /// Shows the broadcast as read now, for the details a `delivery` event lacks.
    async fn reread(&mut self, out: &mut impl Write) -> anyhow::Result<()> {
        match self.client.get(&format!("/v1/broadcasts/{}", self.id)).await {
            Ok(view) => self.show(view, out),
            // The next event, or the snapshot of a reopened stream, shows it instead.
            Err(error) => {
                tracing::debug!(error = %format!("{error:#}"), "Could not re-read the broadcast.");
                Ok(())
            }
        }
    }

    fn show(&mut self, view: Value, out: &mut impl Write) -> anyhow::Result<()> {
        self.board.show(&view, now(), out).context("writing the progress")?;
        self.view = Some(view);
        Ok(())
    }

    /// Whether the board shows relative times that move with the clock.
    fn board_ticks(&self) -> bool {
        self.board.display() == Display::Terminal && self.view.is_some()
    }

    fn redraw(&mut self, out: &mut impl Write) -> anyhow::Result<()> {
        if let Some(view) = &self.view {
            self.board.show(view, now(), out).context("writing the progress")?;
        }
        Ok(())
    }

    fn timed_out(self) -> anyhow::Result<Followed> {
        match self.view {
            Some(view) => Ok(Followed { view, timed_out: true }),
            None => anyhow::bail!(
                "the wait ran out before the server sent broadcast {}; is herald at {} \
                 answering? (raise --timeout)",
                self.id,
                self.client.base()
            ),
        }
    }
}

/// The wall clock, for the times of day the lines show and the relative times of the table.
fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(u64::try_from(SystemClock.now().as_millis()).unwrap_or(0))
}

/// A broadcast in an event's data.
fn parse(data: &str) -> anyhow::Result<Value> {
    serde_json::from_str(data)
        .with_context(|| format!("the server sent an event that is not JSON: {data:.200}"))
}
