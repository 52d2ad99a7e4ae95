//! Cross-instance announcements: one connection per store `LISTEN`s on the schema's channel
//! and hands each notification's news to the engine ([`Announcements`]). A commit that
//! appends events or schedules polls notifies on commit, saying which
//! ([`Announced::to_payload`]), so that an engine wakes only what it concerns.
//!
//! A notification is only a hint to look again: the event log and the due index are the
//! truth. So a lost connection is simply reopened, announcing everything on reconnecting
//! (for what may have been missed meanwhile).

use protopay_engine::storage::{Announced, Announcements};
use std::future::poll_fn;
use std::sync::Arc;
use std::time::Duration;
use tokio_postgres::AsyncMessage;

/// Wait before reconnecting a lost listener.
const RECONNECT_AFTER: Duration = Duration::from_secs(1);

/// Listen until the task is aborted, announcing what each notification says.
pub(crate) async fn run(
    config: tokio_postgres::Config,
    tls: tokio_postgres_rustls::MakeRustlsConnect,
    channel: String,
    announcements: Arc<Announcements>,
) {
    loop {
        match config.connect(tls.clone()).await {
            Ok((client, mut connection)) => {
                let to = announcements.clone();
                // The connection object carries both the replies to `LISTEN` and the
                // notifications: drive it on its own task.
                let driver = tokio::spawn(async move {
                    while let Some(message) = poll_fn(|cx| connection.poll_message(cx)).await {
                        match message {
                            Ok(AsyncMessage::Notification(n)) => to.announce(Announced::from_payload(n.payload())),
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
                        announcements.announce(Announced::EVERYTHING);
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
