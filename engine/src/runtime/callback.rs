//! Callbacks from the payment system: verify, decode, apply, commit — then answer.
//!
//! The answer is decided only after what the callback said is durably stored, so a success
//! answer never loses news. A duplicate is answered with success. A callback that fails
//! verification changes nothing, but moves the named order's next poll sooner
//! (rate-limited), so a real update mangled in transit still lands soon.

use super::transact::{Bookkeeping, PollAt, Step};
use super::{Engine, ReplyStyle, metrics};
use crate::event::{Anomaly, EventKind};
use crate::observation::{News, Source};
use crate::storage::{Exchange, Message, Orphan};
use crate::wire::{
    CODE_OK, CallbackKind, Envelope, InboundView, MSG_OK, OutboundView, format_timestamp, parse_timestamp,
};
use crate::{Error, Result};

/// What to answer the payment system: an HTTP status, a body and its content type.
#[derive(Debug, Clone)]
pub struct CallbackReply {
    /// HTTP status.
    pub status: u16,
    /// Body.
    pub body: String,
    /// `Content-Type`.
    pub content_type: &'static str,
    /// Why it was refused, for the host's logs (`None` on success).
    pub rejection: Option<Error>,
}

impl CallbackReply {
    /// Whether the callback was accepted.
    pub fn is_success(&self) -> bool {
        self.rejection.is_none()
    }
}

/// How many orders' last poll-sooner times are kept before expired ones are swept: enough for a
/// storm of mangled callbacks on every open order of a large engine, bounded so a flood of
/// forged ones naming random orders cannot grow memory without end.
const POLLED_SOONER_KEPT: usize = 10_000;

impl Engine {
    /// Handle one callback body of `kind`. Never panics on any input.
    #[tracing::instrument(skip_all, fields(kind = kind.slug(), bytes = body.len()))]
    pub async fn handle_callback(&self, kind: CallbackKind, body: &[u8]) -> CallbackReply {
        let _working = match self.working() {
            Ok(w) => w,
            Err(e) => return self.failure_reply(e),
        };
        let accepted = self.accept_callback(kind, body).await;
        metrics::callback(kind.slug(), accepted.is_ok());
        match accepted {
            Ok(()) => self.success_reply(),
            Err(e) => {
                tracing::warn!(error = %e, "callback refused");
                if matches!(
                    e,
                    Error::BadSign | Error::WrongAppId { .. } | Error::MalformedData { .. } | Error::InvalidTime { .. }
                ) {
                    self.poll_sooner(body).await;
                }
                self.failure_reply(e)
            }
        }
    }

    async fn accept_callback(&self, kind: CallbackKind, body: &[u8]) -> Result<()> {
        let config = self.config();
        if body.len() > config.callback_body_limit_bytes {
            return Err(Error::TooLarge {
                size: body.len(),
                limit: config.callback_body_limit_bytes,
            });
        }
        let envelope = self.open_envelope(body)?;
        if let Some(max_age) = config.callback_max_age_ms {
            let sent = parse_timestamp(&envelope.timestamp, self.inner.zone)?;
            if (self.now() - sent).num_milliseconds() > i64::try_from(max_age).unwrap_or(i64::MAX) {
                return Err(Error::InvalidTime {
                    value: envelope.timestamp.clone(),
                    expected: "a recent timestamp",
                });
            }
        }
        let (out_req_no, news) = match kind {
            CallbackKind::InboundPay | CallbackKind::InboundArrival => {
                let view: InboundView = Envelope::decode_data(&envelope.data)?;
                (view.out_req_no.clone(), News::Inbound(Box::new(view)))
            }
            CallbackKind::Outbound => {
                let view: OutboundView = Envelope::decode_data(&envelope.data)?;
                (view.out_req_no.clone(), News::Outbound(Box::new(view)))
            }
        };
        let out_req_no = out_req_no.ok_or(Error::InvalidField {
            field: "outReqNo",
            reason: "is required",
        })?;
        // Kept as evidence only once verified: anyone can send a callback naming an order,
        // and an order keeps a bounded number of exchanges.
        let evidence = Exchange {
            out_req_no: out_req_no.clone(),
            at: self.now(),
            message: Message::Callback { kind },
            body: String::from_utf8_lossy(body).into_owned(),
        };
        let step = Step::news(Source::Callback(kind), news).with_evidence(vec![evidence]);
        match self.transact(&out_req_no, step).await {
            Ok(_) => Ok(()),
            Err(Error::UnknownOrder { .. }) => self.keep_orphan(kind, out_req_no, envelope).await,
            Err(e) => Err(e),
        }
    }

    /// A verified callback for an order we do not know: keep it, raise an anomaly, and
    /// answer success (retrying it would not make us know the order).
    async fn keep_orphan(&self, kind: CallbackKind, out_req_no: String, envelope: Envelope) -> Result<()> {
        let mut event = self.event(
            None,
            Source::Callback(kind),
            EventKind::Anomaly(Anomaly::OrphanCallback),
        );
        event.out_req_no = Some(out_req_no.clone());
        let orphan = Orphan {
            kind,
            out_req_no: Some(out_req_no),
            sign: envelope.sign,
            data: envelope.data,
            received_at: self.now(),
        };
        self.record_events(vec![event], vec![orphan]).await
    }

    /// Move forward the next poll of the order an unverified body names, at most once per
    /// `poll_sooner_min_interval_ms` per order, and only for orders we hold and still poll.
    async fn poll_sooner(&self, body: &[u8]) {
        let Some(out_req_no) = Envelope::decode(body).ok().and_then(|e| e.names_order()) else {
            return;
        };
        let now = self.now();
        let min = chrono::Duration::milliseconds(
            i64::try_from(self.config().poll.poll_sooner_min_interval_ms).unwrap_or(i64::MAX),
        );
        {
            let mut polled_sooner = self.inner.polled_sooner.lock().unwrap_or_else(|p| p.into_inner());
            if polled_sooner.get(&out_req_no).is_some_and(|last| now - *last < min) {
                return;
            }
            if polled_sooner.len() > POLLED_SOONER_KEPT {
                polled_sooner.retain(|_, last| now - *last < min);
            }
            polled_sooner.insert(out_req_no.clone(), now);
        }
        // Through the unit of work, at the order's version: a poll-sooner that lands after the order
        // was settled writes no due time for it.
        let step = Step {
            poll_at: PollAt::Now,
            ..Step::record(Source::Engine, Bookkeeping::Nothing)
        };
        if let Ok(order) = self.transact(&out_req_no, step).await
            && order.is_open()
        {
            self.inner.wake_poller.notify_one();
        }
    }

    fn success_reply(&self) -> CallbackReply {
        match self.config().reply_style {
            ReplyStyle::PlainSuccess => CallbackReply {
                status: 200,
                body: MSG_OK.into(),
                content_type: "text/plain; charset=utf-8",
                rejection: None,
            },
            ReplyStyle::Envelope => CallbackReply {
                status: 200,
                body: self.envelope_reply(CODE_OK, MSG_OK),
                content_type: "application/json",
                rejection: None,
            },
        }
    }

    fn failure_reply(&self, e: Error) -> CallbackReply {
        let (status, code) = match &e {
            Error::TooLarge { .. } => (413, "FAIL_TOO_LARGE"),
            Error::BadSign | Error::WrongAppId { .. } => (401, "FAIL_SIGN"),
            Error::MalformedEnvelope { .. }
            | Error::MalformedData { .. }
            | Error::InvalidField { .. }
            | Error::InvalidTime { .. } => (400, "FAIL_MALFORMED"),
            _ => (500, "FAIL_RETRY"),
        };
        CallbackReply {
            status,
            body: self.envelope_reply(code, &e.to_string()),
            content_type: "application/json",
            rejection: Some(e),
        }
    }

    fn envelope_reply(&self, code: &str, msg: &str) -> String {
        let config = self.config();
        let timestamp = format_timestamp(self.now(), self.inner.zone);
        Envelope::reply(&config.app_id, code, msg, "{}".into(), timestamp, &config.key).to_json()
    }
}
