//! The host's error type: what a command, a callback, a read or a feed can answer. A store
//! speaks [`StorageError`](crate::storage::StorageError), which the engine handles or turns
//! into one of these.
//!
//! Every variant says what happened and what the caller can do about it. None carries the
//! MD5 key or personal data, and no message quotes a value that came from outside: a
//! `transNo` that was really an account number, an amount, a time, an `appId` — each is kept
//! in the variant's fields for a program, never in its text. A message names fields, codes
//! and positions.

/// Everything that can go wrong in protopay's engine.
#[derive(Debug, thiserror::Error, Clone)]
#[non_exhaustive]
pub enum Error {
    // ---- input from outside: bodies, replies, callbacks, host calls -------------------
    /// The body is not a JSON envelope (`appId`, `data`, `sign`, `timestamp`).
    /// Nothing was changed; the sender should fix the body.
    #[error("malformed envelope: {reason}")]
    MalformedEnvelope {
        /// What is wrong, without quoting the body.
        reason: String,
    },
    /// The `sign` does not match `appId&data&timestamp&key`. Nothing was changed.
    #[error("bad signature: the body was not signed with our key, or was altered")]
    BadSign,
    /// The envelope names another business system. Nothing was changed.
    #[error("the envelope is for another appId, not ours")]
    WrongAppId {
        /// The `appId` the envelope carried.
        got: String,
    },
    /// The envelope's `data` does not decode into the expected structure.
    /// Only the position and category are reported, never the offending value.
    #[error("malformed data at line {line} column {column} ({category})")]
    MalformedData {
        /// 1-based line of the problem inside `data`.
        line: usize,
        /// 1-based column.
        column: usize,
        /// serde_json's category: syntax, data, eof.
        category: &'static str,
    },
    /// A body exceeded the size limit.
    #[error("body of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// Size received.
        size: usize,
        /// Limit in force.
        limit: usize,
    },
    /// An amount is not a plain non-negative decimal with at most two places.
    #[error("invalid amount: {reason}")]
    InvalidAmount {
        /// Why it was refused.
        reason: &'static str,
    },
    /// A time is not in the wire format.
    #[error("invalid time: expected {expected}")]
    InvalidTime {
        /// The text received (first 40 characters).
        value: String,
        /// The format that was expected.
        expected: &'static str,
    },
    /// A text is longer than its limit ([`crate::wire::validate::limits`]). Nothing was
    /// stored or sent; shorten it.
    #[error("`{field}` is longer than {max} characters")]
    TooLong {
        /// Wire name of the field.
        field: &'static str,
        /// Its limit, in characters.
        max: usize,
    },
    /// A request field failed validation before anything was stored or sent.
    #[error("invalid field `{field}`: {reason}")]
    InvalidField {
        /// Wire name of the field.
        field: &'static str,
        /// Why it was refused.
        reason: &'static str,
    },

    // ---- what the payment system answered ---------------------------------------------
    /// The payment system has no such record (`EP20001/2/3`).
    #[error("the payment system has no such {0}")]
    NotFound(Missing),
    /// The payment system answered a non-`0000` code other than the not-found ones.
    /// The call was handled and refused; `msg` says why.
    #[error("the payment system refused the call: {code} {msg}")]
    Remote {
        /// The code, e.g. `EP10001`.
        code: String,
        /// The payment system's reason.
        msg: String,
    },
    /// The transport could not carry the call. See [`TransportError`](crate::TransportError)
    /// for whether the call may have reached the payment system.
    #[error("transport: {0}")]
    Transport(#[from] crate::transport::TransportError),

    // ---- the host's commands ----------------------------------------------------------
    /// The protocol is not known to this engine.
    #[error("no such protocol (transNo) is known here")]
    UnknownProtocol {
        /// The protocol number asked for.
        trans_no: String,
    },
    /// The order is not known to this engine.
    #[error("no such order (outReqNo) is known here")]
    UnknownOrder {
        /// The request number asked for.
        out_req_no: String,
    },
    /// An order with this `outReqNo` exists with different parameters. Nothing was changed.
    /// The stored order stands (it may already have been sent: do not treat it as failed);
    /// repeat the original parameters to read it.
    #[error(
        "an order with this outReqNo already exists with different {fields:?}; repeat the original parameters to read it"
    )]
    IdempotencyMismatch {
        /// The request number in conflict.
        out_req_no: String,
        /// Wire names of the fields that differ from the stored request.
        fields: Vec<&'static str>,
    },
    /// A protocol was opened with this idempotency key and different parameters. Nothing was
    /// sent or changed; repeat the original parameters to read it, or use a new key.
    #[error(
        "a protocol was opened with this idempotency key and different {fields:?}; repeat the original parameters to read it"
    )]
    OpenedOtherwise {
        /// The protocol the key opened.
        trans_no: String,
        /// Wire names of the fields that differ from the stored protocol.
        fields: Vec<&'static str>,
    },
    /// The store failed in a way that leaves open whether order `out_req_no` was recorded.
    /// Repeat the same command with the same `outReqNo` to learn its fate — never a new one:
    /// if it was recorded, it will be carried out.
    #[error(
        "whether the order was recorded is unknown (the store failed); repeat the same command with the same outReqNo"
    )]
    OutcomeUnknown {
        /// The request number to repeat.
        out_req_no: String,
    },
    /// The payout or refund exceeds the protocol's available balance. Nothing was stored
    /// and nothing was sent.
    #[error("insufficient funds: {available} available, less than the amount asked for")]
    InsufficientFunds {
        /// Amount asked for.
        requested: crate::Amount,
        /// Available balance at the time of the check.
        available: crate::Amount,
    },
    /// The command does not fit the order's current state (e.g. closing a paid POS code).
    #[error("the order cannot {action} in its current state {state}")]
    InvalidState {
        /// The order.
        out_req_no: String,
        /// What was attempted.
        action: &'static str,
        /// The state it is in.
        state: String,
    },

    /// A person's decision was made on a version of the order it has since left (news
    /// arrived, a poll ran, someone else decided). Nothing was recorded: read the order
    /// again, and decide on what it says now.
    #[error("the order changed since the version the decision was made on; read it again and decide again")]
    OrderMoved {
        /// The order.
        out_req_no: String,
    },

    // ---- storage (as a host sees it: a store's own `StorageError` never reaches you) -----
    /// Other processes kept changing the same record faster than this call could: nothing
    /// was changed by this call. Retry it.
    #[error("{what} is changing too fast to update; nothing was changed, retry")]
    Busy {
        /// The record contended for.
        what: String,
    },
    /// The storage backend failed. Nothing was acknowledged; the caller may retry.
    #[error("storage backend failed")]
    Storage(#[source] std::sync::Arc<dyn std::error::Error + Send + Sync>),
    /// The connection to the store was lost while a commit was in flight, and the store
    /// could not learn afterwards whether it landed. Not a success: nothing was
    /// acknowledged. Not "nothing written" either: whoever acts on it re-reads first (a
    /// command returns [`OutcomeUnknown`](Error::OutcomeUnknown); a callback is answered
    /// with a failure and redelivered; a poll is retried).
    #[error("whether a storage commit landed is unknown (the connection was lost during COMMIT)")]
    CommitUnknown(#[source] std::sync::Arc<dyn std::error::Error + Send + Sync>),
    /// Stored data could not be decoded: a bug or on-disk corruption. Stop and inspect.
    #[error("corrupt stored record {key}: {reason}")]
    Corrupt {
        /// Which record.
        key: String,
        /// What failed.
        reason: String,
    },
    /// A ledger movement would take a bucket below zero: a broken invariant, which the
    /// engine refuses to commit.
    #[error("ledger invariant broken: {0}")]
    Invariant(String),
    /// The engine's configuration is invalid.
    #[error("invalid configuration `{field}`: {reason}")]
    InvalidConfig {
        /// Which setting.
        field: &'static str,
        /// What is wrong.
        reason: &'static str,
    },
    /// The engine is shutting down.
    #[error("engine is shut down")]
    Shutdown,
}

impl Error {
    /// Map a serde_json error on `data` to [`Error::MalformedData`] without quoting input.
    pub(crate) fn from_data(e: &serde_json::Error) -> Self {
        use serde_json::error::Category;
        Error::MalformedData {
            line: e.line(),
            column: e.column(),
            category: match e.classify() {
                Category::Io => "io",
                Category::Syntax => "syntax",
                Category::Data => "data",
                Category::Eof => "eof",
            },
        }
    }
}

/// Which record the payment system said it does not have (`EP20001/2/3`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Missing {
    /// `EP20001`: no such protocol (`transNo`).
    Protocol,
    /// `EP20002`: no such inbound order (`outReqNo`).
    InboundOrder,
    /// `EP20003`: no such outbound order (`outReqNo`).
    OutboundOrder,
}

impl Missing {
    /// The wire code.
    pub fn code(self) -> &'static str {
        match self {
            Missing::Protocol => "EP20001",
            Missing::InboundOrder => "EP20002",
            Missing::OutboundOrder => "EP20003",
        }
    }

    /// The kind for a wire code, if it is one of the not-found codes.
    pub fn from_code(code: &str) -> Option<Self> {
        [Missing::Protocol, Missing::InboundOrder, Missing::OutboundOrder]
            .into_iter()
            .find(|m| m.code() == code)
    }
}

impl std::fmt::Display for Missing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Missing::Protocol => "protocol (EP20001)",
            Missing::InboundOrder => "inbound order (EP20002)",
            Missing::OutboundOrder => "outbound order (EP20003)",
        })
    }
}

/// Shorthand for results in this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
