//! Cross-instance wake-ups: one connection per store `LISTEN`s on the schema's channel and
//! counts notifications. Commits that append events or schedule polls notify on commit.
//!
//! A notification is only a hint to look again: the event log and the due index are the
//! truth. So a lost connection is simply reopened (with one hint on reconnecting, for what
//! may have been missed meanwhile), and a missed notification costs at most one idle tick.

use std::future::poll_fn;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio_postgres::AsyncMessage;

/// Wait before reconnecting a lost listener.
const RECONNECT_AFTER: Duration = Duration::from_secs(1);

/// Listen until the task is aborted, counting notifications into `hints`.
pub(crate) async fn run(
    config: tokio_postgres::Config,
    tls: tokio_postgres_rustls::MakeRustlsConnect,
    channel: String,
    hints: Arc<watch::Sender<u64>>,
) {
    loop {
        match config.connect(tls.clone()).await {
            Ok((client, mut connection)) => {
                let counter = hints.clone();
                // The connection object carries both the replies to `LISTEN` and the
                // notifications: drive it on its own task.
                let driver = tokio::spawn(async move {
                    while let Some(message) = poll_fn(|cx| connection.poll_message(cx)).await {
                        match message {
                            Ok(AsyncMessage::Notification(_)) => counter.send_modify(|n| *n = n.wrapping_add(1)),
                            Ok(_) => {}
                            Err(e) => {
                                tracing::warn!(error = %e, "PostgreSQL listener connection lost");
                                break;
                            }
                        }
                    }
                });
                match client.batch_execute(&format!("LISTEN {channel}")).await {
                    Ok(()) => {
                        hints.send_modify(|n| *n = n.wrapping_add(1));
                        let _ = driver.await;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "LISTEN failed");
                        driver.abort();
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "PostgreSQL listener could not connect"),
        }
        tokio::time::sleep(RECONNECT_AFTER).await;
    }
}
