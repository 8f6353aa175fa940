#![doc = include_str!("../README.md")]

mod backend;
mod channel;
mod config;
mod connection;
mod error;
#[cfg(test)]
mod inline_tests;
mod queue;
mod sql;
mod worker;

pub use backend::SqliteBackend;
pub use channel::POLL_INTERVAL;
pub use config::{
    DEFAULT_BUSY_TIMEOUT, DEFAULT_MODE, DEFAULT_PURGE_INTERVAL, DEFAULT_TABLE, MAX_BUSY_TIMEOUT,
    MAX_PURGE_INTERVAL, SqliteBackendBuilder,
};
