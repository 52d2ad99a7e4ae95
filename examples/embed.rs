//! The smallest honest host integration — the code the README shows.
//!
//! Point it at a payment system (or at `protopay-sim` for staging):
//! ```text
//! cargo run -p protopay-sim -- --app-id APP001 --key secret --auto &
//! PROTOPAY_KEY=secret cargo run --example embed
//! ```
use protopay::{Config, Engine, Md5Key};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let env = |k: &str, default: &str| std::env::var(k).unwrap_or_else(|_| default.to_owned());
    let key = Md5Key::new(std::env::var("PROTOPAY_KEY")?);
    let config = Config::new(
        &env("PROTOPAY_APP_ID", "APP001"),
        key,
        &env("PROTOPAY_BASE_URL", "http://127.0.0.1:8700"),
        &env("PROTOPAY_CALLBACK_BASE_URL", "http://127.0.0.1:8080/protopay/notify"),
    );

    // Durable storage, HTTP both ways, and the poller that recovers whatever callbacks miss.
    let engine = Engine::builder(config.clone())
        .storage(protopay::sled::SledStorage::open(env(
            "PROTOPAY_DATA",
            "protopay-data",
        ))?)
        .transport(protopay::http::HttpTransport::from_config(&config)?)
        .build()
        .await?;
    let poller = engine.spawn_poller();
    let receiver = protopay::http::callback_router(engine.clone());
    let listener = tokio::net::TcpListener::bind(env("PROTOPAY_LISTEN", "127.0.0.1:8080")).await?;
    let server = tokio::spawn(async move { axum::serve(listener, receiver).await });

    // The host's feed: every state change, at least once, acknowledged when handled.
    let mut feed = engine.subscribe("my-app");
    loop {
        tokio::select! {
            events = feed.next() => for event in events? {
                println!("{} {:?} {:?}", event.seq, event.out_req_no, event.kind);
                feed.ack(event.seq).await?;
            },
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    poller.shutdown().await;
    server.abort();
    Ok(())
}
