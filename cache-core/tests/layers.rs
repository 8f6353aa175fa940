//! What the layers do to calls: retries, deadlines, faults, and what observers see.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use cache_core::layers::{
    CacheEvent, CallEvent, Fault, Faults, KeyDisplay, MetricsObserver, Observer, Retry, Timeout,
    TracingObserver,
};
use cache_core::raw::{Forward, Layer};
use cache_core::testing::ReferenceBackend;
use cache_core::{Backend, Bytes, Cache, Condition, Error, Result, async_trait};

fn reference() -> Arc<ReferenceBackend> {
    Arc::new(ReferenceBackend::default())
}

fn quick_retries(attempts: u32) -> Retry {
    Retry::new(attempts).backoff(Duration::from_millis(1), Duration::from_millis(2))
}

#[tokio::test]
async fn retry_makes_every_attempt_of_a_transient_failure_then_gives_its_error() {
    let faults = Faults::new(1).inject(Fault::Fail, 1.0).only(&["get"]);
    let store = quick_retries(4).layer(faults.clone().layer(reference()));
    let error = store.get("k").await.expect_err("every attempt fails");
    assert!(error.is_transient(), "{error}");
    assert_eq!(faults.injected(), 4, "four attempts in all");
    store
        .set("k", "v".into(), None, Condition::Always)
        .await
        .unwrap();
    assert_eq!(faults.injected(), 4, "only `get` gets faults");
}

#[tokio::test]
async fn retry_hides_failures_that_clear_up() {
    let faults = Faults::new(3).inject(Fault::Fail, 0.5);
    let store = quick_retries(20).layer(faults.clone().layer(reference()));
    for i in 0..50 {
        let key = format!("k{i}");
        store
            .set(&key, "v".into(), None, Condition::Always)
            .await
            .unwrap();
        assert_eq!(store.get(&key).await.unwrap().as_deref(), Some(&b"v"[..]));
    }
    assert!(faults.injected() > 20, "{} faults", faults.injected());
}

#[tokio::test]
async fn retry_never_repeats_a_call_whose_answer_a_repeat_would_falsify() {
    let server = reference();
    let faults = Faults::new(5).inject(Fault::LoseReply, 1.0).only(&[
        "delete",
        "delete_many",
        "clear_prefix",
        "set",
        "expire_in",
    ]);
    let store = quick_retries(5).layer(
        faults
            .clone()
            .layer(Arc::clone(&server) as Arc<dyn Backend>),
    );
    for key in ["a", "b", "c", "d"] {
        server
            .set(key, "v".into(), None, Condition::Always)
            .await
            .unwrap();
    }

    // Each call reaches the store once and applies; its lost reply is the caller's error.
    assert!(store.delete("a").await.unwrap_err().is_transient());
    assert!(
        store
            .delete_many(&["b".to_owned()])
            .await
            .unwrap_err()
            .is_transient()
    );
    assert!(
        store
            .expire_in("c", Some(Duration::ZERO))
            .await
            .unwrap_err()
            .is_transient()
    );
    let written = store
        .set("e", "v".into(), None, Condition::IfNotExists)
        .await;
    assert!(written.unwrap_err().is_transient());
    assert!(store.clear_prefix("d").await.unwrap_err().is_transient());
    assert_eq!(faults.injected(), 5, "one attempt each");
    assert_eq!(server.keys().await, ["e"], "every call applied once");

    // Writes that a repeat cannot falsify are repeated.
    let before = faults.injected();
    assert!(
        store
            .set("f", "v".into(), None, Condition::Always)
            .await
            .is_err()
    );
    assert_eq!(faults.injected() - before, 5);
}

/// Fails every `get` with an error that is not transient, and counts the calls.
#[derive(Debug)]
struct RefusesKeys {
    inner: Arc<dyn Backend>,
    calls: AtomicU64,
}

#[async_trait]
impl Forward for RefusesKeys {
    fn inner(&self) -> &dyn Backend {
        &*self.inner
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        Err(Error::invalid_key(key, "refused"))
    }
}

#[tokio::test]
async fn retry_gives_up_at_once_on_an_error_that_is_not_transient() {
    let refusing = Arc::new(RefusesKeys {
        inner: reference(),
        calls: AtomicU64::new(0),
    });
    let store = quick_retries(5).layer(Arc::clone(&refusing) as Arc<dyn Backend>);
    assert!(matches!(
        store.get("k").await,
        Err(Error::InvalidKey { .. })
    ));
    assert_eq!(refusing.calls.load(Ordering::Relaxed), 1);
}

#[tokio::test]
async fn a_timeout_fails_a_hung_call_as_transient_naming_it_and_the_rest_go_on() {
    let silent = Faults::new(9).inject(Fault::Hang, 1.0).only(&["get"]);
    let store = Timeout::new(Duration::from_millis(30)).layer(silent.layer(reference()));
    match store.get("user:1").await {
        Err(
            error @ Error::Backend {
                store, operation, ..
            },
        ) => {
            assert_eq!((store, operation), ("reference", "get"));
            assert_eq!(error.key(), Some("user:1"));
            assert!(error.is_transient());
            assert!(error.to_string().contains("30ms"), "{error}");
        }
        other => panic!("expected a timed-out get, got {other:?}"),
    }
    assert!(
        store
            .set("k", "v".into(), None, Condition::Always)
            .await
            .unwrap()
    );
}

#[tokio::test]
async fn delays_are_delays_and_answers_stay_right() {
    let slow = Faults::new(4).inject(Fault::Delay(Duration::from_millis(40)), 1.0);
    let store = slow.layer(reference());
    let started = tokio::time::Instant::now();
    store
        .set("k", "v".into(), None, Condition::Always)
        .await
        .unwrap();
    assert_eq!(store.get("k").await.unwrap().as_deref(), Some(&b"v"[..]));
    assert!(started.elapsed() >= Duration::from_millis(80));
}

/// Keeps every call event and cache event as a line of text.
#[derive(Default)]
struct Recorder(Mutex<Vec<String>>);

impl Recorder {
    fn lines(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }

    fn push(&self, line: String) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(line);
    }
}

impl Observer for Recorder {
    fn on_call(&self, event: &CallEvent<'_>) {
        let call = &event.call;
        let outcome = event.error.map_or("ok", Error::kind);
        self.push(format!(
            "{} {} keys={} key={:?} hits={:?} {outcome}",
            call.store, call.operation, call.keys, call.key, event.hits
        ));
    }

    fn on_cache_event(&self, event: &CacheEvent<'_>) {
        let line = match event {
            CacheEvent::DecodeFailed { key, as_miss, .. } => {
                format!("decode failed {key} as_miss={as_miss}")
            }
            CacheEvent::Loaded { key, error, .. } => format!("loaded {key} ok={}", error.is_none()),
            CacheEvent::LoadWaited { key, .. } => format!("waited {key}"),
            _ => "other".to_owned(),
        };
        self.push(line);
    }
}

#[tokio::test]
async fn an_observer_sees_each_call_with_its_keys_hits_and_error_kind() {
    let recorder = Arc::new(Recorder::default());
    let faults = Faults::new(0);
    let outage = faults.outage();
    let cache: Cache<u32> = Cache::builder(reference())
        .layer(faults)
        .prefix("p:")
        .observe(Arc::clone(&recorder))
        .build();

    cache.set("a", &1).await.unwrap();
    assert_eq!(cache.get("a").await.unwrap(), Some(1));
    assert_eq!(cache.get("b").await.unwrap(), None);
    assert_eq!(cache.get_many(["a", "b", "c"]).await.unwrap().len(), 1);
    cache.set_many([("x", &1), ("y", &2)]).await.unwrap();
    assert_eq!(cache.delete_many(["x", "y", "z"]).await.unwrap(), 2);
    outage.begin();
    assert!(cache.contains("a").await.is_err());
    outage.end();
    assert_eq!(cache.clear().await.unwrap(), 1);
    assert_eq!(
        recorder.lines(),
        [
            r#"reference set keys=1 key=Some("p:a") hits=None ok"#,
            r#"reference get keys=1 key=Some("p:a") hits=Some(1) ok"#,
            r#"reference get keys=1 key=Some("p:b") hits=Some(0) ok"#,
            "reference get_many keys=3 key=None hits=Some(1) ok",
            "reference set_many keys=2 key=None hits=None ok",
            "reference delete_many keys=3 key=None hits=None ok",
            r#"reference contains keys=1 key=Some("p:a") hits=None transient"#,
            "reference clear_prefix keys=0 key=None hits=None ok",
        ]
    );
}

#[tokio::test]
async fn an_observer_hears_of_decode_failures_loads_and_waits() {
    let server = reference();
    let recorder = Arc::new(Recorder::default());
    let cache: Cache<u32> = Cache::builder(Arc::clone(&server) as Arc<dyn Backend>)
        .observe(Arc::clone(&recorder))
        .build();
    server
        .set(
            "bad",
            Bytes::from_static(b"\xff\xff"),
            None,
            Condition::Always,
        )
        .await
        .unwrap();

    assert!(matches!(cache.get("bad").await, Err(Error::Decode { .. })));
    let loaded = cache.get_or_insert_with("bad", || async { Ok::<_, Error>(7) });
    assert_eq!(loaded.await.unwrap(), 7);
    let failed = cache
        .get_or_insert_with("missing", || async {
            Err::<u32, _>(std::io::Error::other("down"))
        })
        .await;
    assert!(matches!(failed, Err(Error::Load { .. })));
    let calls: Vec<String> = recorder
        .lines()
        .into_iter()
        .filter(|line| !line.starts_with("reference"))
        .collect();
    assert_eq!(
        calls,
        [
            "decode failed bad as_miss=false",
            // The loading verb reads before it joins the load and again once it leads it.
            "decode failed bad as_miss=true",
            "decode failed bad as_miss=true",
            "loaded bad ok=true",
            "loaded missing ok=false",
        ]
    );

    // Two callers of one missing key: one loads, the other waits for it.
    let (release, gate) = tokio::sync::oneshot::channel::<()>();
    let leader = {
        let cache = cache.clone();
        tokio::spawn(async move {
            cache
                .get_or_insert_with("slow", || async {
                    gate.await.ok();
                    Ok::<_, Error>(1)
                })
                .await
        })
    };
    while !recorder
        .lines()
        .iter()
        .any(|line| line.contains("get keys=1"))
    {
        tokio::task::yield_now().await;
    }
    let waiter = {
        let cache = cache.clone();
        tokio::spawn(async move {
            cache
                .get_or_insert_with("slow", || async { Ok::<_, Error>(2) })
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(20)).await;
    release.send(()).unwrap();
    assert_eq!(leader.await.unwrap().unwrap(), 1);
    assert_eq!(waiter.await.unwrap().unwrap(), 1);
    let events: Vec<String> = recorder
        .lines()
        .into_iter()
        .filter(|line| !line.starts_with("reference"))
        .collect();
    assert_eq!(events, ["loaded slow ok=true", "waited slow"]);
}

/// Everything a `fmt` subscriber writes, for reading back.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        let bytes = std::mem::take(&mut *self.0.lock().unwrap_or_else(PoisonError::into_inner));
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

#[tokio::test]
async fn the_tracing_observer_gives_one_span_per_call_and_never_a_value_or_by_default_a_key() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter("cachette=debug")
        .with_span_events(tracing_subscriber::fmt::format::FmtSpan::CLOSE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _default = tracing::subscriber::set_default(subscriber);

    let plain: Cache<String> = Cache::builder(reference())
        .observe(TracingObserver::new())
        .build();
    plain
        .set("user:alice", &"secret-value".to_owned())
        .await
        .unwrap();
    plain.get("user:alice").await.unwrap();
    plain.get("user:bob").await.unwrap();
    plain.get_many(["user:alice", "user:bob"]).await.unwrap();
    let text = captured.text();
    let spans: Vec<&str> = text.lines().filter(|line| line.contains("close")).collect();
    assert_eq!(spans.len(), 4, "{text}");
    for (span, (operation, outcome)) in spans.iter().zip([
        ("set", "ok"),
        ("get", "hit"),
        ("get", "miss"),
        ("get_many", "ok"),
    ]) {
        assert!(span.contains("store=\"reference\""), "{span}");
        assert!(
            span.contains(&format!("operation=\"{operation}\"")),
            "{span}"
        );
        assert!(span.contains(&format!("outcome=\"{outcome}\"")), "{span}");
    }
    assert!(
        spans[3].contains("keys=2") && spans[3].contains("hits=1"),
        "{}",
        spans[3]
    );
    assert!(
        !text.contains("alice") && !text.contains("secret-value"),
        "{text}"
    );

    let hashed: Cache<String> = Cache::builder(reference())
        .observe(TracingObserver::new().keys(KeyDisplay::Hash))
        .build();
    hashed.get("user:alice").await.unwrap();
    let text = captured.text();
    assert!(!text.contains("alice"), "{text}");
    assert!(text.contains("key=\""), "{text}");

    let faults = Faults::new(0);
    let outage = faults.outage();
    let failing: Cache<String> = Cache::builder(reference())
        .layer(faults)
        .observe(TracingObserver::new())
        .build();
    outage.begin();
    assert!(failing.get("k").await.is_err());
    let text = captured.text();
    assert!(
        text.contains("WARN") && text.contains("cache call failed"),
        "{text}"
    );
    assert!(
        text.contains("outcome=\"error\"") && text.contains("error=\"transient\""),
        "{text}"
    );
}

#[tokio::test]
async fn the_metrics_observer_counts_calls_hits_misses_and_errors() {
    let recorder = metrics_util::debugging::DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder
        .install()
        .expect("the only recorder of this test binary");

    let faults = Faults::new(0);
    let outage = faults.outage();
    let cache: Cache<u32> = Cache::builder(reference())
        .layer(faults)
        .observe(MetricsObserver::new())
        .build();
    cache.set("a", &1).await.unwrap();
    cache.get("a").await.unwrap();
    cache.get("b").await.unwrap();
    cache.get_many(["a", "b", "c"]).await.unwrap();
    outage.begin();
    assert!(cache.get("a").await.is_err());
    outage.end();
    cache
        .get_or_insert_with("d", || async { Ok::<_, Error>(4) })
        .await
        .unwrap();

    let mut counters = std::collections::BTreeMap::new();
    for (key, _, _, value) in snapshotter.snapshot().into_vec() {
        if let metrics_util::debugging::DebugValue::Counter(count) = value {
            let (_, key) = key.into_parts();
            let labels: Vec<String> = key
                .labels()
                .map(|label| format!("{}={}", label.key(), label.value()))
                .collect();
            counters.insert(format!("{}{{{}}}", key.name(), labels.join(",")), count);
        }
    }
    let expected = [
        // `get_or_insert_with` reads before it joins the load and again once it leads it.
        ("cachette_calls_total{store=reference,operation=get}", 5),
        (
            "cachette_calls_total{store=reference,operation=get_many}",
            1,
        ),
        ("cachette_calls_total{store=reference,operation=set}", 2),
        ("cachette_hits_total{store=reference,operation=get}", 1),
        ("cachette_misses_total{store=reference,operation=get}", 3),
        ("cachette_hits_total{store=reference,operation=get_many}", 1),
        (
            "cachette_misses_total{store=reference,operation=get_many}",
            2,
        ),
        (
            "cachette_errors_total{store=reference,operation=get,kind=transient}",
            1,
        ),
        ("cachette_loads_total{outcome=ok}", 1),
    ];
    for (name, count) in expected {
        assert_eq!(counters.get(name), Some(&count), "{name} in {counters:#?}");
    }
    let hit_rates: Vec<&String> = counters
        .keys()
        .filter(|name| name.starts_with("cachette_hits") || name.starts_with("cachette_misses"))
        .filter(|name| !name.contains("operation=get"))
        .collect();
    assert!(
        hit_rates.is_empty(),
        "hits and misses of writes: {hit_rates:?}"
    );
}
