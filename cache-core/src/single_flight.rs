//! One load per key at a time, shared by every caller that asks meanwhile.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::watch;

/// What a load produced, shared by every waiter.
pub(crate) type Outcome<V> = Result<V, Arc<dyn std::error::Error + Send + Sync + 'static>>;

pub(crate) type Slot<V> = watch::Receiver<Option<Outcome<V>>>;

/// The loads in flight, by full key.
pub(crate) struct Flights<V> {
    in_flight: Mutex<HashMap<String, Slot<V>>>,
}

pub(crate) enum Role<V> {
    /// This caller runs the load and must publish its outcome through the guard.
    Leader(LeaderGuard<V>),
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

/// The outcome a waiter's slot receives, or `None` when the loading caller went away without
/// one (cancelled, or its loader panicked).
pub(crate) async fn outcome<V: Clone>(slot: &mut Slot<V>) -> Option<Outcome<V>> {
    match slot.wait_for(Option::is_some).await {
        Ok(outcome) => outcome.clone(),
        Err(_) => None,
    }
}

impl<V> Flights<V> {
    /// Joins the load of `key`: as its leader when none is in flight. The guard holds the table
    /// by `Arc`, so that a load can go on in a task of its own (a background refresh).
    pub(crate) fn join(self: &Arc<Self>, key: &str) -> Role<V> {
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
            flights: Arc::clone(self),
            key: key.to_owned(),
            sender,
            left: false,
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
pub(crate) struct LeaderGuard<V> {
    flights: Arc<Flights<V>>,
    key: String,
    sender: watch::Sender<Option<Outcome<V>>>,
    /// Whether the key was released already, so that dropping the guard does not release a
    /// newer load of the same key.
    left: bool,
}

impl<V> LeaderGuard<V> {
    pub(crate) fn publish(mut self, outcome: Outcome<V>) {
        // Release the key first: waiters already subscribed still see the outcome, and a caller
        // arriving from now on finds the value in the store or, after an error, starts a load
        // of its own instead of inheriting an error from a load that had already finished.
        self.flights.leave(&self.key);
        self.left = true;
        self.sender.send_replace(Some(outcome));
    }
}

impl<V> Drop for LeaderGuard<V> {
    fn drop(&mut self) {
        if !self.left {
            self.flights.leave(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn waiters_see_the_outcome_and_later_callers_start_afresh() {
        let flights = Arc::new(Flights::<u32>::default());
        let Role::Leader(leader) = flights.join("k") else {
            panic!("the first caller must lead");
        };
        let Role::Waiter(mut waiter) = flights.join("k") else {
            panic!("a second caller must wait");
        };
        let failure: Arc<dyn std::error::Error + Send + Sync> =
            Arc::from(Box::<dyn std::error::Error + Send + Sync>::from(
                "loader failed",
            ));
        leader.publish(Err(failure));

        let seen = waiter.wait_for(Option::is_some).await.map(|o| o.clone());
        assert!(
            matches!(seen, Ok(Some(Err(_)))),
            "the waiter must get the error"
        );
        assert!(
            matches!(flights.join("k"), Role::Leader(_)),
            "a caller after the outcome must run its own load"
        );
    }

    #[test]
    fn a_dropped_leader_releases_the_key() {
        let flights = Arc::new(Flights::<u32>::default());
        let Role::Leader(leader) = flights.join("k") else {
            panic!("the first caller must lead");
        };
        drop(leader);
        assert!(matches!(flights.join("k"), Role::Leader(_)));
    }
}
