//! The one pure transition function. Callbacks, polls and replies have no rules of their own:
//! each becomes an [`Observation`] and goes through [`apply`].
//!
//! The rules, each a property test in `tests/apply_rules.rs`:
//! 1. monotonic — news of lower or equal rank changes nothing;
//! 2. terminal is absorbing — a conflicting terminal raises `ConflictingStatus`;
//! 3. arrival implies payment — `02` on an unpaid order applies `SUCCESS` and arrival;
//! 4. identity is checked — news about another protocol, amount, app or payment order is
//!    not applied;
//! 5. order-independent — any permutation of one true history, with duplicates, ends the same;
//! 6. money-positive news wins — `SUCCESS` after a POS close is applied (`PaidAfterClose`);
//! 7. the payment system's word on money outranks a person's — `SUCCESS` (or arrival) after
//!    a person decided `FAILURE` is applied, with `ConflictingStatus` naming both claims: the
//!    money moved, so the ledger must show it. (A person's `SUCCESS` contradicted by
//!    `FAILURE` stays, as rule 2 says: that news moves no money; the order is flagged.)

use crate::domain::{Inbound, Order, OrderKind, Outbound, Status};
use crate::event::{Anomaly, EventKind};
use crate::ledger::{Move, movement};
use crate::observation::{News, Observation};
use crate::wire::{Amount, ArrivedStatus, InboundView, OutboundView, PayStatus, ReportedTime};

/// What an observation does to an order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The order after the observation (equal to the input when nothing changed).
    pub order: Order,
    /// The ledger movement the change implies, if any.
    pub movement: Option<Move>,
    /// Events to publish, anomalies included, in order.
    pub events: Vec<EventKind>,
}

impl Outcome {
    /// The anomalies among the events.
    pub fn anomalies(&self) -> impl Iterator<Item = &Anomaly> {
        self.events.iter().filter_map(|e| match e {
            EventKind::Anomaly(a) => Some(a),
            _ => None,
        })
    }
}

/// Apply one observation to one order. Pure: no I/O, no clock, no panics.
pub fn apply(order: &Order, observation: &Observation) -> Outcome {
    let mut next = order.clone();
    let mut anomalies = Vec::new();
    let decided = order.attempts.decided_by_person;
    let Order {
        app_id,
        status,
        refusal,
        kind,
        ..
    } = &mut next;
    match (kind, &observation.news) {
        (OrderKind::Inbound(i), News::Inbound(view)) => {
            observe_inbound(app_id, status, decided, i, view, &mut anomalies)
        }
        (OrderKind::Outbound(o), News::Outbound(view)) => {
            observe_outbound(app_id, status, decided, o, view, &mut anomalies)
        }
        (OrderKind::Inbound(_), News::Outbound(_)) | (OrderKind::Outbound(_), News::Inbound(_) | News::Closed) => {
            anomalies.push(Anomaly::WrongOrderKind)
        }
        (_, News::Sending) => {
            if status.rank() == 0 {
                *status = Status::Submitted;
            }
        }
        (_, News::NotFound) => {
            // Before acknowledgement "not found" is expected and the engine's retry rules
            // decide what to do; after it, the payment system lost a record it had.
            if status.is_remote() {
                anomalies.push(Anomaly::RemoteLost);
            }
        }
        (_, News::Refused(refused)) => {
            if status.is_remote() {
                anomalies.push(conflict(order.state_label(), format!("refused {}", refused.code)));
            } else {
                *status = Status::Failure;
                *refusal = Some(refused.clone());
            }
        }
        (OrderKind::Inbound(i), News::Closed) => i.closed = true,
        (_, News::Resolved { status: resolved, .. }) => {
            if !resolved.is_terminal() || status.is_terminal() {
                if status != resolved {
                    anomalies.push(conflict(order.state_label(), format!("resolved {resolved}")));
                }
            } else {
                *status = *resolved;
            }
        }
    }
    let mut events = transition_events(order, &next);
    events.extend(anomalies.into_iter().map(EventKind::Anomaly));
    debug_assert!(
        next.status.rank() >= order.status.rank(),
        "apply moved a status backwards"
    );
    Outcome {
        movement: movement(Some(order), &next),
        order: next,
        events,
    }
}

/// The events implied by a change of state: one function for every source, so that the same
/// change always reads the same in the feed.
fn transition_events(before: &Order, after: &Order) -> Vec<EventKind> {
    let mut events = Vec::new();
    let (b, a) = (before.status, after.status);
    if a != b {
        events.push(match (&after.kind, a) {
            (_, Status::Submitted) => EventKind::Submitted,
            (_, Status::Unpaid | Status::Processing) => EventKind::Pending { status: a },
            (OrderKind::Inbound(_), Status::Success) => EventKind::InboundPaid,
            (OrderKind::Inbound(_), Status::Failure) => EventKind::InboundFailed,
            (OrderKind::Outbound(o), Status::Success) => EventKind::OutboundSucceeded {
                out_type: o.request.out_type.clone(),
            },
            (OrderKind::Outbound(_), Status::Failure) => EventKind::OutboundFailed {
                refusal: after.refusal.clone(),
            },
            // Rank never goes back to an intent state.
            (_, Status::Requested | Status::Reserved) => EventKind::Submitted,
        });
    }
    if let (Some(bi), Some(ai)) = (before.inbound(), after.inbound()) {
        if ai.arrived && !bi.arrived {
            events.push(EventKind::InboundArrived);
        }
        if ai.closed && !bi.closed {
            events.push(EventKind::PosCodeClosed);
        }
        if ai.closed && a == Status::Success && b != Status::Success {
            events.push(EventKind::Anomaly(Anomaly::PaidAfterClose));
        }
    }
    events
}

/// Compare one identifying field; absent news fields are not evidence either way.
fn same(field: &str, ours: Option<&str>, theirs: Option<&str>, anomalies: &mut Vec<Anomaly>) -> bool {
    match (ours, theirs) {
        (Some(o), Some(t)) if o != t => {
            anomalies.push(Anomaly::IdentityMismatch {
                field: field.to_owned(),
            });
            false
        }
        _ => true,
    }
}

struct Identity<'a> {
    out_req_no: Option<&'a str>,
    trans_no: Option<&'a str>,
    app_id: Option<&'a str>,
    amount: Option<Amount>,
    pay_order_no: Option<&'a str>,
}

fn identity_holds(ours: Identity<'_>, theirs: Identity<'_>, anomalies: &mut Vec<Anomaly>) -> bool {
    let amount = |a: Option<Amount>| a.map(|a| a.to_string());
    let (oa, ta) = (amount(ours.amount), amount(theirs.amount));
    // `&` (not `&&`) so that every disagreeing field is reported.
    let holds = same("outReqNo", ours.out_req_no, theirs.out_req_no, anomalies)
        & same("transNo", ours.trans_no, theirs.trans_no, anomalies)
        & same("appId", ours.app_id, theirs.app_id, anomalies)
        & same("amount", oa.as_deref(), ta.as_deref(), anomalies);
    let one_payment = same("payOrderNo", ours.pay_order_no, theirs.pay_order_no, anomalies);
    if let (false, Some(other)) = (one_payment, theirs.pay_order_no) {
        // Another payment order for our `outReqNo`: the payment system acted on a request
        // of ours twice (a delayed or repeated send). Money may have moved twice.
        anomalies.push(Anomaly::SuspectedDoublePayment {
            other_pay_order_no: other.to_owned(),
        });
    }
    holds & one_payment
}

/// The status a view reports, if it reports a known one.
fn reported(field: &str, status: Option<&PayStatus>, anomalies: &mut Vec<Anomaly>) -> Result<Option<Status>, ()> {
    match status {
        None => Ok(None),
        Some(PayStatus::Unpaid) => Ok(Some(Status::Unpaid)),
        Some(PayStatus::Processing) => Ok(Some(Status::Processing)),
        Some(PayStatus::Success) => Ok(Some(Status::Success)),
        Some(PayStatus::Failure) => Ok(Some(Status::Failure)),
        Some(PayStatus::Unknown(v)) => {
            anomalies.push(Anomaly::UnknownEnumValue {
                field: field.to_owned(),
                value: v.clone(),
            });
            Err(())
        }
    }
}

/// Rules 1, 2 and 7: the status after news of `observed`, or `None` for a conflicting
/// terminal. `decided`: a person set the current status.
fn advance(current: Status, observed: Status, decided: bool) -> Option<Status> {
    if decided && current == Status::Failure && observed == Status::Success {
        return Some(observed);
    }
    if current.is_terminal() && observed.is_terminal() && current != observed {
        return None;
    }
    Some(if observed.rank() > current.rank() {
        observed
    } else {
        current
    })
}

fn conflict(current: String, observed: impl Into<String>) -> Anomaly {
    Anomaly::ConflictingStatus {
        current,
        observed: observed.into(),
    }
}

/// Rule 4 for either kind: orders and views name their identifying fields alike.
macro_rules! identity_of {
    ($app_id:expr, $o:expr, $v:expr, $anomalies:expr) => {
        identity_holds(
            Identity {
                out_req_no: Some(&$o.request.out_req_no),
                trans_no: Some(&$o.request.trans_no),
                app_id: Some($app_id),
                amount: Some($o.request.amount),
                pay_order_no: $o.remote.pay_order_no.as_deref(),
            },
            Identity {
                out_req_no: $v.out_req_no.as_deref(),
                trans_no: $v.trans_no.as_deref(),
                app_id: $v.app_id.as_deref(),
                amount: $v.amount,
                pay_order_no: $v.pay_order_no.as_deref(),
            },
            $anomalies,
        )
    };
}

/// Fill fields we do not know yet from a view; known fields never change.
macro_rules! fill {
    ($dst:expr, $src:expr; $($field:ident),+ $(,)?) => {
        $( if $dst.$field.is_none() { $dst.$field = $src.$field.clone(); } )+
    };
}

/// Rule 7's anomaly: the payment system's word on money against a person's decision, both
/// named, so that whoever looks sees both claims.
fn overruled(before: Status, observed: String) -> Anomaly {
    conflict(format!("{before} (a person's decision)"), observed)
}

fn observe_inbound(
    app_id: &str,
    current: &mut Status,
    decided: bool,
    o: &mut Inbound,
    v: &InboundView,
    anomalies: &mut Vec<Anomaly>,
) {
    if !identity_of!(app_id, o, v, anomalies) {
        return;
    }
    if let Some(c) = v.cashier_type.as_ref().filter(|c| !c.is_known()) {
        anomalies.push(Anomaly::UnknownEnumValue {
            field: "cashierType".into(),
            value: c.to_string(),
        });
    }
    let Ok(status) = reported("payStatus", v.pay_status.as_ref(), anomalies) else {
        return;
    };
    let arrived = match &v.arrived_status {
        None | Some(ArrivedStatus::NotArrived) => false,
        Some(ArrivedStatus::Arrived) => true,
        Some(ArrivedStatus::Unknown(value)) => {
            anomalies.push(Anomaly::UnknownEnumValue {
                field: "arrivedStatus".into(),
                value: value.clone(),
            });
            return;
        }
    };
    // Rule 3: arrival implies payment; arrival with FAILURE contradicts itself.
    let observed = match (status, arrived) {
        (Some(Status::Failure), true) => {
            anomalies.push(conflict(current.to_string(), "FAILURE+arrived"));
            return;
        }
        (_, true) => Some(Status::Success),
        (s, false) => s,
    };
    if let Some(observed) = observed {
        let label = if arrived {
            "SUCCESS+arrived".to_owned()
        } else {
            observed.to_string()
        };
        match advance(*current, observed, decided) {
            Some(s) => {
                if s != *current && current.is_terminal() {
                    anomalies.push(overruled(*current, label));
                }
                *current = s;
            }
            None => {
                anomalies.push(conflict(current.to_string(), label));
                return;
            }
        }
    }
    if arrived && *current == Status::Success {
        o.arrived = true;
    }
    unreadable_times(&o.remote, v, anomalies);
    fill!(o.remote, v; trans_no, app_id, channel_type, amount, out_req_no, pos_code, pay_order_no, pay_status,
        arrived_status, pay_finish_time, pay_arrive_time, create_time, card_num, issuing_bank, issuing_bank_zh,
        channel_return_code, channel_return_msg, contract_num, cashier_url, qp_user_name, qp_cert_number, cashier_type);
    // The merged view reports our current status, not the first one seen.
    o.remote.pay_status = status_to_wire(*current).or(o.remote.pay_status.take());
    if o.arrived {
        o.remote.arrived_status = Some(ArrivedStatus::Arrived);
    }
}

fn observe_outbound(
    app_id: &str,
    current: &mut Status,
    decided: bool,
    o: &mut Outbound,
    v: &OutboundView,
    anomalies: &mut Vec<Anomaly>,
) {
    let out_type_matches = same(
        "outType",
        Some(o.request.out_type.as_str()),
        v.out_type.as_ref().map(|t| t.as_str()),
        anomalies,
    );
    if !identity_of!(app_id, o, v, anomalies) || !out_type_matches {
        return;
    }
    let Ok(status) = reported("payStatus", v.pay_status.as_ref(), anomalies) else {
        return;
    };
    if let Some(observed) = status {
        match advance(*current, observed, decided) {
            Some(s) => {
                if s != *current && current.is_terminal() {
                    anomalies.push(overruled(*current, observed.to_string()));
                }
                *current = s;
            }
            None => {
                anomalies.push(conflict(current.to_string(), observed.to_string()));
                return;
            }
        }
    }
    unreadable_times(&o.remote, v, anomalies);
    fill!(o.remote, v; trans_no, app_id, channel_subacc_code, channel_subacc_custid, amount, out_req_no, pay_order_no,
        channel_type, bank_acc_name, bank_acc_num, bank_name, bank_cnaps, out_type, remark, pay_status, pay_finish_time,
        create_time, channel_return_code, channel_return_msg);
    o.remote.pay_status = status_to_wire(*current).or(o.remote.pay_status.take());
}

/// The views whose times only inform: each named with its wire name.
trait ReportsTimes {
    fn times(&self) -> Vec<(&'static str, Option<&ReportedTime>)>;
}

impl ReportsTimes for InboundView {
    fn times(&self) -> Vec<(&'static str, Option<&ReportedTime>)> {
        vec![
            ("payFinishTime", self.pay_finish_time.as_ref()),
            ("payArriveTime", self.pay_arrive_time.as_ref()),
            ("createTime", self.create_time.as_ref()),
        ]
    }
}

impl ReportsTimes for OutboundView {
    fn times(&self) -> Vec<(&'static str, Option<&ReportedTime>)> {
        vec![
            ("payFinishTime", self.pay_finish_time.as_ref()),
            ("createTime", self.create_time.as_ref()),
        ]
    }
}

/// An informative time that could not be read, new to what we hold: an anomaly, once (the
/// news is applied all the same; the text is kept).
fn unreadable_times<V: ReportsTimes>(held: &V, news: &V, anomalies: &mut Vec<Anomaly>) {
    for ((field, ours), (_, theirs)) in held.times().into_iter().zip(news.times()) {
        if ours.is_none() && theirs.is_some_and(|t| t.time().is_none()) {
            anomalies.push(Anomaly::UnreadableValue {
                field: field.to_owned(),
            });
        }
    }
}

fn status_to_wire(s: Status) -> Option<PayStatus> {
    match s {
        Status::Unpaid => Some(PayStatus::Unpaid),
        Status::Processing => Some(PayStatus::Processing),
        Status::Success => Some(PayStatus::Success),
        Status::Failure => Some(PayStatus::Failure),
        Status::Requested | Status::Reserved | Status::Submitted => None,
    }
}
