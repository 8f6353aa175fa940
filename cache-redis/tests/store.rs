//! Redis-specific behaviour beyond the conformance suite: credentials that never leak, Unix
//! sockets, databases as namespaces, and `close`. Each test runs its own throwaway server.

mod common;

use cache_core::{Backend, Bytes, Condition, Error};
use cache_redis::RedisBackend;
use common::ThrowawayRedis;

const PASSWORD: &str = "Tr0ub4dor&3-secret";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passwords_work_and_never_show_in_debug_or_errors() {
    let server = ThrowawayRedis::start(&["--requirepass", PASSWORD]).await;
    let port = server.port();
    let encoded = PASSWORD.replace('&', "%26");

    let store = RedisBackend::open(&format!("redis://:{encoded}@127.0.0.1:{port}/0"))
        .await
        .expect("the right password is accepted");
    store
        .set("k", Bytes::from("v"), None, Condition::Always)
        .await
        .expect("set");
    let debug = format!("{store:?}");
    assert!(
        !debug.contains(PASSWORD) && !debug.contains(&encoded),
        "{debug}"
    );

    // The same user name and password through ACL syntax.
    let store = RedisBackend::open(&format!("redis://default:{encoded}@127.0.0.1:{port}/0"))
        .await
        .expect("user `default` with the password is accepted");
    assert_eq!(store.get("k").await.expect("get"), Some(Bytes::from("v")));

    for url in [
        format!("redis://:{encoded}-wrong@127.0.0.1:{port}/0"),
        format!("redis://default:{encoded}-wrong@127.0.0.1:{port}/0"),
        format!("redis://127.0.0.1:{port}/0"),
    ] {
        match RedisBackend::open(&url).await {
            Err(error @ Error::Backend { .. }) => {
                let message = format!("{error} / {error:?}");
                assert!(!message.contains(PASSWORD), "{message}");
                assert!(!message.contains(&encoded), "{message}");
            }
            Err(other) => panic!("expected Error::Backend for {url}, got {other}"),
            Ok(store) => {
                // Without credentials the connection opens; the first command is refused.
                let error = store
                    .get("k")
                    .await
                    .expect_err("an unauthenticated get fails");
                assert!(matches!(error, Error::Backend { .. }), "{error:?}");
                assert!(
                    !error.is_transient(),
                    "a refused login is not worth a retry: {error:?}"
                );
                assert!(!format!("{error:?}").contains(PASSWORD));
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unix_socket_urls_reach_the_server_and_its_database() {
    let socket_dir = tempfile::tempdir().expect("a temporary directory");
    let socket = socket_dir.path().join("redis.sock");
    let socket_arg = socket.display().to_string();
    let server =
        ThrowawayRedis::start(&["--unixsocket", &socket_arg, "--unixsocketperm", "700"]).await;

    let store = RedisBackend::open(&format!("redis+unix://{socket_arg}?db=3"))
        .await
        .expect("connects over the socket");
    store
        .set(
            "over-the-socket",
            Bytes::from("yes"),
            None,
            Condition::Always,
        )
        .await
        .expect("set");

    let mut raw = server.raw().await;
    let _: () = redis::cmd("SELECT")
        .arg(3)
        .query_async(&mut raw)
        .await
        .expect("SELECT");
    let value: Option<String> = redis::cmd("GET")
        .arg("over-the-socket")
        .query_async(&mut raw)
        .await
        .expect("GET");
    assert_eq!(
        value.as_deref(),
        Some("yes"),
        "the key landed in database 3"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_is_a_namespace_even_for_the_empty_prefix() {
    let server = ThrowawayRedis::start(&[]).await;
    let port = server.port();
    let zero = RedisBackend::open(&format!("redis://127.0.0.1:{port}/0"))
        .await
        .expect("db 0");
    let five = RedisBackend::open(&format!("redis://127.0.0.1:{port}/5"))
        .await
        .expect("db 5");
    zero.set("shared-name", Bytes::from("zero"), None, Condition::Always)
        .await
        .expect("set");
    five.set("shared-name", Bytes::from("five"), None, Condition::Always)
        .await
        .expect("set");
    five.set("only-five", Bytes::from("5"), None, Condition::Always)
        .await
        .expect("set");

    assert_eq!(five.clear_prefix("").await.expect("clear"), 2);
    assert_eq!(five.get("shared-name").await.expect("get"), None);
    assert_eq!(
        zero.get("shared-name").await.expect("get"),
        Some(Bytes::from("zero"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_after_close_are_backend_errors() {
    let server = ThrowawayRedis::start(&[]).await;
    let store = RedisBackend::open(&server.url()).await.expect("connects");
    store.close().await.expect("close");
    match store.get("k").await {
        Err(Error::Backend { operation, .. }) => assert_eq!(operation, "get"),
        other => panic!("expected Error::Backend after close, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_urls_are_config_errors_before_any_connection() {
    for url in [
        "redis://127.0.0.1:notaport/0",
        "redis+cluster://127.0.0.1:1,127.0.0.1:2/4",
        "redis://127.0.0.1/0?pool=3",
    ] {
        assert!(
            matches!(RedisBackend::open(url).await, Err(Error::Config { .. })),
            "{url}"
        );
    }
    // Without the `tls` feature a rediss:// URL says which feature to turn on.
    if !cfg!(feature = "tls") {
        let error = RedisBackend::open("rediss://:pw@127.0.0.1:1/0")
            .await
            .expect_err("no TLS support compiled in");
        assert!(matches!(error, Error::Config { .. }), "{error:?}");
        assert!(error.to_string().contains("`tls` feature"), "{error}");
    }
}

/// A key that another client made a list or a hash is present for every method and readable by
/// none: `get` and `get_many` name it in `Error::Decode`, and a batch beside it is not misread.
async fn keys_of_another_type_are_present_but_hold_no_value(
    store: RedisBackend,
    mut raw: impl redis::aio::ConnectionLike + Send,
) {
    let _: () = redis::cmd("RPUSH")
        .arg("wt:list")
        .arg("x")
        .query_async(&mut raw)
        .await
        .expect("RPUSH");
    let _: () = redis::cmd("HSET")
        .arg("wt:hash")
        .arg("f")
        .arg("v")
        .query_async(&mut raw)
        .await
        .expect("HSET");
    store
        .set("wt:string", Bytes::from("v"), None, Condition::Always)
        .await
        .expect("set");

    for key in ["wt:list", "wt:hash"] {
        match store.get(key).await {
            Err(Error::Decode { key: named, .. }) => assert_eq!(named, key),
            other => panic!("get of a {key} must be Error::Decode, got {other:?}"),
        }
        let batch = [
            "wt:string".to_owned(),
            key.to_owned(),
            "wt:absent".to_owned(),
        ];
        match store.get_many(&batch).await {
            Err(Error::Decode { key: named, .. }) => assert_eq!(named, key),
            other => panic!("get_many beside a {key} must be Error::Decode, got {other:?}"),
        }
        assert!(store.contains(key).await.expect("contains"), "{key}");
        assert!(
            !store
                .set(key, Bytes::from("w"), None, Condition::IfNotExists)
                .await
                .expect("set if not exists"),
            "{key} is present, so an if-not-exists write is refused"
        );
        assert_eq!(
            store.ttl(key).await.expect("ttl"),
            Some(cache_core::Ttl::Eternal)
        );
    }
    // Absent keys and strings alone are read as ever.
    let plain = ["wt:string".to_owned(), "wt:absent".to_owned()];
    assert_eq!(
        store.get_many(&plain).await.expect("get_many"),
        vec![Some(Bytes::from("v")), None]
    );

    // Through the facade: the error names the caller's key; `DecodePolicy::Miss` leaves the key
    // out of a batch; a loading verb replaces it with the loaded value.
    let store: std::sync::Arc<dyn Backend> = std::sync::Arc::new(store);
    let strict: cache_core::Cache<String> = cache_core::Cache::builder(store.clone())
        .prefix("wt:")
        .serializer(cache_core::Raw)
        .build();
    match strict.get_many(["string", "list"]).await {
        Err(Error::Decode { key, .. }) => assert_eq!(key, "list"),
        other => panic!("expected Error::Decode naming `list`, got {other:?}"),
    }
    let lenient: cache_core::Cache<String> = cache_core::Cache::builder(store.clone())
        .prefix("wt:")
        .serializer(cache_core::Raw)
        .decode_policy(cache_core::DecodePolicy::Miss)
        .build();
    let found = lenient
        .get_many(["string", "list", "hash", "absent"])
        .await
        .expect("get_many with the Miss policy");
    assert_eq!(found.len(), 1);
    assert_eq!(found["string"], "v");
    // In order, each refused key keeps its place as a miss.
    let placed = lenient
        .get_many_vec(["list", "string", "hash", "absent", "string"])
        .await
        .expect("get_many_vec with the Miss policy");
    let v = Some("v".to_owned());
    assert_eq!(placed, vec![None, v.clone(), None, None, v]);
    let loaded = strict
        .get_or_insert_with("hash", || async {
            Ok::<_, std::io::Error>("fresh".to_owned())
        })
        .await
        .expect("a loading verb replaces a key of another type");
    assert_eq!(loaded, "fresh");
    assert_eq!(
        strict.get("hash").await.expect("get").as_deref(),
        Some("fresh")
    );
    assert!(strict.delete("list").await.expect("delete"));
    assert!(!strict.contains("list").await.expect("contains"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_of_another_type_agree_on_every_method() {
    let server = ThrowawayRedis::start(&[]).await;
    let store = RedisBackend::open(&server.url()).await.expect("connects");
    keys_of_another_type_are_present_but_hold_no_value(store, server.raw().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_of_another_type_agree_on_every_method_on_a_cluster() {
    let cluster = common::ThrowawayCluster::start().await;
    let store = RedisBackend::open(&cluster.url()).await.expect("connects");
    let nodes: Vec<String> = cluster
        .nodes
        .iter()
        .map(|node| format!("redis://127.0.0.1:{}", node.port()))
        .collect();
    let raw = redis::cluster::ClusterClient::new(nodes)
        .expect("a cluster client")
        .get_async_connection()
        .await
        .expect("connects to the cluster");
    keys_of_another_type_are_present_but_hold_no_value(store, raw).await;
}
