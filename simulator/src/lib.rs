//! # protopay-sim
//!
//! A faithful, adversarial fake of the payment system described in `docs/protocol.md`, so that protopay's tests,
//! demos and its users' staging setups run with no real payment system — the way Stripe's
//! test mode and `stripe-mock` serve Stripe integrators.
//!
//! It is a second, independent implementation of the payment system's side: it uses the
//! engine's wire types and signing, never its `apply` or ledger, and keeps its own books, so
//! that the two catch each other's mistakes.
//!
//! - [`Sim`]: the eight calls with signature checks and error codes, balances that move like
//!   the real ones, controls to pay, arrive and settle, a seeded random schedule, callbacks
//!   with retries, and [`Faults`] on demand (including a no-dedupe mode whose per-`outReqNo`
//!   payout counter proves the engine never pays twice).
//! - [`SimTransport`]: the simulator in-process, as an engine [`Transport`](protopay_engine::Transport).
//! - [`server::router`]: the same over HTTP, with an admin API; the `protopay-sim` binary
//!   serves it.
//!
//! ```
//! use protopay_engine::{Clock, Md5Key};
//! use protopay_engine::wire::{CreateProtocol, ChannelType, Endpoint, Envelope, RemoteProtocol};
//! use protopay_sim::{Handled, Sim, SimConfig};
//!
//! let key = Md5Key::new("k3y");
//! let sim = Sim::new(SimConfig::new("APP001", key.clone()), Clock::system());
//! let create = CreateProtocol { channel_type: ChannelType::Lft, trans_desc: "deal".into(),
//!                               business_id: "B1".into(), cashier_type: None };
//! let request = Envelope::for_call("APP001", &create, "20261126120000123".into(), &key)?;
//! let Handled::Reply(body) = sim.handle("create", request.to_json().as_bytes()) else { panic!() };
//! let reply = Envelope::open(&body, "APP001", &key)?;
//! let view: RemoteProtocol = Envelope::decode_data(reply.reply_data()?)?;
//! assert!(sim.balances(&view.trans_no).is_some());
//! # Ok::<(), protopay_engine::Error>(())
//! ```
#![deny(missing_docs)]
// Outside data never meets an `unwrap` here; tests may use it freely.
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

mod books;
mod faults;
pub mod server;
mod sim;
mod sink;
mod transport;

pub use books::{Balances, BooksError};
pub use faults::{Aimed, Fault, Faults, Rng};
pub use sim::{Background, Handled, Received, Sim, SimConfig, SimError, Stats};
pub use sink::{CallbackSink, EngineSink, HttpSink, is_ack};
pub use transport::SimTransport;
