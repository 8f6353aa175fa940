//! The same application code over whichever store a URL names: swapping storage is
//! configuration, not code.
//!
//! ```sh
//! cargo run --example swap_backend                                   # memory://
//! cargo run --example swap_backend -- sqlite:///tmp/swap.db
//! cargo run --example swap_backend --features redis -- redis://127.0.0.1:6379/0
//! cargo run --example swap_backend --features postgres -- postgres://postgres@127.0.0.1/test
//! ```

use std::time::Duration;

use cachette::{Cache, SetOptions};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Session {
    user: String,
    roles: Vec<String>,
}

/// Application code: it knows `Cache<Session>`, never which store is behind it.
async fn handle_login(sessions: &Cache<Session>, token: &str, user: &str) -> cachette::Result<()> {
    let session = Session {
        user: user.into(),
        roles: vec!["reader".into()],
    };
    let first = sessions
        .set_with(token, &session, SetOptions::new().if_not_exists())
        .await?;
    println!("login {user}: new session written: {first}");
    let read = sessions.get(token).await?;
    println!(
        "session {token} -> {read:?}, ttl {:?}",
        sessions.ttl(token).await?
    );
    Ok(())
}

#[tokio::main]
async fn main() -> cachette::Result<()> {
    let url = std::env::args()
        .nth(1)
        .or_else(|| std::env::var("CACHETTE_URL").ok())
        .unwrap_or_else(|| "memory://".into());
    let store = cachette::open(&url).await?;
    println!("store: {} ({url})", store.name());
    let sessions: Cache<Session> = Cache::builder(store)
        .prefix("swap-example:sessions:")
        .default_ttl(Duration::from_secs(60))
        .build();
    handle_login(&sessions, "token-1", "ada").await?;
    println!(
        "cleared {} session(s) of this example",
        sessions.clear().await?
    );
    sessions.close().await
}
