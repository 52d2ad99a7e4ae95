//! The wire's enumerations. Each keeps values it does not know as data
//! (`Unknown(String)`), so a new value from the payment system never fails a decode; the
//! state machine raises an anomaly for it instead of moving.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

macro_rules! wire_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $wire:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
            /// A value this version does not know, kept as received.
            Unknown(String),
        }

        impl $name {
            /// The wire text.
            pub fn as_str(&self) -> &str {
                match self {
                    $($name::$variant => $wire,)+
                    $name::Unknown(s) => s,
                }
            }

            /// Decode wire text; unknown text becomes `Unknown`.
            pub fn from_wire(s: &str) -> Self {
                match s {
                    $($wire => $name::$variant,)+
                    other => $name::Unknown(other.to_owned()),
                }
            }

            /// Whether this is a value this version knows.
            pub fn is_known(&self) -> bool {
                !matches!(self, $name::Unknown(_))
            }
        }

        impl std::str::FromStr for $name {
            type Err = std::convert::Infallible;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Ok($name::from_wire(s))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self {
                    $name::Unknown(s) => write!(f, "Unknown({s:?})"),
                    known => f.write_str(known.as_str()),
                }
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                Ok($name::from_wire(&s))
            }
        }
    };
}

wire_enum! {
    /// `payStatus`: where a payment stands at the payment system.
    PayStatus {
        /// Created, not paid.
        Unpaid = "UNPAID",
        /// In progress.
        Processing = "PROCESSING",
        /// Paid (terminal).
        Success = "SUCCESS",
        /// Failed (terminal).
        Failure = "FAILURE",
    }
}

wire_enum! {
    /// `arrivedStatus`: whether paid-in money has reached the protocol's available balance.
    ArrivedStatus {
        /// Not arrived.
        NotArrived = "01",
        /// Arrived.
        Arrived = "02",
    }
}

wire_enum! {
    /// `cashierType`: how the payer pays in.
    CashierType {
        /// Quick pay: a cashier web page.
        Qp = "QP",
        /// A six-digit code typed into a POS terminal (the default).
        Pos = "POS",
    }
}

wire_enum! {
    /// `outType`: what an outbound order is.
    OutType {
        /// A payout to the payee.
        Out = "OUT",
        /// A refund to the payer.
        Refund = "REFUND",
    }
}

wire_enum! {
    /// `prodCatalog`: which cards a POS payment accepts.
    ProdCatalog {
        /// Debit cards only.
        DebitOnly = "01",
        /// Debit and credit cards.
        DebitAndCredit = "02",
    }
}

wire_enum! {
    /// `channelType`: the custody channel.
    ChannelType {
        /// 理房通, the only channel today.
        Lft = "LFT",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_values_are_kept() {
        let c: CashierType = serde_json::from_str("\"ONLINEBANK\"").unwrap();
        assert_eq!(c, CashierType::Unknown("ONLINEBANK".into()));
        assert!(!c.is_known());
        assert_eq!(serde_json::to_string(&c).unwrap(), "\"ONLINEBANK\"");
        assert_eq!(
            serde_json::from_str::<PayStatus>("\"SUCCESS\"").unwrap(),
            PayStatus::Success
        );
    }
}
