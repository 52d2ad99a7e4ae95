//! # protopay-engine
//!
//! The centre of protopay: everything that decides what is true about escrow money moving
//! through the LFT agreement-payment API (协议支付), and the engine a host embeds.
//!
//! The payment system is the truth about money; we learn it late, twice, out of order, or
//! not at all. So every piece of news — a callback, a poll answer, the reply to our own
//! request — becomes an [`Observation`] of one order and goes through one pure function,
//! [`apply()`], which yields the next state, the ledger movement and the events. Nothing else
//! has rules of its own.
//!
//! Layers, from the inside out:
//! - [`wire`]: the envelope, MD5 signing, amounts, times, enums and typed messages (`docs/protocol.md`);
//! - [`domain`], [`observation`], [`apply()`], [`ledger`], [`event`]: the pure core;
//! - [`storage`] and [`transport`]: the traits a backend implements (with `MemoryStorage` and
//!   the conformance suite every storage backend runs);
//! - the runtime: the [`Engine`] a host embeds — commands, callbacks, the poller, the event
//!   feed — built around one unit of work that reads, applies, and commits each step with its
//!   ledger move, events and next poll time.
//!
//! ```
//! use protopay_engine::{apply, Amount, Observation, Order, Source, News, Status};
//! use protopay_engine::wire::{InboundView, PayStatus, ArrivedStatus, Prepay};
//!
//! let prepay = Prepay {
//!     trans_no: "T1".into(),
//!     out_req_no: "APP001-in-1".into(),
//!     amount: Amount::parse("100.00")?,
//!     out_success_notify_url: "https://host/notify/inbound-pay".into(),
//!     out_arrived_notify_url: None,
//!     prod_catalog: None,
//!     contract_num: None,
//!     qp_user_name: None,
//!     qp_cert_number: None,
//!     return_url: None,
//! };
//! let order = Order::new_inbound("APP001", prepay);
//!
//! // The arrival callback comes first: arrival implies payment.
//! let news = InboundView {
//!     pay_status: Some(PayStatus::Success),
//!     arrived_status: Some(ArrivedStatus::Arrived),
//!     ..Default::default()
//! };
//! let out = apply(&order, &Observation::new(Source::Poll, News::Inbound(Box::new(news))));
//! assert_eq!(out.order.status, Status::Success);
//! assert_eq!(out.movement.map(|m| m.amount.to_string()), Some("100.00".to_string()));
//! # Ok::<(), protopay_engine::Error>(())
//! ```
#![deny(missing_docs)]
// Outside data never meets an `unwrap` here; tests may use it freely.
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod apply;
pub mod domain;
mod error;
pub mod event;
pub mod ledger;
pub mod observation;
mod runtime;
pub mod secret;
pub mod storage;
#[cfg(any(test, feature = "test-util"))]
pub mod testing;
pub mod transport;
pub mod wire;

pub use apply::{Outcome, apply};
pub use domain::{Inbound, Listing, Order, OrderKind, Outbound, Protocol, Refusal, Status};
pub use error::{Error, Result};
pub use event::{Anomaly, Event, EventKind};
pub use ledger::{Ledger, Move, Slot};
pub use observation::{News, Observation, Source};
pub use runtime::metrics;
pub use runtime::{
    CallbackReply, Census, CheckReport, Clock, Config, Decision, Engine, EngineBuilder, MAX_PAGE, NewInbound,
    NewOutbound, NewProtocol, OrderDetails, Page, Payee, PollPolicy, PollReport, PollerHandle, Reconciliation,
    ReplyStyle, Subscription, Timeouts, next_poll,
};
pub use secret::{Md5Key, Sensitive};
pub use transport::{Transport, TransportError};
pub use wire::Amount;
