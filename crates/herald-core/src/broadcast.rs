//! A broadcast's overall state, derived from its deliveries' states.

use crate::delivery::State;

/// The overall state the API shows for a broadcast.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BroadcastState {
    /// Some delivery is not terminal yet.
    InProgress,
    /// Every delivery was delivered.
    Delivered,
    /// Everything ended, some delivered and some failed or cancelled.
    PartiallyFailed,
    /// Everything ended and nothing was delivered; at least one failed.
    Failed,
    /// Every delivery was cancelled.
    Cancelled,
}

impl BroadcastState {
    /// Derives the overall state from the deliveries' states.
    pub fn of<'a>(states: impl IntoIterator<Item = &'a State>) -> BroadcastState {
        let (mut total, mut delivered, mut cancelled, mut open) = (0usize, 0usize, 0usize, 0usize);
        for state in states {
            total += 1;
            match state {
                State::Delivered => delivered += 1,
                State::Cancelled => cancelled += 1,
                State::Failed(_) => {}
                _ => open += 1,
            }
        }
        if open > 0 {
            BroadcastState::InProgress
        } else if delivered == total {
            BroadcastState::Delivered
        } else if cancelled == total {
            BroadcastState::Cancelled
        } else if delivered > 0 {
            BroadcastState::PartiallyFailed
        } else {
            BroadcastState::Failed
        }
    }

    /// The snake_case name used by the API.
    pub fn as_str(self) -> &'static str {
        match self {
            BroadcastState::InProgress => "in_progress",
            BroadcastState::Delivered => "delivered",
            BroadcastState::PartiallyFailed => "partially_failed",
            BroadcastState::Failed => "failed",
            BroadcastState::Cancelled => "cancelled",
        }
    }

    /// Parses [`BroadcastState::as_str`]'s output.
    pub fn parse(name: &str) -> Option<BroadcastState> {
        Some(match name {
            "in_progress" => BroadcastState::InProgress,
            "delivered" => BroadcastState::Delivered,
            "partially_failed" => BroadcastState::PartiallyFailed,
            "failed" => BroadcastState::Failed,
            "cancelled" => BroadcastState::Cancelled,
            _ => return None,
        })
    }
}
