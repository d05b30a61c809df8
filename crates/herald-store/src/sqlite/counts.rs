//! `destination_counts` kept exact by the writer instead of a trigger per row change.
//!
//! Every statement that inserts, deletes or changes the state of a delivery notes the
//! move here ([`count`]); the writer adds the moves of its transaction up, per
//! destination and state, and applies them with one upsert per changed counter just
//! before `COMMIT` ([`apply`]), in the same transaction: the counters stay exact at
//! every commit, as DESIGN.md promises. The triggers this replaces ran an UPDATE and an
//! upsert for every single state change (callgrind: a large part of each lease and
//! record); a group commit of hundreds of deliveries now touches a few counter rows.
//!
//! Moves are kept per request: a request whose savepoint rolls back takes its moves
//! back with it ([`mark`], [`forget_since`]), and a transaction SQLite rolled back as a
//! whole applies none ([`forget_all`]).

use std::cell::RefCell;
use std::collections::HashMap;

use rusqlite::{Connection, params};

use crate::StoreError;

/// Every state a delivery row can be in, as stored.
const STATES: [&str; 7] =
    ["pending", "in_flight", "waiting", "held", "delivered", "failed", "cancelled"];

/// Index of `delivered` in [`STATES`].
const DELIVERED: usize = 4;

/// One delivery row entering a state, leaving one, or both.
struct Move {
    destination: String,
    from: Option<usize>,
    to: Option<usize>,
    /// When the delivery was delivered, for a move into `delivered`.
    delivered_at: Option<i64>,
}

thread_local! {
    /// The writer thread's moves in its current transaction. Only the writer thread
    /// writes deliveries; each store has its own writer thread and so its own journal.
    static MOVES: RefCell<Vec<Move>> = const { RefCell::new(Vec::new()) };
}

fn index(state: &str) -> Result<usize, StoreError> {
    STATES
        .iter()
        .position(|known| *known == state)
        .ok_or_else(|| StoreError::Corrupt(format!("unknown delivery state `{state}`")))
}

/// Notes that a delivery of `destination` left state `from` (`None`: it was inserted)
/// for state `to` (`None`: it was deleted); `delivered_at` for a move into `delivered`.
pub(super) fn count(
    destination: &str,
    from: Option<&str>,
    to: Option<&str>,
    delivered_at: Option<i64>,
) -> Result<(), StoreError> {
    let from = from.map(index).transpose()?;
    let to = to.map(index).transpose()?;
    if from == to && to != Some(DELIVERED) {
        return Ok(());
    }
    MOVES.with_borrow_mut(|moves| {
        moves.push(Move { destination: destination.to_owned(), from, to, delivered_at });
    });
    Ok(())
}

/// Where the moves of the request starting now begin.
pub(super) fn mark() -> usize {
    MOVES.with_borrow(Vec::len)
}

/// Drops the moves noted since `mark`: their request was rolled back.
pub(super) fn forget_since(mark: usize) {
    MOVES.with_borrow_mut(|moves| moves.truncate(mark));
}

/// Drops every move of the transaction: it was rolled back, or never began.
pub(super) fn forget_all() {
    MOVES.with_borrow_mut(Vec::clear);
}

/// The transaction's moves added up per destination: the change of each state's count,
/// and the latest delivery time.
type Deltas = HashMap<String, ([i64; 7], Option<i64>)>;

fn deltas(moves: Vec<Move>) -> Deltas {
    let mut res: Deltas = HashMap::new();
    for m in moves {
        let (counts, last) = res.entry(m.destination).or_default();
        if let Some(from) = m.from {
            counts[from] -= 1;
        }
        if let Some(to) = m.to {
            counts[to] += 1;
            if to == DELIVERED {
                *last = (*last).max(m.delivered_at);
            }
        }
    }
    res
}

/// Applies the transaction's moves to `destination_counts`, inside the transaction, and
/// forgets them.
///
/// # Errors
/// The database's error; the caller rolls the transaction back.
pub(super) fn apply(conn: &Connection) -> Result<(), StoreError> {
    let moves = MOVES.with_borrow_mut(std::mem::take);
    if moves.is_empty() {
        return Ok(());
    }
    let mut stmt = conn.prepare_cached(
        "INSERT INTO destination_counts (destination, state, n, last_delivered_at) \
         VALUES (?1, ?2, ?3, ?4) \
         ON CONFLICT (destination, state) DO UPDATE SET \
             n = n + excluded.n, \
             last_delivered_at = COALESCE(MAX(last_delivered_at, excluded.last_delivered_at), \
                                          last_delivered_at, excluded.last_delivered_at)",
    )?;
    for (destination, (counts, last_delivered_at)) in deltas(moves) {
        for (state, n) in counts.iter().enumerate() {
            let last = if state == DELIVERED { last_delivered_at } else { None };
            if *n != 0 || last.is_some() {
                stmt.execute(params![destination, STATES[state], n, last])?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn moved(destination: &str, from: Option<usize>, to: Option<usize>, at: Option<i64>) -> Move {
        Move { destination: destination.into(), from, to, delivered_at: at }
    }

    /// Moves add up per destination and state; the latest delivery time wins.
    #[test]
    fn moves_add_up_per_destination_and_state() {
        let d = deltas(vec![
            moved("a", None, Some(0), None),
            moved("a", Some(0), Some(1), None),
            moved("a", Some(1), Some(DELIVERED), Some(7)),
            moved("a", None, Some(0), None),
            moved("b", Some(1), Some(DELIVERED), Some(9)),
            moved("b", Some(1), Some(DELIVERED), Some(3)),
            moved("b", Some(DELIVERED), None, None),
        ]);
        assert_eq!(d["a"], ([1, 0, 0, 0, 1, 0, 0], Some(7)));
        assert_eq!(d["b"], ([0, -2, 0, 0, 1, 0, 0], Some(9)));
    }

    /// A request rolled back takes its moves back; the rest of the transaction's stay.
    #[test]
    fn a_rolled_back_request_forgets_only_its_own_moves() {
        forget_all();
        count("a", None, Some("pending"), None).unwrap();
        let at = mark();
        count("a", Some("pending"), Some("in_flight"), None).unwrap();
        forget_since(at);
        assert_eq!(mark(), 1);
        // A move within one state is no move.
        count("a", Some("pending"), Some("pending"), None).unwrap();
        assert_eq!(mark(), 1);
        assert!(count("a", Some("gone"), None, None).is_err());
        forget_all();
        assert_eq!(mark(), 0);
    }
}
