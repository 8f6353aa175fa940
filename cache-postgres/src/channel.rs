//! The invalidation channel: PostgreSQL `LISTEN/NOTIFY`, on a connection of its own, one channel
//! per cache table.

use std::sync::Arc;

use cache_core::raw::invalidation::{Notice, Subscription, Transport};
use cache_core::{Bytes, Error, Result, async_trait};
use sqlx::postgres::PgListener;

use crate::core::Core;
use crate::error::map_postgres_error;

/// `NOTIFY` payloads must stay under 8,000 bytes.
const MAX_PAYLOAD: usize = 7_000;

pub(crate) struct PostgresChannel {
    core: Arc<Core>,
    name: String,
}

impl std::fmt::Debug for PostgresChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresChannel")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl PostgresChannel {
    pub(crate) fn new(core: Arc<Core>) -> Self {
        // A channel name is an identifier of at most 63 bytes: name the table by its hash.
        let table = core.config.get_table().to_string();
        let hash = table.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
            (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
        });
        Self {
            core,
            name: format!("cachette_invalidations_{hash:016x}"),
        }
    }
}

#[async_trait]
impl Transport for PostgresChannel {
    async fn publish(&self, message: Bytes) -> Result<()> {
        let text = std::str::from_utf8(&message)
            .map_err(|error| Error::backend("postgres", "publish", None, error))?
            .to_owned();
        let core = &self.core;
        let mut connection = core.acquire("publish", None).await?;
        let outcome = core
            .timed(
                sqlx::query("SELECT pg_notify($1, $2)")
                    .bind(&self.name)
                    .bind(text)
                    .execute(&mut *connection),
            )
            .await;
        core.settle("publish", None, &mut connection, outcome)
            .map(drop)
    }

    async fn subscribe(&self) -> Result<Subscription> {
        let fail = |error| map_postgres_error("subscribe", None, error);
        let mut listener = PgListener::connect_with(&self.core.pool)
            .await
            .map_err(fail)?;
        listener.listen(&self.name).await.map_err(fail)?;
        // `try_recv` answers `None` when the connection dropped (`recv` would reconnect and
        // silently skip what was sent meanwhile): the subscription ends there, the bus empties
        // its tiers and subscribes again.
        let notices = futures_util::stream::unfold(Some(listener), |listener| async move {
            let mut listener = listener?;
            match listener.try_recv().await {
                Ok(Some(notification)) => Some((
                    Notice::Message(Bytes::copy_from_slice(notification.payload().as_bytes())),
                    Some(listener),
                )),
                Ok(None) => Some((
                    Notice::Lost("the LISTEN connection dropped".to_owned()),
                    None,
                )),
                Err(error) => Some((Notice::Lost(error.to_string()), None)),
            }
        });
        Ok(Subscription::new(notices))
    }

    fn max_message(&self) -> usize {
        MAX_PAYLOAD
    }
}
