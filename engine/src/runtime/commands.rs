//! The host's commands and read models.
//!
//! Commands that create orders are idempotent by `outReqNo`: the same parameters return the
//! existing order; different ones are [`Error::IdempotencyMismatch`]. `Ok` means the order is
//! durably recorded — read its `status` for where it stands (`Submitted` = sent, outcome not
//! yet known; the poller and callbacks will bring it).

use super::{CONFLICT_RETRIES, Engine};
use crate::domain::{Order, Protocol, RemoteBalances, Status};
use crate::event::{Anomaly, EventKind};
use crate::ledger::{self, Ledger};
use crate::observation::{News, Source};
use crate::secret::Sensitive;
use crate::storage::{Batch, Put, Versioned};
use crate::wire::validate;
use crate::wire::{
    Amount, CallbackKind, CashierType, ChannelType, CnapsEntry, CreateProtocol, FindProtocol, OutType, Outpay,
    PosClose, Prepay, ProdCatalog, ProtocolView, QueryBankCnaps,
};
use crate::{Error, Result};

/// Open a protocol (escrow agreement).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewProtocol {
    /// Purpose of the deal.
    pub trans_desc: String,
    /// Party id assigned by the payment system.
    pub business_id: String,
    /// How payers pay in (default `POS`).
    pub cashier_type: CashierType,
}

/// Take an inbound payment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewInbound {
    /// The protocol to pay into.
    pub trans_no: String,
    /// Our request number; `None` generates one.
    pub out_req_no: Option<String>,
    /// How much.
    pub amount: Amount,
    /// POS: which cards (required for POS protocols).
    pub prod_catalog: Option<ProdCatalog>,
    /// Contract number.
    pub contract_num: Option<String>,
    /// Quick pay: the payer's name.
    pub payer_name: Option<Sensitive>,
    /// Quick pay: the payer's ID number.
    pub payer_cert_number: Option<Sensitive>,
    /// Quick pay: where the cashier page returns.
    pub return_url: Option<String>,
}

impl NewInbound {
    /// A POS deposit of `amount` into `trans_no`, debit cards only.
    pub fn pos(trans_no: &str, amount: Amount) -> Self {
        NewInbound {
            trans_no: trans_no.to_owned(),
            out_req_no: None,
            amount,
            prod_catalog: Some(ProdCatalog::DebitOnly),
            contract_num: None,
            payer_name: None,
            payer_cert_number: None,
            return_url: None,
        }
    }
}

/// Pay out or refund.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewOutbound {
    /// The protocol to pay from.
    pub trans_no: String,
    /// Our request number; `None` generates one.
    pub out_req_no: Option<String>,
    /// How much.
    pub amount: Amount,
    /// `OUT` or `REFUND`.
    pub out_type: OutType,
    /// Payee name.
    pub payee_name: Sensitive,
    /// Payee account number.
    pub payee_account: Sensitive,
    /// Payee bank or branch.
    pub bank_name: String,
    /// The branch's CNAPS number.
    pub bank_cnaps: String,
    /// Free text.
    pub remark: Option<String>,
}

/// Our ledger next to the payment system's balances. Reported, never acted on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reconciliation {
    /// The protocol.
    pub trans_no: String,
    /// Our books.
    pub ours: Ledger,
    /// Theirs, just fetched.
    pub theirs: RemoteBalances,
    /// Every figure that disagrees (empty when all agree).
    pub drift: Vec<Anomaly>,
}

impl Engine {
    /// Open a protocol. The attempt is recorded before the call; if the reply is lost, a
    /// `PossibleOrphanProtocol` anomaly says so (an empty protocol may exist remotely; it holds
    /// no money, and [`Engine::find_protocol`] adopts it if its `transNo` turns up).
    #[tracing::instrument(skip_all, fields(business_id = %cmd.business_id))]
    pub async fn create_protocol(&self, cmd: NewProtocol) -> Result<Protocol> {
        validate::required("transDesc", &cmd.trans_desc)?;
        validate::required("businessId", &cmd.business_id)?;
        if !cmd.cashier_type.is_known() {
            return Err(Error::InvalidField { field: "cashierType", reason: "must be POS or QP" });
        }
        let attempt = self.generate_out_req_no();
        let requested =
            self.event(None, Source::Engine, EventKind::ProtocolCreateRequested { attempt: attempt.clone() });
        self.commit(Batch { events: vec![requested], ..Default::default() }).await?;
        let request = CreateProtocol {
            channel_type: ChannelType::Lft,
            trans_desc: cmd.trans_desc.clone(),
            business_id: cmd.business_id.clone(),
            cashier_type: Some(cmd.cashier_type.clone()),
        };
        match self.call(&request).await {
            Ok(view) => {
                let protocol = Protocol::from_view(&view, &cmd.business_id, &cmd.trans_desc, cmd.cashier_type);
                let mut created = self.event(None, Source::Reply, EventKind::ProtocolCreated { attempt });
                created.trans_no = Some(protocol.trans_no.clone());
                let batch = Batch {
                    protocols: vec![Put { expected: None, value: protocol.clone() }],
                    events: vec![created],
                    ..Default::default()
                };
                match self.commit(batch).await {
                    Ok(()) => Ok(protocol),
                    // Already recorded (adopted by a concurrent `find`): return what is stored.
                    Err(Error::Conflict) => self.protocol(&protocol.trans_no).await,
                    Err(e) => Err(e),
                }
            }
            Err(e @ (Error::Remote { .. } | Error::NotFound(_))) => Err(e),
            Err(Error::Transport(t)) if !t.maybe_delivered() => Err(Error::Transport(t)),
            Err(e) => {
                let orphan = Anomaly::PossibleOrphanProtocol { attempt };
                let event = self.event(None, Source::Reply, EventKind::Anomaly(orphan));
                self.commit(Batch { events: vec![event], ..Default::default() }).await?;
                Err(e)
            }
        }
    }

    /// Ask the payment system about a protocol and store its balances. A protocol not yet
    /// known here is adopted.
    #[tracing::instrument(skip(self))]
    pub async fn find_protocol(&self, trans_no: &str) -> Result<Protocol> {
        validate::required("transNo", trans_no)?;
        let view = self.call(&FindProtocol { trans_no: trans_no.to_owned() }).await?;
        if view.trans_no != trans_no {
            return Err(Error::InvalidField { field: "transNo", reason: "reply names another protocol" });
        }
        let balances = self.balances(&view);
        for _ in 0..CONFLICT_RETRIES {
            let (batch, protocol) = match self.storage().protocol(trans_no).await? {
                Some(current) => {
                    let mut p = current.value;
                    p.remote = Some(balances.clone());
                    (
                        Batch {
                            protocols: vec![Put { expected: Some(current.version), value: p.clone() }],
                            ..Default::default()
                        },
                        p,
                    )
                }
                None => {
                    let mut p = Protocol::from_view(&view, "", "", CashierType::Pos);
                    p.remote = Some(balances.clone());
                    let mut adopted = self.event(None, Source::Reply, EventKind::ProtocolAdopted);
                    adopted.trans_no = Some(trans_no.to_owned());
                    let put = Put { expected: None, value: p.clone() };
                    (Batch { protocols: vec![put], events: vec![adopted], ..Default::default() }, p)
                }
            };
            match self.commit(batch).await {
                Ok(()) => return Ok(protocol),
                Err(Error::Conflict) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(Error::Conflict)
    }

    fn balances(&self, view: &ProtocolView) -> RemoteBalances {
        RemoteBalances {
            available: view.amount.unwrap_or(Amount::ZERO),
            on_passage: view.onpassage_amount.unwrap_or(Amount::ZERO),
            paid_out: view.out_amount.unwrap_or(Amount::ZERO),
            seen_at: self.now(),
        }
    }

    /// Start an inbound payment: POS (the order gets a six-digit `posCode`) or quick pay (a
    /// `cashierUrl`), by the protocol's cashier type.
    #[tracing::instrument(skip_all, fields(trans_no = %cmd.trans_no))]
    pub async fn prepay(&self, cmd: NewInbound) -> Result<Order> {
        let protocol = self.protocol(&cmd.trans_no).await?;
        validate::positive("amount", cmd.amount)?;
        if protocol.cashier_type == CashierType::Pos && cmd.prod_catalog.is_none() {
            return Err(Error::InvalidField { field: "prodCatalog", reason: "is required for POS" });
        }
        if cmd.prod_catalog.as_ref().is_some_and(|c| !c.is_known()) {
            return Err(Error::InvalidField { field: "prodCatalog", reason: "must be 01 or 02" });
        }
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
        self.record_and_submit(order, EventKind::InboundRequested).await
    }

    /// Pay out (`OUT`) or refund (`REFUND`) from a protocol's available balance.
    ///
    /// The funds check and the reservation are committed before anything is sent; if the
    /// amount exceeds what is available, [`Error::InsufficientFunds`] is returned and nothing
    /// is stored or sent. Two payouts racing on one protocol cannot both pass the check.
    #[tracing::instrument(skip_all, fields(trans_no = %cmd.trans_no))]
    pub async fn outpay(&self, cmd: NewOutbound) -> Result<Order> {
        self.protocol(&cmd.trans_no).await?;
        validate::positive("amount", cmd.amount)?;
        validate::required("bankAccName", cmd.payee_name.expose())?;
        validate::required("bankAccNum", cmd.payee_account.expose())?;
        validate::required("bankName", &cmd.bank_name)?;
        validate::bank_cnaps(&cmd.bank_cnaps, self.config().cnaps_check)?;
        if !cmd.out_type.is_known() {
            return Err(Error::InvalidField { field: "outType", reason: "must be OUT or REFUND" });
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
        self.record_and_submit(order, EventKind::OutboundReserved).await
    }

    fn out_req_no(&self, given: Option<String>) -> Result<String> {
        let out_req_no = given.unwrap_or_else(|| self.generate_out_req_no());
        validate::out_req_no(&self.config().app_id, &out_req_no)?;
        Ok(out_req_no)
    }

    /// Store a new order (with its reservation, for outbound), then send it. Idempotent by
    /// `outReqNo`.
    async fn record_and_submit(&self, order: Order, recorded: EventKind) -> Result<Order> {
        let turn = self.protocol_turn(order.trans_no()).await;
        for _ in 0..CONFLICT_RETRIES {
            if let Some(existing) = self.storage().order(order.out_req_no()).await? {
                drop(turn);
                return self.existing(existing, &order).await;
            }
            let mut batch = Batch::default();
            if let Some(m) = ledger::movement(None, &order) {
                let protocol = self
                    .storage()
                    .protocol(order.trans_no())
                    .await?
                    .ok_or_else(|| Error::UnknownProtocol { trans_no: order.trans_no().to_owned() })?;
                let mut updated = protocol.value;
                if order.amount() > updated.ledger.available {
                    return Err(Error::InsufficientFunds {
                        requested: order.amount(),
                        available: updated.ledger.available,
                    });
                }
                updated.ledger.apply(&m)?;
                batch.protocols.push(Put { expected: Some(protocol.version), value: updated });
            }
            batch.events.push(self.event(Some(&order), Source::Engine, recorded.clone()));
            let key = order.out_req_no().to_owned();
            batch.schedule.push((key.clone(), super::next_poll(&order, self.now(), &self.config().poll)));
            batch.orders.push(Put { expected: None, value: order.clone() });
            match self.commit(batch).await {
                Ok(()) => {
                    self.debug_check_ledger(order.trans_no()).await;
                    drop(turn);
                    return match self.submit(&Versioned { version: 1, value: order }).await {
                        // Someone else (the poller) is already sending it.
                        Err(Error::Conflict) => self.order(&key).await,
                        other => other,
                    };
                }
                Err(Error::Conflict) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(Error::Conflict)
    }

    /// The idempotent answer for an `outReqNo` already stored.
    async fn existing(&self, existing: Versioned<Order>, asked: &Order) -> Result<Order> {
        let same = match (&existing.value, asked) {
            (Order::Inbound(a), Order::Inbound(b)) => a.request == b.request,
            (Order::Outbound(a), Order::Outbound(b)) => a.request == b.request,
            _ => false,
        };
        if !same {
            return Err(Error::IdempotencyMismatch { out_req_no: asked.out_req_no().to_owned() });
        }
        // Stored but never sent (a crash between the two): send it now.
        if matches!(existing.value.status(), Status::Requested | Status::Reserved) {
            match self.submit(&existing).await {
                Err(Error::Conflict) => {}
                other => return other,
            }
        }
        self.order(asked.out_req_no()).await
    }

    /// Close an unpaid POS code. A payer who paid just before the close still wins: a later
    /// `SUCCESS` is applied (and flagged `PaidAfterClose`).
    #[tracing::instrument(skip(self))]
    pub async fn close_pos(&self, out_req_no: &str) -> Result<Order> {
        let order = self.order(out_req_no).await?;
        let closable =
            matches!(&order, Order::Inbound(o) if !o.status.is_terminal() && o.status.is_remote() && !o.closed);
        if !closable {
            return Err(Error::InvalidState {
                out_req_no: out_req_no.to_owned(),
                action: "close its POS code",
                state: order.state_label(),
            });
        }
        let result = self.call(&PosClose { out_req_no: out_req_no.to_owned() }).await?;
        if !result.result {
            return Err(Error::Remote { code: "0000".into(), msg: "posclose answered result=false".into() });
        }
        self.observe(out_req_no, Source::Reply, News::Closed).await
    }

    /// Look up CNAPS numbers by a keyword of the branch name.
    #[tracing::instrument(skip(self))]
    pub async fn query_cnaps(&self, keyword: &str) -> Result<Vec<CnapsEntry>> {
        validate::required("bankNameKeyWord", keyword)?;
        self.call(&QueryBankCnaps { bank_name_key_word: keyword.to_owned() }).await
    }

    /// Compare our ledger with the payment system's balances and report drift (also as
    /// `BalanceDrift` events). Never moves money.
    ///
    /// Compared: their `onpassageAmount` with our `in_transit`; their `outAmount` with our
    /// `paid_out + refunded`; their total (`amount + onpassageAmount + outAmount`) with ours
    /// less what is reserved for payouts still in flight (which they may hold apart).
    #[tracing::instrument(skip(self))]
    pub async fn reconcile(&self, trans_no: &str) -> Result<Reconciliation> {
        let protocol = self.find_protocol(trans_no).await?;
        let theirs = protocol.remote.clone().ok_or_else(|| Error::UnknownProtocol { trans_no: trans_no.to_owned() })?;
        let ours = protocol.ledger;
        let sum = |xs: &[Amount]| xs.iter().try_fold(Amount::ZERO, |a, b| a.checked_add(*b));
        let figures = [
            ("on_passage", Some(ours.in_transit), Some(theirs.on_passage)),
            ("paid_out", sum(&[ours.paid_out, ours.refunded]), Some(theirs.paid_out)),
            (
                "total",
                sum(&[ours.in_transit, ours.available, ours.paid_out, ours.refunded]),
                sum(&[theirs.available, theirs.on_passage, theirs.paid_out]),
            ),
        ];
        let drift: Vec<Anomaly> = figures
            .into_iter()
            .filter_map(|(figure, o, t)| match (o, t) {
                (Some(ours), Some(theirs)) if ours == theirs => None,
                (o, t) => Some(Anomaly::BalanceDrift {
                    figure: figure.to_owned(),
                    ours: o.unwrap_or(Amount::ZERO),
                    theirs: t.unwrap_or(Amount::ZERO),
                }),
            })
            .collect();
        if !drift.is_empty() {
            let events = drift
                .iter()
                .map(|a| {
                    let mut e = self.event(None, Source::Poll, EventKind::Anomaly(a.clone()));
                    e.trans_no = Some(trans_no.to_owned());
                    e
                })
                .collect();
            self.commit(Batch { events, ..Default::default() }).await?;
        }
        Ok(Reconciliation { trans_no: trans_no.to_owned(), ours, theirs, drift })
    }

    /// Record a person's decision on an order the payment system will not settle (typically
    /// one that needs attention): `SUCCESS` or `FAILURE`, with a note saying who and why. The
    /// decision goes through `apply` like any news, so its ledger move and events are the
    /// usual ones, plus `OperatorResolved`. A settled order cannot be resolved; later news
    /// from the payment system that contradicts the decision raises `ConflictingStatus`.
    #[tracing::instrument(skip(self, note))]
    pub async fn resolve(&self, out_req_no: &str, status: Status, note: &str) -> Result<Order> {
        validate::required("note", note)?;
        if !status.is_terminal() {
            return Err(Error::InvalidField { field: "status", reason: "must be SUCCESS or FAILURE" });
        }
        let order = self.order(out_req_no).await?;
        if order.status().is_terminal() {
            return Err(Error::InvalidState {
                out_req_no: out_req_no.to_owned(),
                action: "be resolved",
                state: order.state_label(),
            });
        }
        let news = News::Resolved { status, note: note.to_owned() };
        let decided = EventKind::OperatorResolved { status, note: note.to_owned() };
        self.step_with_retries(out_req_no, Source::Operator, Some(news), |next, kinds| {
            // Only a decision that took effect is recorded as one.
            if next.status() == status {
                kinds.push(decided.clone());
            }
        })
        .await
    }

    /// A protocol with its ledger.
    pub async fn protocol(&self, trans_no: &str) -> Result<Protocol> {
        self.storage()
            .protocol(trans_no)
            .await?
            .map(|p| p.value)
            .ok_or_else(|| Error::UnknownProtocol { trans_no: trans_no.to_owned() })
    }

    /// An order.
    pub async fn order(&self, out_req_no: &str) -> Result<Order> {
        self.stored_order(out_req_no).await.map(|o| o.value)
    }

    /// Every order of a protocol.
    pub async fn orders_of(&self, trans_no: &str) -> Result<Vec<Order>> {
        Ok(self.storage().orders_of(trans_no).await?.into_iter().map(|o| o.value).collect())
    }
}
