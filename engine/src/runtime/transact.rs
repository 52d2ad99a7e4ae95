//! The one unit of work. Every change the engine makes — a command, a callback, a poll, a
//! send, a flag, an operator's decision, a poll moved sooner, a protocol adopted — is built
//! and committed here, so the rules that keep the store honest live in one place:
//!
//! - an order is written only at the version it was read at (a stale write is the store's
//!   `Conflict`, re-read and retried here; the host's `Error` has no way to carry one);
//! - its protocol's ledger moves in the same commit as the order, by [`apply`]'s move;
//! - its events go into the same commit;
//! - its next poll time too: after every commit an open order has exactly one due time,
//!   now or later, and a closed order has none (checked in debug builds);
//! - steps on one protocol take turns within this process, so a burst on a hot protocol
//!   queues instead of burning its retries; across processes the versions decide.
//!
//! Longer than most files on purpose: every rule of a commit reads here, in one place.

use super::schedule::next_poll;
use super::{Engine, metrics};
use crate::domain::{Order, Protocol, Status};
use crate::event::{Anomaly, Event, EventKind};
use crate::ledger;
use crate::observation::{News, Observation, Source};
use crate::storage::{Batch, Exchange, Opening, Put, StorageError, Versioned};
use crate::{Error, Result, apply};
use chrono::{DateTime, Utc};
use std::sync::Arc;

/// How many times a step that lost an optimistic-concurrency race is re-read and retried.
const CONFLICT_RETRIES: usize = 64;

/// How many protocols' turn locks are kept before those nobody waits on are forgotten: a
/// lock costs ~100 bytes, and a busy engine touches a few thousand protocols an hour.
const TURNS_KEPT: usize = 4_096;

/// When an order should next be polled, after a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PollAt {
    /// As the poll policy says for its new state.
    Policy,
    /// Now (a failed callback named it: real news may be waiting).
    Now,
}

/// What the engine records about its own efforts, beside what the news says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Bookkeeping {
    /// Nothing of its own.
    Nothing,
    /// The order's call is about to be sent: counted before it is.
    Sending {
        /// The wall time of the send (for people; the grace rule uses the monotonic clock).
        at: DateTime<Utc>,
    },
    /// The send counted by `Sending` never left: refused before a byte was written, or
    /// held back by a sender that reached the network past its deadline. It can never reach
    /// the payment system, so it no longer counts as one that may have.
    NotSent,
    /// A poll that brought no outcome: counted, and past the policy's budget the order
    /// needs attention.
    QuietPoll,
    /// The order needs a person (raised once).
    NeedsAttention,
    /// A person's decision, recorded as such when it took effect.
    Resolved {
        /// The outcome decided.
        status: Status,
        /// Why.
        note: String,
        /// Who, when named.
        by: Option<String>,
    },
}

/// One step on one order.
#[derive(Debug, Clone)]
pub(super) struct Step {
    /// What brought it.
    pub source: Source,
    /// The news to apply, if any.
    pub news: Option<News>,
    /// The engine's own records.
    pub bookkeeping: Bookkeeping,
    /// When to poll next.
    pub poll_at: PollAt,
    /// What went over the wire to bring it, kept as evidence in its commit.
    pub evidence: Vec<Exchange>,
}

impl Step {
    /// News, applied.
    pub(super) fn news(source: Source, news: News) -> Self {
        Step {
            source,
            news: Some(news),
            bookkeeping: Bookkeeping::Nothing,
            poll_at: PollAt::Policy,
            evidence: Vec::new(),
        }
    }

    /// The poller's step: optional news, then the quiet-poll count if it brought no outcome.
    pub(super) fn poll(news: Option<News>) -> Self {
        Step {
            source: Source::Poll,
            news,
            bookkeeping: Bookkeeping::QuietPoll,
            poll_at: PollAt::Policy,
            evidence: Vec::new(),
        }
    }

    /// The engine's own record, without news.
    pub(super) fn record(source: Source, bookkeeping: Bookkeeping) -> Self {
        Step {
            source,
            news: None,
            bookkeeping,
            poll_at: PollAt::Policy,
            evidence: Vec::new(),
        }
    }

    /// The same step, keeping `evidence` in its commit.
    pub(super) fn with_evidence(self, evidence: Vec<Exchange>) -> Self {
        Step { evidence, ..self }
    }
}

/// How a step decided on an order as read can end short.
#[derive(Debug, thiserror::Error)]
pub(super) enum StepError {
    /// The order or its protocol moved since it was read: someone else acted on it, and a
    /// decision made on the old view is void. Nothing was written. Inside a retry loop, the
    /// step is decided again on a fresh read; a step made at a given version
    /// ([`Engine::transact_at`]) is simply dropped.
    #[error("the order moved since it was read; nothing was written")]
    Raced,
    /// Anything else, as the host would see it.
    #[error(transparent)]
    Failed(#[from] Error),
}

impl From<StorageError> for StepError {
    fn from(e: StorageError) -> Self {
        match e {
            StorageError::Conflict => StepError::Raced,
            other => StepError::Failed(other.into()),
        }
    }
}

/// What recording a new order found.
pub(super) enum Intent {
    /// It is stored now, by this call.
    Recorded(Versioned<Order>),
    /// An order with this `outReqNo` was already stored.
    Existing(Versioned<Order>),
}

impl Engine {
    /// Apply `step` to the order as it is now, re-reading and retrying while concurrent
    /// commits win races.
    ///
    /// The first attempt uses the read that named the order's protocol, made before its
    /// turn: the turn is for the protocol's record (read in `commit_step`, under it), and an
    /// order that moved meanwhile fails its commit on its version, to be read again.
    pub(super) async fn transact(&self, out_req_no: &str, step: Step) -> Result<Order> {
        let first = self.stored_order(out_req_no).await?;
        let _turn = self.protocol_turn(first.value.trans_no()).await;
        let step = &step;
        let mut first = Some(first);
        retry_on_conflict(
            || format!("order {out_req_no}"),
            || {
                let read = first.take();
                async move {
                    let current = match read {
                        Some(current) => current,
                        None => self.stored_order(out_req_no).await?,
                    };
                    self.commit_step(&current, step).await.map(|v| v.value)
                }
            },
        )
        .await
    }

    /// Apply `step` to the order exactly as read at `current`; [`StepError::Raced`] if it has
    /// moved since (someone else acted on it: the caller's decision was made on a stale view).
    pub(super) async fn transact_at(
        &self,
        current: &Versioned<Order>,
        step: Step,
    ) -> Result<Versioned<Order>, StepError> {
        let _turn = self.protocol_turn(current.value.trans_no()).await;
        self.commit_step(current, &step).await
    }

    async fn commit_step(&self, current: &Versioned<Order>, step: &Step) -> Result<Versioned<Order>, StepError> {
        let before = &current.value;
        let (mut next, movement, mut kinds) = match &step.news {
            Some(news) => {
                let outcome = apply(before, &Observation::new(step.source, news.clone()));
                (outcome.order, outcome.movement, outcome.events)
            }
            None => (before.clone(), None, Vec::new()),
        };
        if ledger::slot_of(&next) != ledger::slot_of(before) || next.status != before.status {
            let a = &mut next.attempts;
            a.quiet_polls = 0;
            a.needs_attention = false;
        }
        self.keep_books(before, &mut next, &mut kinds, &step.bookkeeping);
        // Postconditions of a step, before anything is written: states only move forward (a
        // person's decision aside, which settles an open order); the ledger moves exactly
        // from the slot the order was in to the one it is in now; and of the sends, no more
        // are known unsent than were made.
        debug_assert!(
            next.status.rank() >= before.status.rank() || step.source == Source::Operator,
            "{}: {} went back to {}",
            before.out_req_no(),
            before.status,
            next.status
        );
        debug_assert_eq!(
            movement.as_ref().map(|m| (m.from, m.to, m.amount)),
            ledger::movement(Some(before), &next).map(|m| (m.from, m.to, m.amount)),
            "the ledger moves as the order's slot does"
        );
        debug_assert!(next.attempts.unsent <= next.attempts.sends, "unsent sends were made");
        // A step that changes nothing may skip its commit: the order's due time, written
        // with its current version, still stands. Not so for a poll (it runs because that due
        // time has come: it must record the next one) or a step that moves the due time.
        let unchanged = next == *before && kinds.is_empty() && step.evidence.is_empty();
        if unchanged && step.source != Source::Poll && step.poll_at == PollAt::Policy {
            return Ok(current.clone());
        }
        let now = self.now();
        let due = match step.poll_at {
            PollAt::Policy => next_poll(&next, now, &self.config().poll),
            PollAt::Now => next.is_open().then_some(now),
        };
        debug_assert_eq!(
            due.is_some(),
            next.is_open(),
            "an open order has one due time, a closed one none"
        );
        debug_assert!(due.is_none_or(|d| d >= now), "a due time is now or later");
        let mut batch = Batch {
            exchanges: step.evidence.clone(),
            ..Batch::default()
        };
        if let Some(m) = movement {
            let protocol = self.stored_protocol(next.trans_no()).await?;
            let mut updated = protocol.value;
            match updated.ledger.apply(&m) {
                Ok(()) => batch.protocols.push(Put {
                    expected: Some(protocol.version),
                    value: updated,
                }),
                Err(_) if overrules_released_payout(before, &next) => {
                    // The funds a person released have been spent since: the ledger cannot
                    // pay out money it no longer holds. The person's FAILURE stands, with
                    // both claims in the history, paged as a double payment until a person
                    // settles it with the payment system (reconcile shows the difference).
                    let mut held = before.clone();
                    held.attempts = next.attempts.clone();
                    next = held;
                    kinds.retain(|k| matches!(k, EventKind::Anomaly(_)));
                }
                Err(e) => return Err(e.into()),
            }
        }
        batch.events = kinds
            .into_iter()
            .map(|k| self.event(Some(&next), step.source, k))
            .collect();
        batch.schedule.push((next.out_req_no().to_owned(), due));
        batch.orders.push(Put {
            expected: Some(current.version),
            value: next.clone(),
        });
        self.commit(batch).await?;
        if next.status != before.status {
            tracing::info!(out_req_no = next.out_req_no(), from = %before.status, to = %next.status,
                source = %step.source, "order moved");
        }
        if before.status == Status::Submitted && next.status != Status::Submitted {
            self.forget_send(next.out_req_no());
        }
        self.debug_check_ledger(next.trans_no()).await;
        Ok(Versioned {
            version: current.version + 1,
            value: next,
        })
    }

    /// The engine's own records on an order, beside what the news changed.
    fn keep_books(&self, before: &Order, next: &mut Order, kinds: &mut Vec<EventKind>, books: &Bookkeeping) {
        let raise = |next: &mut Order, kinds: &mut Vec<EventKind>| {
            let a = &mut next.attempts;
            if !a.needs_attention {
                a.needs_attention = true;
                kinds.push(EventKind::Anomaly(Anomaly::NeedsAttention { sends: a.sends }));
            }
        };
        if kinds
            .iter()
            .any(|k| matches!(k, EventKind::Anomaly(Anomaly::SuspectedDoublePayment { .. })))
        {
            next.attempts.double_payment_suspected = true;
        }
        // The payment system contradicts a person (rule 7 of `apply`, or a conflict rule 2
        // kept out): both claims are in the history; a person must look, settled or not.
        let contradicted = before.attempts.decided_by_person
            && kinds
                .iter()
                .any(|k| matches!(k, EventKind::Anomaly(Anomaly::ConflictingStatus { .. })));
        if contradicted {
            next.attempts.needs_attention = true;
        }
        if overrules_released_payout(before, next) {
            // A person released these funds as never paid out; the payment system paid
            // them. Whoever was told FAILURE may pay again: page as a double payment.
            let paid = next.outbound().and_then(|o| o.remote.pay_order_no.clone());
            kinds.push(EventKind::Anomaly(Anomaly::SuspectedDoublePayment {
                other_pay_order_no: paid.unwrap_or_default(),
            }));
            next.attempts.double_payment_suspected = true;
        }
        match books {
            Bookkeeping::Nothing => {}
            Bookkeeping::NotSent => {
                let a = &mut next.attempts;
                if next.status == Status::Submitted && a.unsent < a.sends {
                    a.unsent += 1;
                    // Back off while sends cannot leave (the payment system refuses
                    // connections): 2, 4, … 64 times the first interval.
                    a.quiet_polls = a.unsent.min(6);
                    if a.maybe_delivered() == 0 {
                        // Nothing of ours is out there: nothing for a person to weigh.
                        a.needs_attention = false;
                    }
                    kinds.push(EventKind::NotSent);
                }
            }
            Bookkeeping::Sending { at } => {
                let a = &mut next.attempts;
                a.sends += 1;
                a.last_sent_at = Some(*at);
                a.quiet_polls = 0;
            }
            Bookkeeping::QuietPoll => {
                if next.status == before.status {
                    let a = &mut next.attempts;
                    a.quiet_polls = a.quiet_polls.saturating_add(1);
                    let budget = self.config().poll.attention_after_quiet_polls;
                    if a.quiet_polls >= budget && next.awaits_outcome() {
                        raise(next, kinds);
                    }
                }
            }
            Bookkeeping::NeedsAttention => raise(next, kinds),
            Bookkeeping::Resolved { status, note, by } => {
                let decided = next.status == *status && before.status != *status;
                // A settled order flagged for a second payment, or whose decision the payment
                // system contradicted: the person has looked.
                let flagged_settled = before.attempts.double_payment_suspected
                    || (before.attempts.needs_attention && before.status.is_terminal());
                let acknowledged = next.status == *status && flagged_settled;
                if decided {
                    next.attempts.decided_by_person = true;
                }
                if decided || acknowledged {
                    next.attempts.double_payment_suspected = false;
                    next.attempts.needs_attention = false;
                    kinds.push(EventKind::OperatorResolved {
                        status: *status,
                        note: note.clone(),
                        by: by.clone(),
                    });
                }
            }
        }
    }

    /// Store a new order with its intent event, its first poll time and (outbound) its
    /// reservation, checked against the protocol's available funds — or find the order
    /// already stored under its `outReqNo`. An error is returned only after the order was
    /// read again and found absent, so twins of one command on any number of instances get
    /// the same answer.
    ///
    /// If the commit fails, the store is read again: a backend may fail after the write took
    /// effect (a lost connection mid-commit, a failed flush of a write already visible).
    /// What the read shows decides; if it cannot be read either, the outcome is unknown and
    /// said so with the `outReqNo`.
    pub(super) async fn record_intent(&self, order: &Order, recorded: EventKind) -> Result<Intent> {
        // Preconditions: an intent is a new order, stored before anything is sent for it.
        debug_assert!(
            matches!(order.status, Status::Requested | Status::Reserved),
            "an intent is Requested or Reserved, not {}",
            order.status
        );
        debug_assert_eq!(order.attempts, Default::default(), "an intent has never been sent");
        debug_assert!(order.refusal.is_none(), "an intent has no refusal");
        let key = order.out_req_no();
        let _turn = self.protocol_turn(order.trans_no()).await;
        let recorded = &recorded;
        retry_on_conflict(
            || format!("protocol {}", order.trans_no()),
            || async move {
                if let Some(existing) = self.storage().order(key).await? {
                    return Ok(Intent::Existing(existing));
                }
                let mut batch = Batch::default();
                if let Some(m) = ledger::movement(None, order) {
                    // Only a payout or refund moves money at its intent: it reserves its
                    // amount out of what is available.
                    debug_assert_eq!(
                        (m.from, m.to, m.amount),
                        (ledger::Slot::Available, ledger::Slot::Reserved, order.amount()),
                        "an intent reserves exactly its amount"
                    );
                    let protocol = self.stored_protocol(order.trans_no()).await?;
                    let mut updated = protocol.value;
                    if order.amount() > updated.ledger.available {
                        // A twin of this command, on this instance or another, may have stored
                        // the order (and taken the funds) since it was looked up: re-read it
                        // before saying that nothing will ever move.
                        if let Some(existing) = self.storage().order(key).await? {
                            return Ok(Intent::Existing(existing));
                        }
                        return Err(Error::InsufficientFunds {
                            requested: order.amount(),
                            available: updated.ledger.available,
                        }
                        .into());
                    }
                    let before = updated.ledger;
                    updated.ledger.apply(&m)?;
                    debug_assert_eq!(
                        (
                            updated.ledger.available.checked_add(m.amount),
                            updated.ledger.reserved.checked_sub(m.amount)
                        ),
                        (Some(before.available), Some(before.reserved)),
                        "the reservation moved exactly the order's amount"
                    );
                    batch.protocols.push(Put {
                        expected: Some(protocol.version),
                        value: updated,
                    });
                }
                batch
                    .events
                    .push(self.event(Some(order), Source::Engine, recorded.clone()));
                batch
                    .schedule
                    .push((key.to_owned(), next_poll(order, self.now(), &self.config().poll)));
                batch.orders.push(Put {
                    expected: None,
                    value: order.clone(),
                });
                match self.commit(batch).await {
                    Ok(()) => {
                        self.debug_check_ledger(order.trans_no()).await;
                        Ok(Intent::Recorded(Versioned {
                            version: 1,
                            value: order.clone(),
                        }))
                    }
                    Err(StorageError::Conflict) => Err(StepError::Raced),
                    Err(e) => match self.storage().order(key).await {
                        Ok(None) => Err(StepError::Failed(e.into())),
                        Ok(Some(stored)) if stored.value == *order => Ok(Intent::Recorded(stored)),
                        Ok(Some(stored)) => Ok(Intent::Existing(stored)),
                        Err(_) => Err(Error::OutcomeUnknown {
                            out_req_no: key.to_owned(),
                        }
                        .into()),
                    },
                }
            },
        )
        .await
    }

    /// Read-modify-write a protocol record: `change` gets the protocol as stored (or `None`)
    /// and returns what to write with its events, or `None` to write nothing.
    pub(super) async fn update_protocol(
        &self,
        trans_no: &str,
        change: impl Fn(Option<&Protocol>) -> Option<(Protocol, Vec<Event>)>,
    ) -> Result<Protocol> {
        let _turn = self.protocol_turn(trans_no).await;
        let change = &change;
        retry_on_conflict(
            || format!("protocol {trans_no}"),
            || async move {
                let current = self.storage().protocol(trans_no).await?;
                let Some((next, events)) = change(current.as_ref().map(|c| &c.value)) else {
                    return current.map(|c| c.value).ok_or_else(|| {
                        Error::UnknownProtocol {
                            trans_no: trans_no.to_owned(),
                        }
                        .into()
                    });
                };
                let put = Put {
                    expected: current.map(|c| c.version),
                    value: next.clone(),
                };
                self.commit(Batch {
                    protocols: vec![put],
                    events,
                    ..Default::default()
                })
                .await?;
                Ok(next)
            },
        )
        .await
    }

    /// Store a protocol the payment system has just opened, with its `created` event and the
    /// host's idempotency key, in one commit. Answers the protocol the key names from now on:
    /// this one — or, when another call with the same key stored its protocol first, that
    /// one (this one is stored all the same, without the key: it exists, empty, and a person
    /// may see it). A protocol already stored (adopted by a concurrent refresh) stands.
    pub(super) async fn record_opened(
        &self,
        protocol: &Protocol,
        created: &Event,
        idempotency_key: Option<&str>,
    ) -> Result<Protocol> {
        let trans_no = protocol.trans_no.as_str();
        let _turn = self.protocol_turn(trans_no).await;
        retry_on_conflict(
            || format!("protocol {trans_no}"),
            || async move {
                let earlier = match idempotency_key {
                    Some(key) => self.storage().opening(key).await?,
                    None => None,
                };
                let current = self.storage().protocol(trans_no).await?;
                let mut batch = Batch::default();
                if current.is_none() {
                    batch.protocols.push(Put {
                        expected: None,
                        value: protocol.clone(),
                    });
                    batch.events.push(created.clone());
                }
                if let (Some(key), None) = (idempotency_key, &earlier) {
                    batch.openings.push(Opening {
                        idempotency_key: key.to_owned(),
                        trans_no: trans_no.to_owned(),
                    });
                }
                if !batch.is_empty() {
                    self.commit(batch).await?;
                }
                match earlier {
                    Some(other) if other != trans_no => {
                        // A key and its protocol are written in one commit: both, or neither.
                        let stored = self.storage().protocol(&other).await?;
                        stored
                            .map(|p| p.value)
                            .ok_or_else(|| Error::UnknownProtocol { trans_no: other }.into())
                    }
                    _ => Ok(current.map_or_else(|| protocol.clone(), |p| p.value)),
                }
            },
        )
        .await
    }

    /// Keep evidence that no step carries (a send whose outcome is unknown): its own commit,
    /// and if that fails, only a warning — evidence never holds up money.
    pub(super) async fn record_evidence(&self, exchanges: Vec<Exchange>) {
        if exchanges.is_empty() {
            return;
        }
        let batch = Batch {
            exchanges,
            ..Batch::default()
        };
        if let Err(e) = self.commit(batch).await {
            tracing::warn!(error = %e, "the evidence of an exchange could not be kept");
        }
    }

    /// Commit events that belong to no order's step (a protocol being created, a drift seen,
    /// an orphan callback kept).
    pub(super) async fn record_events(&self, events: Vec<Event>, orphans: Vec<crate::storage::Orphan>) -> Result<()> {
        Ok(self
            .commit(Batch {
                events,
                orphans,
                ..Default::default()
            })
            .await?)
    }

    /// Commit a batch and wake live subscribers.
    async fn commit(&self, batch: Batch) -> crate::storage::Result<()> {
        let tally = metrics::Tally::of(&batch.events);
        let started = std::time::Instant::now();
        let result = self.storage().commit(batch).await;
        metrics::commit(started.elapsed(), &result);
        let last = result?;
        tally.record();
        self.inner.last_seq.send_if_modified(|seen| {
            let newer = last > *seen;
            *seen = (*seen).max(last);
            newer
        });
        Ok(())
    }

    /// This process's turn on a protocol.
    async fn protocol_turn(&self, trans_no: &str) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = {
            let mut turns = self.inner.turns.lock().unwrap_or_else(|p| p.into_inner());
            if turns.len() > TURNS_KEPT {
                // Forget protocols nobody is waiting on.
                turns.retain(|_, l| Arc::strong_count(l) > 1);
            }
            turns.entry(trans_no.to_owned()).or_default().clone()
        };
        lock.lock_owned().await
    }

    pub(super) async fn stored_order(&self, out_req_no: &str) -> Result<Versioned<Order>> {
        self.storage()
            .order(out_req_no)
            .await?
            .ok_or_else(|| Error::UnknownOrder {
                out_req_no: out_req_no.to_owned(),
            })
    }

    async fn stored_protocol(&self, trans_no: &str) -> Result<Versioned<Protocol>> {
        self.storage()
            .protocol(trans_no)
            .await?
            .ok_or_else(|| Error::UnknownProtocol {
                trans_no: trans_no.to_owned(),
            })
    }

    /// In debug builds, check the protocol's ledger against its orders after every change:
    /// a broken invariant is a bug, and stops the test that found it.
    async fn debug_check_ledger(&self, trans_no: &str) {
        if !cfg!(debug_assertions) {
            return;
        }
        if let Ok(Some((protocol, orders))) = self.books(trans_no).await {
            let checked = ledger::check(&protocol.ledger, orders.iter());
            debug_assert!(checked.is_ok(), "ledger invariant broken for {trans_no}: {checked:?}");
        }
    }
}

/// Whether a step takes a payout a person decided `FAILURE` (its funds released) to
/// `SUCCESS`: the payment system paid it after all (`apply`, rule 7).
fn overrules_released_payout(before: &Order, next: &Order) -> bool {
    before.attempts.decided_by_person
        && before.outbound().is_some()
        && before.status == Status::Failure
        && next.status == Status::Success
}

/// Run `attempt` until it does not lose a race ([`StepError::Raced`]: someone else committed
/// first, so it re-reads and decides again), at most `CONFLICT_RETRIES` times; then `Busy`,
/// naming `what`. The one retry loop of every read-decide-commit in the engine, and the one
/// place a lost race turns into a host's answer.
async fn retry_on_conflict<T, Attempt>(what: impl FnOnce() -> String, mut attempt: impl FnMut() -> Attempt) -> Result<T>
where
    Attempt: std::future::Future<Output = Result<T, StepError>>,
{
    for _ in 0..CONFLICT_RETRIES {
        match attempt().await {
            Err(StepError::Raced) => continue,
            Err(StepError::Failed(e)) => return Err(e),
            Ok(done) => return Ok(done),
        }
    }
    Err(Error::Busy { what: what() })
}
