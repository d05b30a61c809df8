//! Delivery state changes as a stream, for the API's server-sent events.

use herald_core::Timestamp;
use herald_store::Change;

/// One delivery changed state.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// The broadcast.
    pub broadcast_id: String,
    /// The delivery.
    pub delivery_id: String,
    /// Its destination.
    pub destination: String,
    /// 0 for the original, n for the n-th update.
    pub seq: u32,
    /// The new state's name (`pending`, `delivered`, ...).
    pub state: &'static str,
    /// The failure reason's code when failed.
    pub reason: Option<&'static str>,
    /// When it was observed.
    pub at: Timestamp,
}

impl Event {
    /// The event for a stored change.
    pub fn from_change(change: &Change, at: Timestamp) -> Event {
        Event {
            broadcast_id: change.broadcast_id.clone(),
            delivery_id: change.delivery_id.clone(),
            destination: change.destination.clone(),
            seq: change.seq,
            state: change.state.as_str(),
            reason: match &change.state {
                herald_core::State::Failed(reason) => Some(reason.as_str()),
                _ => None,
            },
            at,
        }
    }
}
