//! Sending an order's call (`prepay`/`outpay`), and the rules that keep it from paying twice:
//!
//! - the send is counted and the order marked `Submitted` durably *before* anything goes
//!   out; if that commit loses a race, someone else is handling the order and nothing is sent;
//! - a sender that reaches the network more than `poll.send_deadline_ms` after that commit
//!   began (it was paused, or the commit was slow) does not send: it records the send as
//!   never made (`NotSent`), and the order is sent afresh;
//! - a send refused before a byte was written (`TransportError::NotDelivered`) is recorded
//!   the same way: it can never land, so sending again is safe;
//! - every other failure leaves the order `Submitted` with a send that *may* have been
//!   delivered, and such a send is never repeated on the strength of time alone. A process
//!   can pause between its check and its write for longer than any grace period, and a
//!   network can deliver a request after its sender gave up: a verified "no such order" says
//!   the request has not landed *yet*, never that it will not. So past the grace period (this
//!   process's monotonic clock, from the send or from when this process first saw it) an
//!   order the payment system still does not know is sent again only if the payment system
//!   deduplicates `outReqNo` (`Config::payment_system_deduplicates`, off by default); without
//!   it, the order needs a person, with its funds reserved;
//! - a refused resend, or a spent budget, raises `NeedsAttention`; nothing is ever failed on
//!   our own.

use super::Engine;
use super::transact::{Bookkeeping, Step, StepError};
use crate::Error;
use crate::domain::{Order, OrderKind, Refusal};
use crate::observation::{News, Source};
use crate::storage::{Exchange, Versioned};
use std::time::Duration;
use tokio::time::Instant;

/// When this process made, or first saw, an order's latest send.
#[derive(Debug, Clone, Copy)]
pub(super) struct Seen {
    sends: u32,
    at: Instant,
}

impl Engine {
    /// Send the order's call once, as decided on `current`.
    ///
    /// `Err` only when the `Submitted` mark could not be committed (the order moved since it
    /// was read, or the store failed): then nothing was sent.
    /// Once it is committed, every later failure leaves the order where the store has it, and
    /// the order is returned: the poller carries on from there.
    pub(super) async fn send(&self, current: &Versioned<Order>) -> Result<Order, StepError> {
        let started = Instant::now();
        let step = Step {
            news: Some(News::Sending),
            ..Step::record(Source::Engine, Bookkeeping::Sending { at: self.now() })
        };
        let sent = self.transact_at(current, step).await?.value;
        let key = &sent.out_req_no().to_owned();
        debug_assert_eq!(
            sent.attempts.sends,
            current.value.attempts.sends + 1,
            "the send is counted, durably, before it goes out"
        );
        // The rule this module exists for, checked where it matters: of the sends that may
        // reach the payment system, this is the only one — unless the payment system
        // deduplicates, and then within the budget.
        let config = self.config();
        let may_land = sent.attempts.maybe_delivered();
        let allowed = if config.payment_system_deduplicates {
            config.poll.max_sends
        } else {
            1
        };
        debug_assert!(
            may_land <= allowed,
            "{key}: {may_land} sends that may land, {allowed} allowed"
        );
        if may_land > allowed {
            tracing::error!(out_req_no = %key, may_land, allowed,
                "refusing a send that could pay twice (a bug: the order needs a person)");
            return Ok(self
                .transact(key, Step::record(Source::Engine, Bookkeeping::NeedsAttention))
                .await
                .unwrap_or(sent));
        }
        if started.elapsed() > Duration::from_millis(config.poll.send_deadline_ms) {
            // Paused, or a slow commit: whoever watched the order meanwhile may have given
            // up on us. Not sending now is the one way to be sure this send never lands.
            tracing::warn!(out_req_no = %key, waited_ms = started.elapsed().as_millis() as u64,
                "the send missed its deadline; not sent");
            return Ok(self.not_sent(&sent, Vec::new()).await);
        }
        self.saw_send(&sent);
        let (reply, evidence) = match &sent.kind {
            OrderKind::Inbound(o) => {
                let (reply, evidence) = self.call_recorded(key, &o.request).await;
                (reply.map(|v| News::Inbound(Box::new(v))), evidence)
            }
            OrderKind::Outbound(o) => {
                let (reply, evidence) = self.call_recorded(key, &o.request).await;
                (reply.map(|v| News::Outbound(Box::new(v))), evidence)
            }
        };
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
        let step = match (reply, refusal) {
            (Ok(news), _) => Step::news(Source::Reply, news),
            (_, Some(refusal)) if sent.attempts.maybe_delivered() > 1 => {
                // A resend refused: the first send may have landed after all. Never fail it
                // on our own; a person decides.
                tracing::warn!(out_req_no = %key, code = %refusal.code, "resend refused; needs attention");
                Step::record(Source::Reply, Bookkeeping::NeedsAttention)
            }
            (_, Some(refusal)) => Step::news(Source::Reply, News::Refused(refusal)),
            (Err(Error::Transport(e)), None) if !e.maybe_delivered() => {
                tracing::warn!(out_req_no = %key, error = %e, "not delivered; it will be sent again");
                return Ok(self.not_sent(&sent, evidence).await);
            }
            (Err(e), None) => {
                tracing::warn!(out_req_no = %key, error = %e, "outcome unknown; the poller will query");
                self.record_evidence(evidence).await;
                return Ok(sent);
            }
        };
        let applied = self.transact(key, step.with_evidence(evidence)).await;
        Ok(applied.unwrap_or_else(|e| {
            tracing::warn!(out_req_no = %key, error = %e, "the reply could not be recorded; the poller will query");
            sent
        }))
    }

    /// Record that the send just counted on `sent` never left (with the `evidence` of the
    /// attempt, if it got as far as the transport). If that cannot be recorded, the send
    /// keeps counting as one that may have been delivered: the safe side.
    async fn not_sent(&self, sent: &Order, evidence: Vec<Exchange>) -> Order {
        let key = sent.out_req_no();
        self.forget_send(key);
        let step = Step::record(Source::Engine, Bookkeeping::NotSent).with_evidence(evidence);
        match self.transact(key, step).await {
            Ok(order) => order,
            Err(e) => {
                tracing::warn!(out_req_no = %key, error = %e,
                    "an unsent send could not be recorded; it counts as maybe delivered");
                sent.clone()
            }
        }
    }

    /// A verified "no such order" for an order we sent. Within grace, a quiet poll. Past it,
    /// the payment system has not got our request *yet* — which proves nothing about a
    /// request held up by a paused sender or a slow network. So: resend within budget only
    /// where the payment system deduplicates `outReqNo`; otherwise a person decides.
    /// `evidence` is the query that said so.
    pub(super) async fn not_found(&self, current: &Versioned<Order>, evidence: Vec<Exchange>) -> Result<(), StepError> {
        let order = &current.value;
        if !self.past_grace(order) {
            // Our request may still be on its way: sending again now could pay twice.
            let step = Step::poll(None).with_evidence(evidence);
            return self.transact_at(current, step).await.map(drop);
        }
        let config = self.config();
        let maybe_delivered = order.attempts.maybe_delivered();
        if !config.payment_system_deduplicates || maybe_delivered >= config.poll.max_sends {
            if !order.attempts.needs_attention {
                tracing::warn!(
                    out_req_no = order.out_req_no(),
                    maybe_delivered,
                    deduplicates = config.payment_system_deduplicates,
                    "not found past grace, and a send may still land; needs attention"
                );
            }
            let step = Step::record(Source::Poll, Bookkeeping::NeedsAttention).with_evidence(evidence);
            return self.transact_at(current, step).await.map(drop);
        }
        self.record_evidence(evidence).await;
        tracing::info!(
            out_req_no = order.out_req_no(),
            maybe_delivered,
            "not found past grace; resending (the payment system deduplicates)"
        );
        self.send(current).await.map(drop)
    }

    /// Whether a full grace period of this process's monotonic time has passed since the
    /// order's latest send was made or first seen here.
    fn past_grace(&self, order: &Order) -> bool {
        let grace = Duration::from_millis(self.config().poll.grace_ms);
        let sends = order.attempts.sends;
        let mut latest = self.inner.latest_sends.lock().unwrap_or_else(|p| p.into_inner());
        let seen = latest.entry(order.out_req_no().to_owned()).or_insert(Seen {
            sends,
            at: Instant::now(),
        });
        if seen.sends != sends {
            *seen = Seen {
                sends,
                at: Instant::now(),
            };
        }
        seen.at.elapsed() >= grace
    }

    /// Our own send, about to go out: its grace period starts now.
    fn saw_send(&self, order: &Order) {
        let seen = Seen {
            sends: order.attempts.sends,
            at: Instant::now(),
        };
        self.inner
            .latest_sends
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(order.out_req_no().to_owned(), seen);
    }

    /// The order's outcome is known (or it was never sent): nothing to time any more.
    pub(super) fn forget_send(&self, out_req_no: &str) {
        let mut latest = self.inner.latest_sends.lock().unwrap_or_else(|p| p.into_inner());
        if !latest.is_empty() {
            latest.remove(out_req_no);
        }
    }
}
