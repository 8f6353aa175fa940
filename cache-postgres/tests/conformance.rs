//! The whole conformance suite against the server in `CACHETTE_POSTGRES_URL`.

mod common;

cache_core::conformance_tests!(handles = common::conformance_backend());
