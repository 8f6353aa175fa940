#![doc = include_str!("../README.md")]

mod backend;
mod channel;
mod config;
mod core;
mod error;
mod schema;

pub use backend::{MAX_TTL, PostgresBackend};
pub use config::{
    DEFAULT_ACQUIRE_TIMEOUT, DEFAULT_POOL_MAX, DEFAULT_PURGE_INTERVAL, DEFAULT_STATEMENT_TIMEOUT,
    DEFAULT_TABLE, MAX_PURGE_INTERVAL, MAX_TIMEOUT, PostgresConfig, TableName,
};
pub use error::StatementTimedOut;
pub use schema::ddl;
