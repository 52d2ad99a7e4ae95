//! What the engine keeps: protocols, inbound and outbound orders, and their states.

use crate::wire::{
    Amount, CashierType, ChannelType, InboundView, OutType, OutboundView, Outpay, Prepay, RemoteProtocol, ReportedTime,
};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Where an order stands: first our own local phases, then the payment system's status.
///
/// One enum serves both kinds so that one rank and one rule serve both: inbound orders start
/// at `Requested`, outbound at `Reserved` (funds set aside); both pass `Submitted` (the call
/// is, or may be, in flight) before the payment system's `UNPAID → PROCESSING → SUCCESS |
/// FAILURE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Status {
    /// Inbound intent stored, `prepay` not yet sent.
    Requested,
    /// Outbound intent stored and its funds reserved, `outpay` not yet sent.
    Reserved,
    /// The call is being or has been sent; its outcome is not known.
    Submitted,
    /// `UNPAID` at the payment system.
    Unpaid,
    /// `PROCESSING` at the payment system.
    Processing,
    /// `SUCCESS`: terminal.
    Success,
    /// `FAILURE`, or refused outright: terminal.
    Failure,
}

impl Status {
    /// The order of progress. Equal ranks never replace each other.
    pub fn rank(self) -> u8 {
        match self {
            Status::Requested | Status::Reserved => 0,
            Status::Submitted => 1,
            Status::Unpaid => 2,
            Status::Processing => 3,
            Status::Success | Status::Failure => 4,
        }
    }

    /// `SUCCESS` or `FAILURE`.
    pub fn is_terminal(self) -> bool {
        self.rank() == 4
    }

    /// Whether the payment system has acknowledged the order.
    pub fn is_remote(self) -> bool {
        self.rank() >= 2
    }
}

impl Status {
    /// Its one spelling wherever a person or a program reads it — logs, the CLI, the `/v1`
    /// API, event texts: upper case, as the payment system spells its own statuses. (Listing
    /// names are another thing, lower case: `submitted`, `needs_attention`.)
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Requested => "REQUESTED",
            Status::Reserved => "RESERVED",
            Status::Submitted => "SUBMITTED",
            Status::Unpaid => "UNPAID",
            Status::Processing => "PROCESSING",
            Status::Success => "SUCCESS",
            Status::Failure => "FAILURE",
        }
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The payment system's balances for a protocol, as last reported by `find`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteBalances {
    /// `amount`: available.
    pub available: Amount,
    /// `onpassageAmount`: paid in, not yet arrived (our ledger's `in_transit`).
    pub in_transit: Amount,
    /// `outAmount`: paid out.
    pub paid_out: Amount,
    /// When we asked.
    pub seen_at: DateTime<Utc>,
}

/// A protocol (escrow agreement) and its ledger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Protocol {
    /// The payment system's protocol number.
    pub trans_no: String,
    /// Party id.
    pub business_id: String,
    /// Purpose.
    pub trans_desc: String,
    /// Channel.
    pub channel_type: ChannelType,
    /// How payers pay in.
    pub cashier_type: CashierType,
    /// As the payment system reported it.
    pub create_time: Option<ReportedTime>,
    /// The last `find` snapshot.
    pub remote: Option<RemoteBalances>,
    /// Our own books for this protocol.
    pub ledger: Ledger,
}

impl Protocol {
    /// A new protocol from the payment system's view of it.
    pub fn from_view(view: &RemoteProtocol, business_id: &str, trans_desc: &str, cashier_type: CashierType) -> Self {
        Protocol {
            trans_no: view.trans_no.clone(),
            business_id: view.business_id.clone().unwrap_or_else(|| business_id.to_owned()),
            trans_desc: view.trans_desc.clone().unwrap_or_else(|| trans_desc.to_owned()),
            channel_type: view.channel_type.clone().unwrap_or(ChannelType::Lft),
            cashier_type: view.cashier_type.clone().unwrap_or(cashier_type),
            create_time: view.create_time.clone(),
            remote: None,
            ledger: Ledger::default(),
        }
    }
}

/// A refusal: the payment system answered our send with a definite error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    /// The code.
    pub code: String,
    /// Its message.
    pub msg: String,
}

/// How the engine has tried to move an order along: the inputs of the retry rules, kept
/// beside the order so a restarted engine continues where the last one stopped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Attempts {
    /// How many times the call (`prepay`/`outpay`) was sent.
    pub sends: u32,
    /// When it was last sent.
    pub last_sent_at: Option<DateTime<Utc>>,
    /// Polls that brought no news of an outcome since the last change.
    pub quiet_polls: u32,
    /// Raised when the retry budget ran out without an outcome.
    pub needs_attention: bool,
    /// Of the sends, those known never to have left: refused before a byte was written, or
    /// withdrawn by a sender that got to the network past its deadline. Only the others may
    /// have reached the payment system.
    pub unsent: u32,
    /// The payment system reported a second payment for this order
    /// (`Anomaly::SuspectedDoublePayment`). Unlike `needs_attention` it survives the order
    /// settling: it is cleared only by a person's `resolve`.
    pub double_payment_suspected: bool,
    /// A person decided its status (`resolve`). The payment system's later word that money
    /// was paid still reaches the ledger (`apply`, rule 7); it then needs attention, settled
    /// or not, until a person acknowledges it.
    pub decided_by_person: bool,
}

impl Attempts {
    /// Sends that may have reached the payment system.
    pub fn maybe_delivered(&self) -> u32 {
        self.sends.saturating_sub(self.unsent)
    }
}

/// An order: one payment in or out of a protocol, from the intent we store before sending it
/// to the outcome the payment system reports.
///
/// What every order has is here; what only one kind has is in [`kind`](Order::kind). Its
/// serialized form is its stored record (`storage::records`), never its wire messages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    into = "crate::storage::records::OrderRecord",
    from = "crate::storage::records::OrderRecord"
)]
pub struct Order {
    /// Our `appId`, which the payment system's views must repeat.
    pub app_id: String,
    /// Where it stands.
    pub status: Status,
    /// Set when the call (`prepay`/`outpay`) was refused outright.
    pub refusal: Option<Refusal>,
    /// Retry bookkeeping.
    pub attempts: Attempts,
    /// Money in or money out, with what only that kind has.
    pub kind: OrderKind,
}

/// Which way an order moves money.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrderKind {
    /// Money in (入金).
    Inbound(Inbound),
    /// Money out (出金), or a refund.
    Outbound(Outbound),
}

/// What only an inbound order has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inbound {
    /// Exactly what we send (and resend) as `prepay`.
    pub request: Prepay,
    /// Funds arrived (`arrivedStatus 02`).
    pub arrived: bool,
    /// We closed its POS code.
    pub closed: bool,
    /// What the payment system has told us, merged (fields fill in, never change).
    pub remote: InboundView,
}

/// What only an outbound order (a payout or a refund) has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outbound {
    /// Exactly what we send (and resend) as `outpay`.
    pub request: Outpay,
    /// What the payment system has told us, merged.
    pub remote: OutboundView,
}

impl Order {
    fn new(app_id: &str, status: Status, kind: OrderKind) -> Self {
        Order {
            app_id: app_id.to_owned(),
            status,
            refusal: None,
            attempts: Attempts::default(),
            kind,
        }
    }

    /// A new inbound order, `Requested`.
    pub fn new_inbound(app_id: &str, request: Prepay) -> Self {
        let inbound = Inbound {
            request,
            arrived: false,
            closed: false,
            remote: InboundView::default(),
        };
        Order::new(app_id, Status::Requested, OrderKind::Inbound(inbound))
    }

    /// A new outbound order, `Reserved`.
    pub fn new_outbound(app_id: &str, request: Outpay) -> Self {
        let outbound = Outbound {
            request,
            remote: OutboundView::default(),
        };
        Order::new(app_id, Status::Reserved, OrderKind::Outbound(outbound))
    }

    /// `outReqNo`.
    pub fn out_req_no(&self) -> &str {
        match &self.kind {
            OrderKind::Inbound(i) => &i.request.out_req_no,
            OrderKind::Outbound(o) => &o.request.out_req_no,
        }
    }

    /// `transNo` of its protocol.
    pub fn trans_no(&self) -> &str {
        match &self.kind {
            OrderKind::Inbound(i) => &i.request.trans_no,
            OrderKind::Outbound(o) => &o.request.trans_no,
        }
    }

    /// Its amount.
    pub fn amount(&self) -> Amount {
        match &self.kind {
            OrderKind::Inbound(i) => i.request.amount,
            OrderKind::Outbound(o) => o.request.amount,
        }
    }

    /// The inbound part, if it is inbound.
    pub fn inbound(&self) -> Option<&Inbound> {
        match &self.kind {
            OrderKind::Inbound(i) => Some(i),
            OrderKind::Outbound(_) => None,
        }
    }

    /// The outbound part, if it is outbound.
    pub fn outbound(&self) -> Option<&Outbound> {
        match &self.kind {
            OrderKind::Inbound(_) => None,
            OrderKind::Outbound(o) => Some(o),
        }
    }

    /// The payment system's order number, once it has told us.
    pub fn pay_order_no(&self) -> Option<&str> {
        match &self.kind {
            OrderKind::Inbound(i) => i.remote.pay_order_no.as_deref(),
            OrderKind::Outbound(o) => o.remote.pay_order_no.as_deref(),
        }
    }

    /// POS only: the six-digit code the payer types at the terminal.
    pub fn pos_code(&self) -> Option<&str> {
        self.inbound().and_then(|i| i.remote.pos_code.as_deref())
    }

    /// Quick pay only: the cashier page the payer opens.
    pub fn cashier_url(&self) -> Option<&str> {
        self.inbound().and_then(|i| i.remote.cashier_url.as_deref())
    }

    /// Whether the engine still has something to learn about it: not terminal, or paid in
    /// and not yet arrived.
    pub fn is_open(&self) -> bool {
        let unarrived = self.inbound().is_some_and(|i| !i.arrived);
        !self.status.is_terminal() || (self.status == Status::Success && unarrived)
    }

    /// Whether nothing of ours can be at the payment system: never sent, or every send it had
    /// provably never left. Such an order is sent (again) without asking first.
    pub fn awaits_sending(&self) -> bool {
        match self.status {
            Status::Requested | Status::Reserved => true,
            Status::Submitted => self.attempts.maybe_delivered() == 0,
            _ => false,
        }
    }

    /// Whether money is in motion with its outcome unknown: sent and not acknowledged, or
    /// acknowledged and not settled (an inbound payment not yet made by its payer is not:
    /// nobody has paid).
    pub fn awaits_outcome(&self) -> bool {
        match self.status {
            Status::Submitted | Status::Processing => true,
            Status::Unpaid => self.outbound().is_some(),
            _ => false,
        }
    }

    /// `OUT` or `REFUND` for outbound orders.
    pub fn out_type(&self) -> Option<&OutType> {
        self.outbound().map(|o| &o.request.out_type)
    }

    /// Whether a person may decide it as `status` ([`Engine::resolve`](crate::Engine::resolve)):
    /// an open order that needs attention, either way; or a settled one that does (suspected
    /// paid twice, or a person's decision the payment system contradicted), acknowledged with
    /// the status it has.
    pub fn resolvable(&self, status: Status) -> bool {
        let a = &self.attempts;
        let open_flagged = a.needs_attention && !self.status.is_terminal();
        let settled_flagged = a.double_payment_suspected || (a.needs_attention && self.status.is_terminal());
        open_flagged || (settled_flagged && self.status == status)
    }

    /// A short label of its state, as in the transition table: `SUCCESS+arrived`, `UNPAID+closed`.
    pub fn state_label(&self) -> String {
        let mut label = self.status.to_string();
        if let Some(i) = self.inbound() {
            if i.arrived {
                label.push_str("+arrived");
            }
            if i.closed {
                label.push_str("+closed");
            }
        }
        label
    }
}

/// A list an order is found in by status: one per [`Status`], and `NeedsAttention` for an
/// open order whose outcome needs a person (an operator's first question). Stores keep an
/// index per listing, so a list is read page by page, never by a scan of all orders.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Listing {
    /// Orders in this status (flagged or not).
    Status(Status),
    /// Open orders flagged for a person (`Attempts::needs_attention`).
    NeedsAttention,
}

impl Listing {
    /// Every listing, in the order people scan them.
    pub const ALL: [Listing; 8] = [
        Listing::NeedsAttention,
        Listing::Status(Status::Requested),
        Listing::Status(Status::Reserved),
        Listing::Status(Status::Submitted),
        Listing::Status(Status::Unpaid),
        Listing::Status(Status::Processing),
        Listing::Status(Status::Success),
        Listing::Status(Status::Failure),
    ];

    /// Its stable name: in store indexes, URLs and command lines (`needs_attention`,
    /// `submitted`, `success`, …). Renaming one is a format change.
    pub fn name(self) -> &'static str {
        match self {
            Listing::NeedsAttention => "needs_attention",
            Listing::Status(Status::Requested) => "requested",
            Listing::Status(Status::Reserved) => "reserved",
            Listing::Status(Status::Submitted) => "submitted",
            Listing::Status(Status::Unpaid) => "unpaid",
            Listing::Status(Status::Processing) => "processing",
            Listing::Status(Status::Success) => "success",
            Listing::Status(Status::Failure) => "failure",
        }
    }

    /// The listing of a name; `-` and `_` are the same, case is ignored
    /// (`needs-attention`, `SUCCESS`).
    pub fn from_name(name: &str) -> Option<Listing> {
        let name = name.trim().to_ascii_lowercase().replace('-', "_");
        Listing::ALL.into_iter().find(|l| l.name() == name)
    }
}

impl Order {
    /// The listings it is in: its status, and `NeedsAttention` while it is open and flagged,
    /// or (open or not) while a second payment for it is suspected.
    pub fn listings(&self) -> impl Iterator<Item = Listing> + use<> {
        let a = &self.attempts;
        // A settled order needs a person only when the payment system paid twice, or
        // contradicted a person's decision.
        let flagged = (a.needs_attention && (self.is_open() || a.decided_by_person)) || a.double_payment_suspected;
        std::iter::once(Listing::Status(self.status)).chain(flagged.then_some(Listing::NeedsAttention))
    }
}

// A protocol's books (slots, moves, the ledger) live with their rules, in `ledger`.
pub use crate::ledger::{Ledger, Move, Slot};
