//! Observations: every piece of news about one order, whatever brought it.

use crate::domain::Refusal;
use crate::wire::{CallbackKind, InboundView, OutboundView};
use serde::{Deserialize, Serialize};

/// What brought a piece of news.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Source {
    /// A callback from the payment system.
    Callback(CallbackKind),
    /// The answer to our own query (`inquery`/`outquery`).
    Poll,
    /// The reply to our own command (`prepay`/`outpay`/`posclose`).
    Reply,
    /// The engine itself (it is about to send a call).
    Engine,
    /// A person, through [`Engine::resolve`](crate::Engine::resolve).
    Operator,
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Callback(k) => write!(f, "callback:{}", k.slug()),
            Source::Poll => f.write_str("poll"),
            Source::Reply => f.write_str("reply"),
            Source::Engine => f.write_str("engine"),
            Source::Operator => f.write_str("operator"),
        }
    }
}

/// The news itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum News {
    /// The payment system's view of an inbound order.
    Inbound(Box<InboundView>),
    /// The payment system's view of an outbound order.
    Outbound(Box<OutboundView>),
    /// The payment system has no record of the order (`EP20002`/`EP20003`).
    NotFound,
    /// The payment system refused our send with a definite error.
    Refused(Refusal),
    /// The payment system confirmed that the POS code is closed.
    Closed,
    /// We are about to send the order's call: from here its fate is uncertain until news.
    Sending,
    /// A person's recorded decision on an order whose outcome the payment system would not
    /// give (`SUCCESS` or `FAILURE`), with their reason.
    Resolved {
        /// The outcome decided.
        status: crate::domain::Status,
        /// Who decided and why.
        note: String,
    },
}

/// One piece of news about one order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Observation {
    /// What brought it.
    pub source: Source,
    /// What it says.
    pub news: News,
}

impl Observation {
    /// News from a source.
    pub fn new(source: Source, news: News) -> Self {
        Observation { source, news }
    }
}
