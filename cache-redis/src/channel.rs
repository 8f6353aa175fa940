//! The invalidation channel: Redis pub/sub, on a connection of its own (a cluster forwards
//! `PUBLISH` to every node, so one node's subscription hears the whole cluster).

use std::sync::Arc;

use cache_core::raw::invalidation::{Notice, Subscription, Transport};
use cache_core::{Bytes, Result, async_trait};
use futures_util::StreamExt;

use crate::core::Core;

/// Publishes and subscribes on one channel per database (Redis channels span databases).
pub(crate) struct RedisChannel {
    core: Arc<Core>,
    name: String,
}

impl std::fmt::Debug for RedisChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisChannel")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl RedisChannel {
    pub(crate) fn new(core: Arc<Core>) -> Self {
        let name = format!("cachette:invalidations:db{}", core.config.db);
        Self { core, name }
    }
}

#[async_trait]
impl Transport for RedisChannel {
    async fn publish(&self, message: Bytes) -> Result<()> {
        let mut command = redis::cmd("PUBLISH");
        command.arg(&self.name).arg(message.as_ref());
        let _receivers: i64 = self.core.query("publish", None, &command).await?;
        Ok(())
    }

    async fn subscribe(&self) -> Result<Subscription> {
        let mut pubsub = self.core.pubsub("subscribe").await?;
        self.core
            .within("subscribe", None, pubsub.subscribe(&self.name))
            .await?;
        let messages = pubsub
            .into_on_message()
            .map(|message| Notice::Message(Bytes::copy_from_slice(message.get_payload_bytes())));
        Ok(Subscription::new(messages))
    }

    fn max_message(&self) -> usize {
        // Redis takes far more; big messages only delay the keys behind them.
        64 * 1024
    }
}
