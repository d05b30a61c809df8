//! `GET /v1/broadcasts/{id}/events`: server-sent events of one broadcast's progress.
//!
//! The stream sends a `snapshot` (the broadcast JSON), then a `delivery` event per state
//! change of one of its deliveries, and ends with `done` (the final broadcast JSON) once
//! the broadcast is no longer in progress. Events are a convenience fed by the engine's
//! in-process channel; the store stays the truth: after each event the broadcast is read
//! again to decide whether the stream is over, a reader that fell behind (`Lagged`) gets
//! a fresh snapshot instead of the events it missed, and `done` carries the final state
//! of every delivery even if a last event was published only after that read.

use std::convert::Infallible;

use axum::extract::{Path, State};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures_util::Stream;
use herald_core::BroadcastState;
use herald_engine::{Engine, Event};
use herald_store::BroadcastView;
use serde::Serialize;
use tokio::sync::broadcast::Receiver;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};

use super::Shared;
use super::broadcasts::load;
use crate::dto::{BroadcastJson, DeliveryEventJson, broadcast_state};
use crate::error::ApiError;

/// `GET /v1/broadcasts/{id}/events`.
pub(super) async fn stream(
    State(state): State<Shared>,
    Path(id): Path<String>,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    // Subscribe before reading the snapshot, so no change falls between the two.
    let events = state.engine.subscribe();
    let view = load(&state, &id).await?;
    let feed = Feed { state, id, events, step: Step::Snapshot(view) };
    Ok(Sse::new(futures_util::stream::unfold(feed, Feed::next)).keep_alive(KeepAlive::default()))
}

/// What the stream sends next.
enum Step {
    /// The broadcast as read from the store.
    Snapshot(BroadcastView),
    /// Wait for the next event of this broadcast.
    Live,
    /// The broadcast has ended: send the events already queued for it, then `done`.
    Drain(BroadcastView),
    /// The final event, with the broadcast as it ended.
    Done(BroadcastView),
    /// Nothing more.
    End,
}

struct Feed {
    state: Shared,
    id: String,
    events: Receiver<Event>,
    step: Step,
}

impl Feed {
    async fn next(mut self) -> Option<(Result<SseEvent, Infallible>, Feed)> {
        let event = match std::mem::replace(&mut self.step, Step::End) {
            Step::End => return None,
            Step::Snapshot(view) => {
                let event = snapshot(&view, &self.state.engine);
                self.step = if ended(&view) { Step::Done(view) } else { Step::Live };
                event
            }
            Step::Done(view) => json_event("done", &BroadcastJson::new(&view, &self.state.engine)),
            Step::Drain(view) => loop {
                match self.events.try_recv() {
                    Ok(event) if event.broadcast_id == self.id => {
                        self.step = Step::Drain(view);
                        break delivery(&event);
                    }
                    Ok(_) | Err(TryRecvError::Lagged(_)) => {}
                    Err(TryRecvError::Empty | TryRecvError::Closed) => {
                        break json_event("done", &BroadcastJson::new(&view, &self.state.engine));
                    }
                }
            },
            Step::Live => loop {
                match self.events.recv().await {
                    Ok(event) if event.broadcast_id == self.id => {
                        self.step = match self.reload().await {
                            Some(view) if ended(&view) => Step::Drain(view),
                            _ => Step::Live,
                        };
                        break delivery(&event);
                    }
                    Ok(_) => {}
                    Err(RecvError::Lagged(_)) => {
                        if let Some(view) = self.reload().await {
                            let event = snapshot(&view, &self.state.engine);
                            self.step = if ended(&view) { Step::Done(view) } else { Step::Live };
                            break event;
                        }
                        self.step = Step::Live;
                    }
                    // The engine is gone (shutting down): no more changes will come.
                    Err(RecvError::Closed) => return None,
                }
            },
        };
        Some((Ok(event), self))
    }

    /// The broadcast as stored now; `None` if it cannot be read (the stream goes on and
    /// looks again at the next event).
    async fn reload(&self) -> Option<BroadcastView> {
        match self.state.store.broadcast(&self.id).await {
            Ok(view) => view,
            Err(error) => {
                tracing::warn!(%error, broadcast_id = %self.id, "Could not re-read the broadcast for its event stream.");
                None
            }
        }
    }
}

fn ended(view: &BroadcastView) -> bool {
    broadcast_state(view) != BroadcastState::InProgress
}

fn delivery(event: &Event) -> SseEvent {
    json_event("delivery", &DeliveryEventJson::from(event))
}

fn snapshot(view: &BroadcastView, engine: &Engine) -> SseEvent {
    json_event("snapshot", &BroadcastJson::new(view, engine))
}

fn json_event(name: &str, data: &impl Serialize) -> SseEvent {
    // Serializing the response types cannot fail; an empty object keeps the stream valid.
    let data = serde_json::to_string(data).unwrap_or_else(|_| "{}".into());
    SseEvent::default().event(name).data(data)
}
