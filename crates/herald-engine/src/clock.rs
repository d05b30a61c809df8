//! The engine's only source of wall-clock time and of sleeping until an instant.
//!
//! Both go through one trait so a test can drive simulated time: `FakeClock::advance`
//! moves `now` and wakes every sleeper whose deadline has passed.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use herald_core::Timestamp;
use tokio::sync::watch;

/// A boxed future, for sleeping behind `dyn Clock`.
pub type Sleep = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Wall-clock time, injected.
pub trait Clock: Send + Sync + 'static {
    /// The current instant.
    fn now(&self) -> Timestamp;

    /// Completes once `now() >= deadline`.
    fn sleep_until(&self, deadline: Timestamp) -> Sleep;
}

/// The real clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[allow(clippy::disallowed_methods)] // The one place allowed to read the system clock.
    fn now(&self) -> Timestamp {
        let millis =
            SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0);
        Timestamp(i64::try_from(millis).unwrap_or(i64::MAX))
    }

    fn sleep_until(&self, deadline: Timestamp) -> Sleep {
        let wait = deadline.since(self.now());
        Box::pin(tokio::time::sleep(wait))
    }
}

/// A clock that moves only when told to; for tests.
#[derive(Debug, Clone)]
pub struct FakeClock {
    now: Arc<Mutex<Timestamp>>,
    tick: watch::Sender<Timestamp>,
}

impl FakeClock {
    /// A clock standing at `start`.
    pub fn new(start: Timestamp) -> FakeClock {
        let (tick, _) = watch::channel(start);
        FakeClock { now: Arc::new(Mutex::new(start)), tick }
    }

    /// Moves time forward by `d` and wakes the sleepers that are due.
    pub fn advance(&self, d: Duration) {
        let now = {
            let mut guard = self.now.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            *guard = guard.add(d);
            *guard
        };
        self.tick.send_replace(now);
    }
}

impl Clock for FakeClock {
    fn now(&self) -> Timestamp {
        *self.now.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn sleep_until(&self, deadline: Timestamp) -> Sleep {
        let mut rx = self.tick.subscribe();
        Box::pin(async move {
            // The sender lives as long as the clock; if it is gone nobody can advance
            // time any more, so the sleep never ends, as a real one past the end of time.
            let _ = rx.wait_for(|now| *now >= deadline).await;
            if rx.has_changed().is_err() {
                std::future::pending::<()>().await;
            }
        })
    }
}
