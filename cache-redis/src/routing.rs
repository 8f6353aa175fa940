//! Batches on a Redis Cluster: split by hash slot into one pipeline per primary, sent side by
//! side, and sent again when a slot has moved or is migrating. On a standalone server a batch
//! is one pipeline.

use futures_util::future::{join_all, try_join_all};
use redis::{ErrorKind, Pipeline, RedisError, RedisResult, ServerErrorKind, Value};

use crate::cluster::{NodeBatch, key_in_slot, one_batch_per_key, single_batch};
use crate::core::Core;
use cache_core::Result;

impl Core {
    /// Sends a batch over `keys`: split by the slot map into one pipeline per primary on a
    /// cluster (one pipeline in all otherwise), each built by `build` from its per-slot key
    /// positions, all sent side by side. Returns the batches as sent and each one's replies, one
    /// per command.
    ///
    /// Unless `repeatable`, any failure is the caller's. Otherwise (reads, and writes of whole
    /// values, come out the same when repeated): when a node answers that a slot has moved
    /// (resharding, failover), the slot map is fetched again and the batch is sent once more;
    /// when a node's batch meets a slot in migration (`ASK`, `TRYAGAIN`), its keys are sent again
    /// one key per pipeline. A command naming several keys cannot be served while they straddle
    /// the two nodes of a migration, but a single-key one always can, by one node or the other.
    pub(crate) async fn send_keyed(
        &self,
        operation: &'static str,
        keys: &[&[u8]],
        repeatable: bool,
        build: impl Fn(&[Vec<usize>]) -> Pipeline,
    ) -> Result<(Vec<NodeBatch>, Vec<Vec<Value>>)> {
        let mut repeats_left = usize::from(repeatable && self.is_cluster());
        loop {
            let batches = if self.is_cluster() {
                self.topology(operation).await?.group(keys.iter().copied())
            } else {
                single_batch(keys.len())
            };
            let outcomes = self.send_batches(operation, &batches, &build).await?;
            let mut sent = Vec::with_capacity(batches.len());
            let mut replies = Vec::with_capacity(batches.len());
            let mut migrating = Vec::new();
            let mut failures = Vec::new();
            for (batch, outcome) in batches.into_iter().zip(outcomes) {
                match outcome {
                    Ok(batch_replies) => {
                        sent.push(batch);
                        replies.push(batch_replies);
                    }
                    Err(error) if repeatable && is_migration(&error) => migrating.push(batch),
                    Err(error) => failures.push(error),
                }
            }
            // A moved slot first: repeating the whole batch also covers the other failures.
            let failure = match failures
                .iter()
                .position(|error| moved_slot(error).is_some())
            {
                Some(moved) => Some(failures.swap_remove(moved)),
                None => failures.into_iter().next(),
            };
            if let Some(error) = failure {
                let slot = moved_slot(&error);
                let error = self.map_redis_error(operation, None, error);
                let Some(slot) = slot else {
                    return Err(error);
                };
                self.follow_moved_slot(slot).await;
                if repeats_left == 0 {
                    return Err(error);
                }
                repeats_left -= 1;
                continue;
            }
            if !migrating.is_empty() {
                let per_key: Vec<NodeBatch> = migrating
                    .iter()
                    .flat_map(|batch| one_batch_per_key(keys, batch))
                    .collect();
                for (batch, batch_replies) in self.send_per_key(operation, per_key, &build).await? {
                    sent.push(batch);
                    replies.push(batch_replies);
                }
            }
            return Ok((sent, replies));
        }
    }

    /// Sends single-key batches of a slot in migration: each to the node that serves the slot,
    /// then, for a key that node no longer holds, again behind an `ASKING` to the node the `ASK`
    /// names (redis-rs follows an `ASK` itself, but its `ASKING` can be used up by another
    /// request on the shared connection).
    ///
    /// The first pass sends them one after another, not side by side: dozens of them at once
    /// each meet an `ASK` that redis-rs follows with an `ASKING` of its own, which the others'
    /// requests use up, so they bounce between the two nodes until the deadline (seen on a
    /// loaded machine as whole batches timing out mid-migration). A migration is rare and
    /// short; single-key round trips in turn are the safe way through it.
    async fn send_per_key(
        &self,
        operation: &'static str,
        batches: Vec<NodeBatch>,
        build: &impl Fn(&[Vec<usize>]) -> Pipeline,
    ) -> Result<Vec<(NodeBatch, Vec<Value>)>> {
        let outcomes = self
            .send_batches_in_turn(operation, &batches, build)
            .await?;
        let mut done = Vec::with_capacity(batches.len());
        let mut asked = Vec::new();
        for (batch, outcome) in batches.into_iter().zip(outcomes) {
            match outcome {
                Ok(replies) => done.push((batch, replies)),
                Err(error) => match asked_node(&error) {
                    Some(address) => asked.push((batch, address.to_owned())),
                    None => return Err(self.map_redis_error(operation, None, error)),
                },
            }
        }
        if asked.is_empty() {
            return Ok(done);
        }
        let connection = self.connection(operation, None)?;
        let requests = asked.iter().map(|(batch, address)| {
            let mut connection = connection.clone();
            let pipeline = build(&batch.slots);
            async move { connection.send_asking(&pipeline, address).await }
        });
        let replies = self.within(operation, None, try_join_all(requests)).await?;
        done.extend(asked.into_iter().map(|(batch, _)| batch).zip(replies));
        Ok(done)
    }

    /// [`Core::send_batches`], one pipeline after another, under one deadline.
    async fn send_batches_in_turn(
        &self,
        operation: &'static str,
        batches: &[NodeBatch],
        build: &impl Fn(&[Vec<usize>]) -> Pipeline,
    ) -> Result<Vec<RedisResult<Vec<Value>>>> {
        let mut connection = self.connection(operation, None)?;
        self.within(operation, None, async {
            let mut outcomes = Vec::with_capacity(batches.len());
            for batch in batches {
                let pipeline = build(&batch.slots);
                outcomes.push(connection.send_pipeline(pipeline, batch.route_slot).await);
            }
            Ok(outcomes)
        })
        .await
    }

    /// Sends one pipeline per batch, side by side, under one deadline, and returns how each
    /// fared: the caller decides what a node's failure means for the rest.
    pub(crate) async fn send_batches(
        &self,
        operation: &'static str,
        batches: &[NodeBatch],
        build: &impl Fn(&[Vec<usize>]) -> Pipeline,
    ) -> Result<Vec<RedisResult<Vec<Value>>>> {
        let connection = self.connection(operation, None)?;
        let requests = batches.iter().map(|batch| {
            let mut connection = connection.clone();
            let pipeline = build(&batch.slots);
            async move { connection.send_pipeline(pipeline, batch.route_slot).await }
        });
        self.within(operation, None, async { Ok(join_all(requests).await) })
            .await
    }

    /// Brings redis-rs's own slot map up to date after a node said `slot` moved. Pipelines
    /// routed by hand never make redis-rs look again, but a plain command does: it goes where
    /// redis-rs believes the slot lives, and the redirection it meets there makes redis-rs
    /// follow it and fetch the slot map anew. (Our own map was dropped when the error was.)
    pub(crate) async fn follow_moved_slot(&self, slot: u16) {
        let probe = key_in_slot(slot);
        let _: Result<bool> = self
            .query("follow_moved_slot", None, redis::cmd("EXISTS").arg(&probe))
            .await;
    }
}

/// The slot a node no longer serves, when that is why a batch failed.
fn moved_slot(error: &RedisError) -> Option<u16> {
    if !matches!(error.kind(), ErrorKind::Server(ServerErrorKind::Moved)) {
        return None;
    }
    let (_, slot) = error.redirect_node()?;
    Some(slot)
}

/// The node (`host:port`) that an `ASK` sends a request to.
fn asked_node(error: &RedisError) -> Option<&str> {
    if !matches!(error.kind(), ErrorKind::Server(ServerErrorKind::Ask)) {
        return None;
    }
    let (address, _) = error.redirect_node()?;
    Some(address)
}

/// Whether a batch failed because one of its slots is migrating: a node sent a key elsewhere
/// for this request only (`ASK`), or refused a command whose keys straddle the migration
/// (`TRYAGAIN`).
fn is_migration(error: &RedisError) -> bool {
    matches!(
        error.kind(),
        ErrorKind::Server(ServerErrorKind::Ask | ServerErrorKind::TryAgain)
    )
}
