//! The event feed: an outbox read after a cursor, acknowledged per named consumer, with a
//! live wake-up. Delivery is at least once: whatever a consumer has not acknowledged is
//! delivered again, across restarts too.

use super::Engine;
use crate::Result;
use crate::event::Event;
use crate::wire::validate::{self, limits};
use std::time::Duration;
use tokio::sync::watch;

/// Most events returned by one read.
const PAGE: usize = 256;

/// How soon a subscription looks again for events written but held back behind a commit
/// still in flight, and the longest it then waits between looks.
const HELD_BACK_FIRST_LOOK: Duration = Duration::from_millis(2);
const HELD_BACK_LAST_LOOK: Duration = Duration::from_millis(200);

/// A live subscription for one named consumer.
#[derive(Debug)]
pub struct Subscription {
    engine: Engine,
    consumer: String,
    position: Option<u64>,
    wake: watch::Receiver<u64>,
}

impl Subscription {
    /// The next events after what this subscription has handed out (starting from the
    /// consumer's acknowledged cursor), waiting until there is at least one. Acknowledge them
    /// with [`Engine::ack`] once handled.
    pub async fn next(&mut self) -> Result<Vec<Event>> {
        let mut held_back = HELD_BACK_FIRST_LOOK;
        loop {
            if self.engine.is_shut_down() {
                return Err(crate::Error::Shutdown);
            }
            // Mark the current value seen *before* reading, so a commit that lands between the
            // read and the wait still wakes us.
            let written = *self.wake.borrow_and_update();
            let after = match self.position {
                Some(p) => p,
                None => self.engine.cursor(&self.consumer).await?,
            };
            let events = self.engine.events_after(after, PAGE).await?;
            if let Some(last) = events.last() {
                self.position = Some(last.seq);
                return Ok(events);
            }
            self.position = Some(after);
            if written > after {
                // Written but held back behind a commit still in flight (see
                // `Storage::events_after`): no announcement says when that one ends, so look
                // again soon, less often the longer it takes.
                tokio::select! {
                    changed = self.wake.changed() => if changed.is_err() { return Err(crate::Error::Shutdown) },
                    _ = tokio::time::sleep(held_back) => {}
                }
                held_back = (held_back * 2).min(HELD_BACK_LAST_LOOK);
            } else if self.wake.changed().await.is_err() {
                return Err(crate::Error::Shutdown);
            }
        }
    }

    /// Acknowledge this consumer's events up to `seq` (as [`Engine::ack`]): they are not
    /// handed out again, to this subscription or after a restart.
    pub async fn ack(&self, seq: u64) -> Result<()> {
        self.engine.ack(&self.consumer, seq).await
    }

    /// The consumer's name.
    pub fn consumer(&self) -> &str {
        &self.consumer
    }
}

impl Engine {
    /// Up to `limit` events after `after`.
    pub async fn events_after(&self, after: u64, limit: usize) -> Result<Vec<Event>> {
        Ok(self.storage().events_after(after, limit).await?)
    }

    /// Up to `limit` of the newest events, newest first.
    pub async fn recent_events(&self, limit: usize) -> Result<Vec<Event>> {
        Ok(self.storage().events_before(u64::MAX, limit).await?)
    }

    /// A consumer's acknowledged cursor.
    pub async fn cursor(&self, consumer: &str) -> Result<u64> {
        Ok(self.storage().cursor(consumer).await?)
    }

    /// Acknowledge a consumer's events up to `seq`.
    pub async fn ack(&self, consumer: &str, seq: u64) -> Result<()> {
        self.served(consumer);
        Ok(self.storage().ack(consumer, seq).await?)
    }

    /// Events a consumer has not acknowledged yet (the first page).
    pub async fn unacknowledged(&self, consumer: &str) -> Result<Vec<Event>> {
        let cursor = self.cursor(consumer).await?;
        self.events_after(cursor, PAGE).await
    }

    /// Ask for `consumer`'s events from `from_seq` on to be delivered again, as a person
    /// (`by`, with `note`): recorded as [`EventKind::OperatorResent`](crate::event::EventKind::OperatorResent),
    /// an audit record, which the consumer's pusher acts on when it reaches it. `from_seq`
    /// must name an event already written.
    pub async fn resend(&self, consumer: &str, from_seq: u64, by: &str, note: &str) -> Result<()> {
        let _working = self.working()?;
        validate::required("note", note)?;
        validate::text("note", note, limits::NOTE_MAX_CHARS)?;
        validate::required("consumer", consumer)?;
        let last = self.storage().last_seq().await?;
        if from_seq == 0 || from_seq > last {
            return Err(crate::Error::InvalidField {
                field: "fromSeq",
                reason: "names no event written yet",
            });
        }
        let kind = crate::event::EventKind::OperatorResent {
            consumer: consumer.to_owned(),
            from_seq,
            note: note.to_owned(),
            by: by.to_owned(),
        };
        let event = self.event(None, crate::observation::Source::Operator, kind);
        self.record_events(vec![event], Vec::new()).await
    }

    /// A live subscription for `consumer`.
    pub fn subscribe(&self, consumer: &str) -> Subscription {
        self.served(consumer);
        Subscription {
            engine: self.clone(),
            consumer: consumer.to_owned(),
            position: None,
            wake: self.inner.last_seq.subscribe(),
        }
    }
}
