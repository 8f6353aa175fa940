//! What the Redis tests share: server URLs from the environment, throwaway `redis-server`
//! processes and clusters for tests that kill servers or count their commands (all from the
//! workspace's test-support crate).

#![allow(unused_imports)]

pub use cachette_test_support::ports::free_port;
pub use cachette_test_support::redis::{
    ThrowawayCluster, ThrowawayRedis, cluster_command_calls, command_calls, delta,
};
pub use cachette_test_support::server_url;
