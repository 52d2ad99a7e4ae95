//! # protopay
//!
//! An embeddable engine for escrow money moving through the LFT agreement-payment API
//! (协议支付): open protocols (escrow agreements), take inbound payments by POS six-digit code
//! or quick-pay page, watch funds arrive, pay out or refund to bank accounts — and keep every
//! order's state and every balance exactly right however late, duplicated, reordered or lost
//! the news is, and whatever crashes in between.
//!
//! This crate is the one dependency a host adds. It re-exports:
//! - [`engine`] (and everything in it at the top level): the wire protocol, the pure state
//!   machine and ledger, the `Storage`/`Transport` traits, and the [`Engine`];
//! - [`sled`] (feature `sled`, default): durable storage;
//! - [`http`] (feature `http`, default): the HTTP transport and the callback receiver;
//! - [`api`] (feature `http`): the `/v1` JSON API and its webhooks.
//!
//! ```no_run
//! use protopay::{Config, Engine, Md5Key, NewInbound, Amount};
//!
//! # async fn host() -> Result<(), Box<dyn std::error::Error>> {
//! let config = Config::new("APP001", Md5Key::new("secret"), "https://pay.example", "https://me.example/protopay/notify");
//! let engine = Engine::builder(config.clone())
//!     .storage(protopay::sled::SledStorage::open("data/protopay")?)
//!     .transport(protopay::http::HttpTransport::from_config(&config)?)
//!     .build()
//!     .await?;
//! let poller = engine.spawn_poller();
//! let receiver = protopay::http::callback_router(engine.clone());
//! // … serve `receiver` with axum, then:
//! let order = engine.prepay(NewInbound::pos("T2026112600001", Amount::parse("100.00")?)).await?;
//! println!("{} → {:?}", order.out_req_no(), order.status);
//! # drop(receiver); poller.shutdown().await; Ok(()) }
//! ```
#![deny(missing_docs)]
// Outside data never meets an `unwrap` here; tests may use it freely.
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub use protopay_engine as engine;
pub use protopay_engine::*;

/// Durable storage on sled.
#[cfg(feature = "sled")]
pub use protopay_storage_sled as sled;

/// Shared storage on PostgreSQL, for several instances on one database.
#[cfg(feature = "postgres")]
pub use protopay_storage_postgres as postgres;

/// The HTTP transport and the callback receiver.
#[cfg(feature = "http")]
pub use protopay_transport_http as http;

/// The `/v1` JSON API for hosts in any language, and its webhooks.
#[cfg(feature = "http")]
pub use protopay_api as api;

/// The operator console: web pages for the person on call.
#[cfg(feature = "console")]
pub use protopay_console as console;
