//! Sending an order's call (`prepay`/`outpay`), and the rules that keep it from paying twice:
//!
//! - the send is counted and the order marked `Submitted` durably *before* anything goes
//!   out; if that commit loses a race, someone else is handling the order and nothing is sent;
//! - an ambiguous failure leaves the order `Submitted`: the poller queries before it would
//!   ever send again;
//! - only a verified "no such order" seen a full grace period after the last send allows a
//!   resend, with the stored request byte for byte — and that period is measured on this
//!   process's **monotonic** clock, from the send or from when this process first saw it (a
//!   send by an earlier process, or another one, is at least that old). A wall clock that
//!   jumps, across a restart or not, cannot shorten it;
//! - a refused resend, or a spent budget, raises `NeedsAttention`; nothing is ever failed on
//!   our own.

use super::Engine;
use super::transact::{Bookkeeping, Step};
use crate::domain::{Order, OrderKind, Refusal};
use crate::observation::{News, Source};
use crate::storage::Versioned;
use crate::{Error, Result};
use std::time::Duration;
use tokio::time::Instant;

/// When this process made, or first saw, an order's latest send.
#[derive(Debug, Clone, Copy)]
pub(super) struct Seen {
    submissions: u32,
    at: Instant,
}

impl Engine {
    /// Send the order's call once, as decided on `current`.
    ///
    /// `Err` only when the `Submitted` mark could not be committed: then nothing was sent.
    /// Once it is committed, every later failure leaves the order where the store has it, and
    /// the order is returned: the poller carries on from there.
    pub(super) async fn submit(&self, current: &Versioned<Order>) -> Result<Order> {
        let step = Step {
            news: Some(News::Sending),
            ..Step::record(Source::Engine, Bookkeeping::Sending { at: self.now() })
        };
        let sent = self.transact_at(current, step).await?.value;
        self.saw_submission(&sent);
        let reply = match &sent.kind {
            OrderKind::Inbound(o) => self.call(&o.request).await.map(|v| News::Inbound(Box::new(v))),
            OrderKind::Outbound(o) => self.call(&o.request).await.map(|v| News::Outbound(Box::new(v))),
        };
        let key = &sent.out_req_no().to_owned();
        let refusal = match &reply {
            Err(Error::Remote { code, msg }) => Some(Refusal {
                code: code.clone(),
                msg: msg.clone(),
            }),
            Err(Error::NotFound(m)) => Some(Refusal {
                code: m.code().to_owned(),
                msg: m.to_string(),
            }),
            _ => None,
        };
        let applied = match (reply, refusal) {
            (Ok(news), _) => self.transact(key, Step::news(Source::Reply, news)).await,
            (_, Some(refusal)) if sent.attempts.submissions > 1 => {
                // A resend refused: the first send may have landed after all. Never fail it
                // on our own; a person decides.
                tracing::warn!(out_req_no = %key, code = %refusal.code, "resend refused; needs attention");
                self.transact(key, Step::record(Source::Reply, Bookkeeping::NeedsAttention))
                    .await
            }
            (_, Some(refusal)) => {
                self.transact(key, Step::news(Source::Reply, News::Refused(refusal)))
                    .await
            }
            (Err(e), None) => {
                tracing::warn!(out_req_no = %key, error = %e, "outcome unknown; the poller will query");
                return Ok(sent);
            }
        };
        Ok(applied.unwrap_or_else(|e| {
            tracing::warn!(out_req_no = %key, error = %e, "the reply could not be recorded; the poller will query");
            sent
        }))
    }

    /// A verified "no such order" for an order we sent: resend past grace, within budget;
    /// past budget, it needs attention; within grace, it is a quiet poll.
    pub(super) async fn not_found(&self, current: &Versioned<Order>) -> Result<()> {
        let order = &current.value;
        if !self.past_grace(order) {
            // Our request may still be on its way: sending again now could pay twice.
            return self.transact_at(current, Step::poll(None)).await.map(drop);
        }
        if order.attempts.submissions >= self.config().poll.max_submissions {
            return self
                .transact_at(current, Step::record(Source::Poll, Bookkeeping::NeedsAttention))
                .await
                .map(drop);
        }
        tracing::info!(
            out_req_no = order.out_req_no(),
            submissions = order.attempts.submissions,
            "not found past grace; resending"
        );
        self.submit(current).await.map(drop)
    }

    /// Whether a full grace period of this process's monotonic time has passed since the
    /// order's latest send was made or first seen here.
    fn past_grace(&self, order: &Order) -> bool {
        let grace = Duration::from_millis(self.config().poll.grace_ms);
        let submissions = order.attempts.submissions;
        let mut sends = self.inner.sends.lock().unwrap_or_else(|p| p.into_inner());
        let seen = sends.entry(order.out_req_no().to_owned()).or_insert(Seen {
            submissions,
            at: Instant::now(),
        });
        if seen.submissions != submissions {
            *seen = Seen {
                submissions,
                at: Instant::now(),
            };
        }
        seen.at.elapsed() >= grace
    }

    /// Our own send, about to go out: its grace period starts now.
    fn saw_submission(&self, order: &Order) {
        let seen = Seen {
            submissions: order.attempts.submissions,
            at: Instant::now(),
        };
        self.inner
            .sends
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(order.out_req_no().to_owned(), seen);
    }

    /// The order's outcome is known (or it was never sent): nothing to time any more.
    pub(super) fn forget_submission(&self, out_req_no: &str) {
        let mut sends = self.inner.sends.lock().unwrap_or_else(|p| p.into_inner());
        if !sends.is_empty() {
            sends.remove(out_req_no);
        }
    }
}
