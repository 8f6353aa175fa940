#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod backend;
mod channel;
mod cluster;
mod coalesce;
mod config;
mod core;
mod routing;

pub use backend::RedisBackend;
pub use config::{DEFAULT_CONNECT_TIMEOUT, DEFAULT_RESPONSE_TIMEOUT, MAX_TIMEOUT, RedisConfig};
