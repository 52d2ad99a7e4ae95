//! The payment system's wire protocol (`docs/protocol.md`): the envelope and its signature, amounts
//! and times, enumerations, the typed `data` of every call, reply and callback, and the
//! validation of what we send.

mod amount;
mod enums;
mod envelope;
mod messages;
mod personal;
mod time;
pub mod validate;

pub use crate::error::Missing;
pub use amount::Amount;
pub use enums::{ArrivedStatus, CashierType, ChannelType, OutType, PayStatus, ProdCatalog};
pub use envelope::{CODE_OK, Envelope, MSG_OK, sign, sign_bytes};
pub use messages::*;
pub use personal::{PERSONAL_FIELDS, masked_body};
pub use time::{ReportedTime, WireTime, china_standard_time, format_timestamp, parse_timestamp};
