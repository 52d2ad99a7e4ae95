//! The host's commands and read models.
//!
//! Commands that create orders are idempotent by `outReqNo`: the same parameters return the
//! existing order; different ones are [`Error::IdempotencyMismatch`]. `Ok` means the order is
//! durably recorded — read its `status` for where it stands (`Submitted` = sent, outcome not
//! yet known; the poller and callbacks will bring it).

use super::Engine;
use super::transact::{Bookkeeping, Intent, Step};
use crate::domain::{Order, Protocol, RemoteBalances, Status};
use crate::event::{Anomaly, EventKind};
use crate::ledger::Ledger;
use crate::observation::{News, Source};
use crate::secret::Sensitive;
use crate::storage::Versioned;
use crate::wire::validate::{self, limits};
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
        let _working = self.working()?;
        validate::required("transDesc", &cmd.trans_desc)?;
        validate::required("businessId", &cmd.business_id)?;
        validate::text("transDesc", &cmd.trans_desc, limits::TRANS_DESC)?;
        validate::text("businessId", &cmd.business_id, limits::BUSINESS_ID)?;
        if !cmd.cashier_type.is_known() {
            return Err(Error::InvalidField { field: "cashierType", reason: "must be POS or QP" });
        }
        let attempt = self.generate_out_req_no();
        let requested =
            self.event(None, Source::Engine, EventKind::ProtocolCreateRequested { attempt: attempt.clone() });
        self.record_events(vec![requested], Vec::new()).await?;
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
                // Already recorded (adopted by a concurrent `find`): what is stored stands.
                self.update_protocol(&protocol.trans_no, |stored| {
                    stored.is_none().then(|| (protocol.clone(), vec![created.clone()]))
                })
                .await
            }
            Err(e @ (Error::Remote { .. } | Error::NotFound(_))) => Err(e),
            Err(Error::Transport(t)) if !t.maybe_delivered() => Err(Error::Transport(t)),
            Err(e) => {
                let orphan = Anomaly::PossibleOrphanProtocol { attempt };
                let event = self.event(None, Source::Reply, EventKind::Anomaly(orphan));
                self.record_events(vec![event], Vec::new()).await?;
                Err(e)
            }
        }
    }

    /// Ask the payment system about a protocol and store its balances. A protocol not yet
    /// known here is adopted, its available balance recorded as its opening balance (so it
    /// can pay out what it holds, and reconciles).
    #[tracing::instrument(skip(self))]
    pub async fn find_protocol(&self, trans_no: &str) -> Result<Protocol> {
        let _working = self.working()?;
        self.refresh_protocol(trans_no).await
    }

    async fn refresh_protocol(&self, trans_no: &str) -> Result<Protocol> {
        validate::required("transNo", trans_no)?;
        let view = self.call(&FindProtocol { trans_no: trans_no.to_owned() }).await?;
        if view.trans_no != trans_no {
            return Err(Error::InvalidField { field: "transNo", reason: "reply names another protocol" });
        }
        let balances = self.balances(&view);
        let opening = balances.available;
        let mut adopted = self.event(None, Source::Reply, EventKind::ProtocolAdopted { opening });
        adopted.trans_no = Some(trans_no.to_owned());
        self.update_protocol(trans_no, |stored| {
            Some(match stored {
                Some(p) => (Protocol { remote: Some(balances.clone()), ..p.clone() }, Vec::new()),
                None => {
                    let p = Protocol::from_view(&view, "", "", CashierType::Pos);
                    let ledger = Ledger::opened_with(opening);
                    (Protocol { remote: Some(balances.clone()), ledger, ..p }, vec![adopted.clone()])
                }
            })
        })
        .await
    }

    fn balances(&self, view: &ProtocolView) -> RemoteBalances {
        RemoteBalances {
            available: view.amount.unwrap_or(Amount::ZERO),
            in_transit: view.onpassage_amount.unwrap_or(Amount::ZERO),
            paid_out: view.out_amount.unwrap_or(Amount::ZERO),
            seen_at: self.now(),
        }
    }

    /// Start an inbound payment: POS (the order gets a six-digit `posCode`) or quick pay (a
    /// `cashierUrl`), by the protocol's cashier type.
    ///
    /// **The host contract** (the same for [`Engine::outpay`]):
    /// - `Ok(order)`: the request is durably recorded and will be carried out; read
    ///   `order.status()` for where it stands (`Requested`/`Reserved`: recorded, not yet sent
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
    ///   deploy). [`Error::Conflict`] never reaches you.
    #[tracing::instrument(skip_all, fields(trans_no = %cmd.trans_no))]
    pub async fn prepay(&self, cmd: NewInbound) -> Result<Order> {
        let _working = self.working()?;
        let protocol = self.protocol(&cmd.trans_no).await?;
        validate::positive("amount", cmd.amount)?;
        if protocol.cashier_type == CashierType::Pos && cmd.prod_catalog.is_none() {
            return Err(Error::InvalidField { field: "prodCatalog", reason: "is required for POS" });
        }
        if cmd.prod_catalog.as_ref().is_some_and(|c| !c.is_known()) {
            return Err(Error::InvalidField { field: "prodCatalog", reason: "must be 01 or 02" });
        }
        validate::optional_text("contractNum", cmd.contract_num.as_deref(), limits::CONTRACT_NUM)?;
        validate::optional_text("qpUserName", cmd.payer_name.as_ref().map(|s| s.expose()), limits::PERSON_NAME)?;
        validate::optional_text(
            "qpCertNumber",
            cmd.payer_cert_number.as_ref().map(|s| s.expose()),
            limits::CERT_NUMBER,
        )?;
        validate::optional_text("returnUrl", cmd.return_url.as_deref(), limits::URL)?;
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
    /// The host contract is [`Engine::prepay`]'s.
    #[tracing::instrument(skip_all, fields(trans_no = %cmd.trans_no))]
    pub async fn outpay(&self, cmd: NewOutbound) -> Result<Order> {
        let _working = self.working()?;
        self.protocol(&cmd.trans_no).await?;
        validate::positive("amount", cmd.amount)?;
        validate::required("bankAccName", cmd.payee_name.expose())?;
        validate::required("bankAccNum", cmd.payee_account.expose())?;
        validate::required("bankName", &cmd.bank_name)?;
        validate::text("bankAccName", cmd.payee_name.expose(), limits::PERSON_NAME)?;
        validate::text("bankAccNum", cmd.payee_account.expose(), limits::ACCOUNT)?;
        validate::text("bankName", &cmd.bank_name, limits::BANK_NAME)?;
        validate::optional_text("remark", cmd.remark.as_deref(), limits::REMARK)?;
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

    /// Store a new order (with its reservation, for outbound), then send it; or answer for
    /// the order already stored under its `outReqNo`. See [`Engine::prepay`] for the contract.
    async fn record_and_submit(&self, order: Order, recorded: EventKind) -> Result<Order> {
        match self.record_intent(&order, recorded).await? {
            Intent::Recorded(stored) => Ok(self.send_accepted(&stored).await),
            Intent::Existing(existing) => self.existing(existing, &order).await,
        }
    }

    /// Send an order whose intent is durable. Whatever happens, the request stands: the
    /// answer is the order as last stored (the poller carries on from there).
    async fn send_accepted(&self, stored: &Versioned<Order>) -> Order {
        match self.submit(stored).await {
            Ok(order) => order,
            Err(e) => {
                if !matches!(e, Error::Conflict) {
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
            return Err(Error::IdempotencyMismatch { out_req_no: asked.out_req_no().to_owned(), fields });
        }
        if matches!(existing.value.status(), Status::Requested | Status::Reserved) {
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
        self.transact(out_req_no, Step::news(Source::Reply, News::Closed)).await
    }

    /// Look up CNAPS numbers by a keyword of the branch name.
    #[tracing::instrument(skip(self))]
    pub async fn query_cnaps(&self, keyword: &str) -> Result<Vec<CnapsEntry>> {
        let _working = self.working()?;
        validate::required("bankNameKeyWord", keyword)?;
        validate::text("bankNameKeyWord", keyword, limits::KEYWORD)?;
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
        let _working = self.working()?;
        let protocol = self.refresh_protocol(trans_no).await?;
        let theirs = protocol.remote.clone().ok_or_else(|| Error::UnknownProtocol { trans_no: trans_no.to_owned() })?;
        let ours = protocol.ledger;
        let sum = |xs: &[Amount]| xs.iter().try_fold(Amount::ZERO, |a, b| a.checked_add(*b));
        let figures = [
            ("in_transit", Some(ours.in_transit), Some(theirs.in_transit)),
            ("paid_out", sum(&[ours.paid_out, ours.refunded]), Some(theirs.paid_out)),
            (
                "total",
                sum(&[ours.in_transit, ours.available, ours.paid_out, ours.refunded]),
                sum(&[theirs.available, theirs.in_transit, theirs.paid_out]),
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
            self.record_events(events, Vec::new()).await?;
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
        let _working = self.working()?;
        validate::required("note", note)?;
        validate::text("note", note, limits::NOTE)?;
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
        let step = Step {
            news: Some(News::Resolved { status, note: note.to_owned() }),
            ..Step::record(Source::Operator, Bookkeeping::Resolved { status, note: note.to_owned() })
        };
        self.transact(out_req_no, step).await
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
    match (stored, asked) {
        (Order::Inbound(a), Order::Inbound(b)) => differing!(a.request, b.request;
            trans_no => "transNo", amount => "amount", prod_catalog => "prodCatalog",
            contract_num => "contractNum", qp_user_name => "qpUserName", qp_cert_number => "qpCertNumber",
            return_url => "returnUrl"),
        (Order::Outbound(a), Order::Outbound(b)) => differing!(a.request, b.request;
            trans_no => "transNo", amount => "amount", out_type => "outType", bank_acc_name => "bankAccName",
            bank_acc_num => "bankAccNum", bank_name => "bankName", bank_cnaps => "bankCnaps", remark => "remark"),
        _ => vec!["kind"],
    }
}
