//! The engine's configuration: serde-deserialisable so a host can keep it in its own config
//! file. Durations are whole milliseconds (`*_ms`), so no unit is ever ambiguous.

use crate::secret::Md5Key;
use crate::wire::validate::{CnapsCheck, limits};
use crate::{Error, Result};
use chrono::FixedOffset;
use serde::Deserialize;
use std::time::Duration;

/// How a callback is answered on success.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplyStyle {
    /// A signed envelope: `code` `0000`, `msg` `SUCCESS`, `data` `{}` (the default: see `docs/protocol.md`, Callbacks).
    #[default]
    Envelope,
    /// The bare text `SUCCESS`.
    PlainSuccess,
}

/// Timeouts of calls to the payment system (used by transports).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Timeouts {
    /// Connecting.
    pub connect_ms: u64,
    /// A whole request, from sending to the end of the reply.
    pub request_ms: u64,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect_ms: 3_000,
            request_ms: 15_000,
        }
    }
}

impl Timeouts {
    /// Connect timeout.
    pub fn connect(&self) -> Duration {
        Duration::from_millis(self.connect_ms)
    }

    /// Request timeout.
    pub fn request(&self) -> Duration {
        Duration::from_millis(self.request_ms)
    }
}

/// When and how hard the poller asks about open orders.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PollPolicy {
    /// First poll after a call was sent and its outcome is unknown.
    pub submitted_ms: u64,
    /// While `PROCESSING` (fast: an outcome is near).
    pub processing_ms: u64,
    /// While an inbound order is `UNPAID` (slow: a payer has to walk to a terminal).
    pub unpaid_ms: u64,
    /// While paid and waiting for arrival (daily-ish).
    pub awaiting_arrival_ms: u64,
    /// While an order needs attention.
    pub attention_ms: u64,
    /// Backoff ceiling: intervals double with every quiet poll up to this.
    pub max_interval_ms: u64,
    /// Jitter, in percent of the interval, either way.
    pub jitter_percent: u8,
    /// How long after a send a verified "no such order" is believed. Within it, the order is
    /// simply polled again. Past it, the order is sent again only if the payment system
    /// deduplicates `outReqNo` ([`Config::payment_system_deduplicates`]); otherwise it needs
    /// attention. Must exceed the request timeout. It bounds how long *we* wait; it cannot
    /// bound a paused process or a delayed packet, so it never licenses a second send alone.
    pub grace_ms: u64,
    /// How long a send may take to leave after its `Submitted` commit began (this process's
    /// monotonic clock): a sender that gets to the network later than this (it was paused,
    /// or the commit was slow) does not send, and records the send as never made. Narrows
    /// the window in which a sender nobody hears from still holds a request.
    pub send_deadline_ms: u64,
    /// Sends per order (first included) that may have reached the payment system, before it
    /// needs attention (sends that provably never left do not count). Only matters when the
    /// payment system deduplicates; otherwise a second send that may land is never made.
    #[serde(alias = "max_submissions")]
    pub max_sends: u32,
    /// Quiet polls (polls that brought no outcome: an unchanged status, a failed query) of an
    /// order whose outcome is unknown before it needs attention.
    pub attention_after_quiet_polls: u32,
    /// Orders polled at once.
    pub concurrency: usize,
    /// Orders claimed per poller pass (the old name `batch` is still read: a batch is now only
    /// an atomic write).
    #[serde(alias = "batch")]
    pub orders_per_pass: usize,
    /// Longest sleep between ticks with nothing due. On a store that announces other
    /// instances' commits (PostgreSQL) every schedule wakes the poller, so it sleeps up to
    /// `claim_ms` instead, if that is longer.
    pub idle_tick_ms: u64,
    /// Least time between two polls moved sooner by failed callbacks for one order (the old
    /// name `hint_min_interval_ms` is still read).
    #[serde(alias = "hint_min_interval_ms")]
    pub poll_sooner_min_interval_ms: u64,
    /// How long an order claimed by a poll stays this instance's before another instance on
    /// the same store may take it (a dead instance's claims run out after this). A little over
    /// the request timeout, so that a live instance's poll is over before anyone else's starts.
    /// (The old name `lease_ms` is still read: "lease" now means only a named lease.)
    #[serde(alias = "lease_ms")]
    pub claim_ms: u64,
}

impl Default for PollPolicy {
    fn default() -> Self {
        PollPolicy {
            submitted_ms: 5_000,
            processing_ms: 10_000,
            unpaid_ms: 60_000,
            awaiting_arrival_ms: 4 * 3_600_000,
            attention_ms: 3_600_000,
            max_interval_ms: 6 * 3_600_000,
            jitter_percent: 20,
            grace_ms: 60_000,
            send_deadline_ms: 2_000,
            max_sends: 3,
            attention_after_quiet_polls: 30,
            concurrency: 8,
            orders_per_pass: 256,
            idle_tick_ms: 1_000,
            poll_sooner_min_interval_ms: 5_000,
            claim_ms: 20_000,
        }
    }
}

fn default_offset() -> i32 {
    8 * 60
}

fn default_body_limit() -> usize {
    64 * 1024
}

/// Everything the engine needs to know.
///
/// ```
/// let config: protopay_engine::Config = serde_json::from_str(r#"{
///     "app_id": "APP001",
///     "key": "secret",
///     "base_url": "https://pay.example",
///     "callback_base_url": "https://host.example/protopay/notify",
///     "poll": { "grace_ms": 120000 }
/// }"#).unwrap();
/// assert_eq!(format!("{:?}", config.key), "Md5Key(***)");
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Our business system id.
    pub app_id: String,
    /// The shared MD5 key: everything is signed with it.
    pub key: Md5Key,
    /// Keys still accepted when verifying callbacks and replies, during a rotation: the
    /// payment system may sign with the old key until it switches. Remove them once
    /// `protopay_callback_key_total{key="previous"}` stays flat.
    #[serde(default)]
    pub previous_keys: Vec<Md5Key>,
    /// The payment system's base URL (`{base}/api/protocol/{name}`), used by transports.
    pub base_url: String,
    /// Where our callback receiver is reachable; notify URLs are `{this}/{kind}` with kinds
    /// `inbound-pay`, `inbound-arrival`, `outbound`.
    pub callback_base_url: String,
    /// The payment system's zone, in minutes east of UTC (default +08:00).
    #[serde(default = "default_offset")]
    pub utc_offset_minutes: i32,
    /// Call timeouts.
    #[serde(default)]
    pub timeouts: Timeouts,
    /// Poll policy.
    #[serde(default)]
    pub poll: PollPolicy,
    /// How callbacks are answered.
    #[serde(default)]
    pub reply_style: ReplyStyle,
    /// How strictly `bankCnaps` is checked.
    #[serde(default)]
    pub cnaps_check: CnapsCheck,
    /// Refuse callbacks whose `timestamp` is older than this (off by default: retries may reuse a callback's timestamp; see `docs/protocol.md`).
    #[serde(default)]
    pub callback_max_age_ms: Option<u64>,
    /// The largest callback body accepted, in bytes (the old name `callback_body_limit` is
    /// still read).
    #[serde(default = "default_body_limit", alias = "callback_body_limit")]
    pub callback_body_limit_bytes: usize,
    /// How often the poller reconciles every protocol with activity since the last run
    /// against the payment system's balances (drift is reported, never acted on); 0 = off.
    #[serde(default = "default_reconcile_every")]
    pub reconcile_every_ms: u64,
    /// Whether the payment system deduplicates `outReqNo`: a second `outpay`/`prepay` with an
    /// `outReqNo` it already holds is answered from the first and moves no money. Off by
    /// default. Only when it is on does the engine repeat a send that may have been
    /// delivered (after a verified "no such order" past the grace period); with it off such
    /// an order needs a person. Turn it on only after the payment system has confirmed it in
    /// writing and a staging test has shown it (the simulator's `no_dedupe` fault off).
    #[serde(default)]
    pub payment_system_deduplicates: bool,
}

fn default_reconcile_every() -> u64 {
    3_600_000
}

impl Config {
    /// A configuration with defaults for everything but the four essentials.
    pub fn new(app_id: &str, key: Md5Key, base_url: &str, callback_base_url: &str) -> Self {
        Config {
            app_id: app_id.to_owned(),
            key,
            previous_keys: Vec::new(),
            base_url: base_url.to_owned(),
            callback_base_url: callback_base_url.to_owned(),
            utc_offset_minutes: default_offset(),
            timeouts: Timeouts::default(),
            poll: PollPolicy::default(),
            reply_style: ReplyStyle::default(),
            cnaps_check: CnapsCheck::default(),
            callback_max_age_ms: None,
            callback_body_limit_bytes: default_body_limit(),
            reconcile_every_ms: default_reconcile_every(),
            payment_system_deduplicates: false,
        }
    }

    /// The keys that verify what the payment system sends: the current one first.
    pub fn keys(&self) -> impl Iterator<Item = &Md5Key> {
        std::iter::once(&self.key).chain(&self.previous_keys)
    }

    /// The payment system's zone.
    pub fn zone(&self) -> Result<FixedOffset> {
        FixedOffset::east_opt(self.utc_offset_minutes.saturating_mul(60)).ok_or(Error::InvalidConfig {
            field: "utc_offset_minutes",
            reason: "must be within ±24 hours",
        })
    }

    /// The path the callback receiver serves, taken from `callback_base_url` so that the
    /// notify URLs we send and the routes we mount cannot disagree: `https://host/a/b` →
    /// `/a/b`; a bare host → `` (routes at the root).
    pub fn callback_path(&self) -> &str {
        let url = self.callback_base_url.split(['?', '#']).next().unwrap_or_default();
        let after_scheme = url.split_once("://").map_or(url, |(_, rest)| rest);
        after_scheme
            .find('/')
            .map_or("", |at| &after_scheme[at..])
            .trim_end_matches('/')
    }

    /// The notify URL for a callback kind.
    pub fn notify_url(&self, kind: crate::wire::CallbackKind) -> String {
        format!("{}/{}", self.callback_base_url.trim_end_matches('/'), kind.slug())
    }

    /// Check the settings that depend on each other.
    pub fn validate(&self) -> Result<()> {
        let bad = |field, reason| Err(Error::InvalidConfig { field, reason });
        if self.app_id.is_empty()
            || !self
                .app_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return bad("app_id", "must be non-empty [A-Za-z0-9_-]");
        }
        if self.app_id.len() > limits::APP_ID_MAX_CHARS {
            return bad(
                "app_id",
                "longer than 39 characters: leaves no room for a generated outReqNo",
            );
        }
        self.zone()?;
        let longest_slug = crate::wire::CallbackKind::ALL
            .iter()
            .map(|k| k.slug().len() + 1)
            .max()
            .unwrap_or(0);
        if self.callback_base_url.trim_end_matches('/').len() + longest_slug > limits::URL_MAX_CHARS {
            return bad("callback_base_url", "too long for a notify URL (512 characters)");
        }
        if self.callback_body_limit_bytes < limits::ECHO_BODY_MAX_BYTES {
            return bad(
                "callback_body_limit_bytes",
                "smaller than a callback echoing our longest request",
            );
        }
        let p = &self.poll;
        let intervals = [
            p.submitted_ms,
            p.processing_ms,
            p.unpaid_ms,
            p.awaiting_arrival_ms,
            p.attention_ms,
        ];
        if intervals.contains(&0) || p.max_interval_ms == 0 || p.idle_tick_ms == 0 {
            return bad("poll", "intervals must be at least 1 ms");
        }
        if p.attention_after_quiet_polls == 0 {
            return bad("poll.attention_after_quiet_polls", "must be at least 1");
        }
        if self.poll.grace_ms <= self.timeouts.request_ms {
            return bad("poll.grace_ms", "must exceed timeouts.request_ms");
        }
        if self.poll.claim_ms <= self.timeouts.request_ms {
            // A claim that runs out while its own poll still waits on a reply lets another
            // instance poll the same order at once (harmless to money, versions decide, but
            // exactly the double work the claim exists to prevent).
            return bad("poll.claim_ms", "must exceed timeouts.request_ms");
        }
        if self.poll.send_deadline_ms == 0 {
            return bad("poll.send_deadline_ms", "must be at least 1 ms");
        }
        if self.poll.max_sends == 0 {
            return bad("poll.max_sends", "must be at least 1");
        }
        if self.poll.concurrency == 0 || self.poll.orders_per_pass == 0 {
            return bad("poll.concurrency", "concurrency and orders_per_pass must be at least 1");
        }
        if self.poll.jitter_percent > 90 {
            return bad("poll.jitter_percent", "must be at most 90");
        }
        Ok(())
    }
}
