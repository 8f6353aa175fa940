//! One load per key at a time, shared by every caller that asks meanwhile.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::watch;

/// What a load produced, shared by every waiter.
pub(crate) type Outcome<V> = Result<V, Arc<dyn std::error::Error + Send + Sync + 'static>>;

type Slot<V> = watch::Receiver<Option<Outcome<V>>>;

/// The loads in flight, by full key.
pub(crate) struct Flights<V> {
    in_flight: Mutex<HashMap<String, Slot<V>>>,
}

pub(crate) enum Role<'a, V> {
    /// This caller runs the load and must publish its outcome through the guard.
    Leader(LeaderGuard<'a, V>),
    /// Another caller is loading; wait on this.
    Waiter(Slot<V>),
}

impl<V> Default for Flights<V> {
    fn default() -> Self {
        Self {
            in_flight: Mutex::new(HashMap::new()),
        }
    }
}

impl<V> Flights<V> {
    pub(crate) fn join(&self, key: &str) -> Role<'_, V> {
        let mut in_flight = self
            .in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(slot) = in_flight.get(key) {
            return Role::Waiter(slot.clone());
        }
        let (sender, receiver) = watch::channel(None);
        in_flight.insert(key.to_owned(), receiver);
        Role::Leader(LeaderGuard {
            flights: self,
            key: key.to_owned(),
            sender,
        })
    }

    fn leave(&self, key: &str) {
        self.in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(key);
    }
}

/// Held by the caller that loads. Dropping it without publishing (the caller was cancelled or
/// the loader panicked) releases the key, and the waiters try again themselves.
pub(crate) struct LeaderGuard<'a, V> {
    flights: &'a Flights<V>,
    key: String,
    sender: watch::Sender<Option<Outcome<V>>>,
}

impl<V> LeaderGuard<'_, V> {
    pub(crate) fn publish(self, outcome: Outcome<V>) {
        // Waiters already subscribed see the outcome; callers arriving after `leave` find the
        // value in the store (or, after an error, start a new load).
        self.sender.send_replace(Some(outcome));
    }
}

impl<V> Drop for LeaderGuard<'_, V> {
    fn drop(&mut self) {
        self.flights.leave(&self.key);
    }
}
