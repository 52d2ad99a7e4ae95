//! Cross-instance announcements: one connection per store `LISTEN`s on the schema's channel
//! and hands each notification's news to the engine ([`Announcements`]). On the same
//! connection it sends what this store's commits did (events appended, polls scheduled) once
//! they have committed, saying which ([`Announced::to_payload`]), so that an engine wakes only
//! what it concerns.
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

/// Listen until the task is aborted, announcing what each notification says; and send what
/// this store's commits announce (`outgoing`) on the same connection, one `NOTIFY` for
/// whatever gathered while the last was sent, so a burst of commits costs one.
///
/// Outside any commit on purpose: a transaction that notifies holds a lock per database
/// through its commit, which serialises every such commit of every instance. A process that
/// stops between a commit and its notification loses a hint, never data: pollers look at
/// least once per claim lease, and the next announcement wakes subscriptions. While the
/// connection is down, announcements gather and go out once it is back.
pub(crate) async fn run(
    config: tokio_postgres::Config,
    tls: tokio_postgres_rustls::MakeRustlsConnect,
    channel: String,
    announcements: Arc<Announcements>,
    outgoing: Arc<Announcements>,
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
                // The announcing statement is prepared once per connection, and before
                // `LISTEN`, so that an idle listener's last statement (what
                // `pg_stat_activity` shows an operator) says what it is.
                let listening = async {
                    let notify = client.prepare("SELECT pg_notify($1, $2)").await?;
                    client.batch_execute(&format!("LISTEN {channel}")).await?;
                    Ok::<_, tokio_postgres::Error>(notify)
                };
                match listening.await {
                    Ok(notify) => {
                        announcements.announce(Announced::EVERYTHING);
                        let mut driver = driver;
                        loop {
                            tokio::select! {
                                _ = &mut driver => break,
                                news = outgoing.next() => {
                                    let payload = news.to_payload();
                                    if let Err(e) = client.execute(&notify, &[&channel, &payload]).await {
                                        tracing::warn!(error = %e, "announcing commits failed");
                                        // Sent again once the connection is back.
                                        outgoing.announce(news);
                                    }
                                }
                            }
                        }
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
