//! Commands on orders: take a payment in, pay out or refund, close a POS code, record a
//! person's decision. Commands that create orders are idempotent by `outReqNo`; their host
//! contract is on [`Engine::prepay`].

use super::Engine;
use super::inputs::{Decision, NewInbound, NewOutbound};
use super::transact::{Bookkeeping, Intent, Step, StepError};
use crate::domain::{Order, OrderKind};
use crate::event::EventKind;
use crate::observation::{News, Source};
use crate::storage::Versioned;
use crate::wire::validate::{self, limits};
use crate::wire::{CallbackKind, CashierType, ChannelType, Outpay, PosClose, Prepay};
use crate::{Error, Result};

impl Engine {
    /// Start an inbound payment: POS (the order gets a six-digit `posCode`) or quick pay (a
    /// `cashierUrl`), by the protocol's cashier type.
    ///
    /// **The host contract** (the same for [`Engine::outpay`]):
    /// - `Ok(order)`: the request is durably recorded and will be carried out; read
    ///   `order.status` for where it stands (`Requested`/`Reserved`: recorded, not yet sent
    ///   — the poller sends it; `Submitted`: sent, outcome not yet known; then the payment
    ///   system's statuses). Storage or network trouble *after* the request was recorded is
    ///   not an error: the engine carries on from what is stored.
    /// - [`Error::OutcomeUnknown`] (carries the `outReqNo`): the store failed in a way that
    ///   leaves open whether the request was recorded. Repeat the same command with the same
    ///   `outReqNo` to find out — never a new one.
    /// - any other `Err`: nothing was recorded and no money will ever move for this request.
    ///   Pass your own `outReqNo` if you want to retry safely across crashes of your own.
    /// - Idempotent by `outReqNo`: the same parameters return the existing order; others are
    ///   [`Error::IdempotencyMismatch`], naming the fields that differ. Only what you pass is
    ///   compared (not the engine's own settings, such as notify URLs, which may change with a
    ///   deploy). A lost race between writers never reaches you: it is re-read and retried.
    #[tracing::instrument(skip_all, fields(trans_no = %cmd.trans_no))]
    pub async fn prepay(&self, cmd: NewInbound) -> Result<Order> {
        let _working = self.working()?;
        let protocol = self.protocol(&cmd.trans_no).await?;
        validate::positive("amount", cmd.amount)?;
        if protocol.cashier_type == CashierType::Pos && cmd.prod_catalog.is_none() {
            return Err(Error::InvalidField {
                field: "prodCatalog",
                reason: "is required for POS",
            });
        }
        if cmd.prod_catalog.as_ref().is_some_and(|c| !c.is_known()) {
            return Err(Error::InvalidField {
                field: "prodCatalog",
                reason: "must be 01 or 02",
            });
        }
        validate::optional_text(
            "contractNum",
            cmd.contract_num.as_deref(),
            limits::CONTRACT_NUM_MAX_CHARS,
        )?;
        validate::optional_text(
            "qpUserName",
            cmd.payer_name.as_ref().map(|s| s.expose()),
            limits::PERSON_NAME_MAX_CHARS,
        )?;
        validate::optional_text(
            "qpCertNumber",
            cmd.payer_cert_number.as_ref().map(|s| s.expose()),
            limits::CERT_NUMBER_MAX_CHARS,
        )?;
        validate::optional_text("returnUrl", cmd.return_url.as_deref(), limits::URL_MAX_CHARS)?;
        let out_req_no = self.out_req_no(cmd.out_req_no)?;
        let config = self.config();
        let request = Prepay {
            trans_no: cmd.trans_no,
            out_req_no,
            amount: cmd.amount,
            out_success_notify_url: config.notify_url(CallbackKind::InboundPay),
            out_arrived_notify_url: Some(config.notify_url(CallbackKind::InboundArrival)),
            prod_catalog: cmd.prod_catalog,
            contract_num: cmd.contract_num,
            qp_user_name: cmd.payer_name,
            qp_cert_number: cmd.payer_cert_number,
            return_url: cmd.return_url,
        };
        let order = Order::new_inbound(&config.app_id, request);
        self.record_and_send(order, EventKind::InboundRequested).await
    }

    /// Pay out (`OUT`) or refund (`REFUND`) from a protocol's available balance.
    ///
    /// The funds check and the reservation are committed before anything is sent; if the
    /// amount exceeds what is available, [`Error::InsufficientFunds`] is returned and nothing
    /// is stored or sent. Two payouts racing on one protocol cannot both pass the check.
    /// The host contract is [`Engine::prepay`]'s.
    #[tracing::instrument(skip_all, fields(trans_no = %cmd.trans_no))]
    pub async fn outpay(&self, cmd: NewOutbound) -> Result<Order> {
        let _working = self.working()?;
        self.protocol(&cmd.trans_no).await?;
        validate::positive("amount", cmd.amount)?;
        validate::required("bankAccName", cmd.payee_name.expose())?;
        validate::required("bankAccNum", cmd.payee_account.expose())?;
        validate::required("bankName", &cmd.bank_name)?;
        validate::text("bankAccName", cmd.payee_name.expose(), limits::PERSON_NAME_MAX_CHARS)?;
        validate::text("bankAccNum", cmd.payee_account.expose(), limits::ACCOUNT_MAX_CHARS)?;
        validate::text("bankName", &cmd.bank_name, limits::BANK_NAME_MAX_CHARS)?;
        validate::optional_text("remark", cmd.remark.as_deref(), limits::REMARK_MAX_CHARS)?;
        validate::bank_cnaps(&cmd.bank_cnaps, self.config().cnaps_check)?;
        if !cmd.out_type.is_known() {
            return Err(Error::InvalidField {
                field: "outType",
                reason: "must be OUT or REFUND",
            });
        }
        let out_req_no = self.out_req_no(cmd.out_req_no)?;
        let config = self.config();
        let request = Outpay {
            trans_no: cmd.trans_no,
            out_req_no,
            amount: cmd.amount,
            channel_type: ChannelType::Lft,
            out_notify_url: config.notify_url(CallbackKind::Outbound),
            bank_acc_name: cmd.payee_name,
            bank_acc_num: cmd.payee_account,
            bank_name: cmd.bank_name,
            bank_cnaps: cmd.bank_cnaps,
            out_type: cmd.out_type,
            remark: cmd.remark,
        };
        let order = Order::new_outbound(&config.app_id, request);
        self.record_and_send(order, EventKind::OutboundReserved).await
    }

    fn out_req_no(&self, given: Option<String>) -> Result<String> {
        let out_req_no = given.unwrap_or_else(|| self.generate_out_req_no());
        validate::out_req_no(&self.config().app_id, &out_req_no)?;
        Ok(out_req_no)
    }

    /// Store a new order (with its reservation, for outbound), then send it; or answer for
    /// the order already stored under its `outReqNo`. See [`Engine::prepay`] for the contract.
    async fn record_and_send(&self, order: Order, recorded: EventKind) -> Result<Order> {
        match self.record_intent(&order, recorded).await? {
            Intent::Recorded(stored) => Ok(self.send_accepted(&stored).await),
            Intent::Existing(existing) => self.existing(existing, &order).await,
        }
    }

    /// Send an order whose intent is durable. Whatever happens, the request stands: the
    /// answer is the order as last stored (the poller carries on from there).
    async fn send_accepted(&self, stored: &Versioned<Order>) -> Order {
        match self.send(stored).await {
            Ok(order) => order,
            Err(e) => {
                if !matches!(e, StepError::Raced) {
                    tracing::warn!(out_req_no = stored.value.out_req_no(), error = %e,
                        "recorded but not sent; the poller will send it");
                }
                match self.storage().order(stored.value.out_req_no()).await {
                    Ok(Some(now)) => now.value,
                    _ => stored.value.clone(),
                }
            }
        }
    }

    /// The idempotent answer for an `outReqNo` already stored: the order, if the host asked
    /// for the same thing (and, if it was stored but never sent, it is sent now).
    async fn existing(&self, existing: Versioned<Order>, asked: &Order) -> Result<Order> {
        let fields = differences(&existing.value, asked);
        if !fields.is_empty() {
            return Err(Error::IdempotencyMismatch {
                out_req_no: asked.out_req_no().to_owned(),
                fields,
            });
        }
        if existing.value.awaits_sending() {
            return Ok(self.send_accepted(&existing).await);
        }
        Ok(existing.value)
    }

    /// Close an unpaid POS code. A payer who paid just before the close still wins: a later
    /// `SUCCESS` is applied (and flagged `PaidAfterClose`).
    #[tracing::instrument(skip(self))]
    pub async fn close_pos(&self, out_req_no: &str) -> Result<Order> {
        let _working = self.working()?;
        let order = self.order(out_req_no).await?;
        // Only a POS order has a code to close; a quick-pay one is refused here, before
        // anything is sent (the payment system would refuse it too, and a refusal from it
        // reads as a failure worth retrying).
        if order.inbound().is_some() && self.protocol(order.trans_no()).await?.cashier_type != CashierType::Pos {
            return Err(Error::InvalidState {
                out_req_no: out_req_no.to_owned(),
                action: "close its POS code",
                state: "quick pay (it has no POS code)".to_owned(),
            });
        }
        let closable =
            order.inbound().is_some_and(|i| !i.closed) && order.status.is_remote() && !order.status.is_terminal();
        if !closable {
            return Err(Error::InvalidState {
                out_req_no: out_req_no.to_owned(),
                action: "close its POS code",
                state: order.state_label(),
            });
        }
        let close = PosClose {
            out_req_no: out_req_no.to_owned(),
        };
        let (result, evidence) = self.call_recorded(out_req_no, &close).await;
        let refused = match result {
            Ok(r) if r.result => None,
            Ok(_) => Some(Error::Remote {
                code: "0000".into(),
                msg: "posclose answered result=false".into(),
            }),
            Err(e) => Some(e),
        };
        if let Some(e) = refused {
            self.record_evidence(evidence).await;
            return Err(e);
        }
        let step = Step::news(Source::Reply, News::Closed).with_evidence(evidence);
        self.transact(out_req_no, step).await
    }

    /// Record a person's decision on an order the payment system will not settle: `SUCCESS`
    /// or `FAILURE`, with a note saying who and why. The decision goes through `apply` like
    /// any news, so its ledger move and events are the usual ones, plus `OperatorResolved`.
    ///
    /// Which orders may be resolved — only what a person can know more about than protopay:
    /// - an open order that **needs attention** (flagged: the payment system's word has not
    ///   come after every try), either way;
    /// - a settled order that needs attention — a **suspected double payment**, or a
    ///   person's decision the payment system contradicted — with the status it has: that
    ///   records that a person has looked.
    ///
    /// **When the payment system contradicts a person**, its word on money wins (rule 7 of
    /// [`apply`](crate::apply())): news that a deposit was paid or a payout paid out after a
    /// person decided `FAILURE` is applied, and the ledger shows the money; the order needs
    /// attention with both claims in its history, and a payout whose funds the person had
    /// released pages as a suspected double payment (whoever was told `FAILURE` may pay
    /// again). If those funds have been spent since, the ledger cannot pay out money it no
    /// longer holds: the `FAILURE` stands, flagged and paged, for a person to settle with the
    /// payment system. A person's `SUCCESS` contradicted by `FAILURE` stands (that news
    /// moves no money), flagged the same way.
    ///
    /// Anything else — never sent (`Requested`, `Reserved`), sent and not yet flagged, an
    /// unpaid deposit, a settled order — is refused with [`Error::InvalidState`]: a person
    /// would be booking money that never moved, or deciding what the payment system is
    /// still deciding.
    ///
    /// **The decision is on what the person saw.** [`Decision::seen_version`] names the version they
    /// decided on ([`OrderDetails::version`](crate::OrderDetails::version)); if the order
    /// has moved since — news arrived, a poll ran, another person decided — it is refused
    /// with [`Error::OrderMoved`] and nothing is recorded. With `None` the version read here
    /// stands in, so a decision never lands on a state other than the one it was checked
    /// against: it is never `Ok` with another status than the one asked.
    ///
    /// Resolving a `Submitted` order as `FAILURE` releases its funds while a send of it may
    /// still land (a paused sender, a delayed packet): do it only once the payment system has
    /// confirmed that it refused or never received the order, and no instance that was
    /// running when it was last sent is still running unrestarted (see the README).
    #[tracing::instrument(skip(self, decision), fields(status = %decision.status))]
    pub async fn resolve(&self, out_req_no: &str, decision: Decision) -> Result<Order> {
        let _working = self.working()?;
        let Decision {
            status,
            note,
            by,
            seen_version,
        } = decision;
        validate::required("note", &note)?;
        validate::text("note", &note, limits::NOTE_MAX_CHARS)?;
        if let Some(by) = &by {
            validate::required("by", by)?;
            validate::text("by", by, limits::OPERATOR_NAME_MAX_CHARS)?;
        }
        if !status.is_terminal() {
            return Err(Error::InvalidField {
                field: "status",
                reason: "must be SUCCESS or FAILURE",
            });
        }
        let current = self.stored_order(out_req_no).await?;
        let moved = || Error::OrderMoved {
            out_req_no: out_req_no.to_owned(),
        };
        if seen_version.is_some_and(|seen| seen != current.version) {
            return Err(moved());
        }
        if !current.value.resolvable(status) {
            return Err(Error::InvalidState {
                out_req_no: out_req_no.to_owned(),
                action: "be resolved (only an order that needs attention can be)",
                state: current.value.state_label(),
            });
        }
        let step = Step {
            news: Some(News::Resolved {
                status,
                note: note.clone(),
            }),
            ..Step::record(Source::Operator, Bookkeeping::Resolved { status, note, by })
        };
        match self.transact_at(&current, step).await {
            Ok(resolved) => {
                debug_assert_eq!(resolved.value.status, status, "a resolution records what was asked");
                Ok(resolved.value)
            }
            Err(StepError::Raced) => Err(moved()),
            Err(StepError::Failed(e)) => Err(e),
        }
    }
}

/// The fields of a stored order's request that differ from a new command's, by wire name.
/// Only what the host chose is compared: the engine's own settings (notify URLs, channel)
/// may change with a deploy without making a repeat of the same command a different one.
fn differences(stored: &Order, asked: &Order) -> Vec<&'static str> {
    macro_rules! differing {
        ($a:expr, $b:expr; $($field:ident => $name:literal),+ $(,)?) => {{
            let mut fields = Vec::new();
            $( if $a.$field != $b.$field { fields.push($name); } )+
            fields
        }};
    }
    match (&stored.kind, &asked.kind) {
        (OrderKind::Inbound(a), OrderKind::Inbound(b)) => differing!(a.request, b.request;
            trans_no => "transNo", amount => "amount", prod_catalog => "prodCatalog",
            contract_num => "contractNum", qp_user_name => "qpUserName", qp_cert_number => "qpCertNumber",
            return_url => "returnUrl"),
        (OrderKind::Outbound(a), OrderKind::Outbound(b)) => differing!(a.request, b.request;
            trans_no => "transNo", amount => "amount", out_type => "outType", bank_acc_name => "bankAccName",
            bank_acc_num => "bankAccNum", bank_name => "bankName", bank_cnaps => "bankCnaps", remark => "remark"),
        _ => vec!["kind"],
    }
}
