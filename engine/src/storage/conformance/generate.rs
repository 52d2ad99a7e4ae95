//! Generated records for the round-trip rule: every field of every stored type takes the
//! awkward values (absent and empty apart, unicode, quotes, long text, unknown enum values,
//! every status), deterministically from a seed.

use super::t;
use crate::Sensitive;
use crate::domain::{Inbound, Order, OrderKind, Outbound, Protocol};
use crate::event::{Event, EventKind};
use crate::observation::Source;
use crate::storage::Orphan;
use crate::wire::{Amount, CallbackKind, CashierType, ChannelType, OutType, Outpay, Prepay};
use chrono::{DateTime, Utc};

/// A small deterministic generator of awkward field values (SplitMix64).
pub(super) struct Gen(pub(super) u64);

impl Gen {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from.get((self.next() % from.len().max(1) as u64) as usize)
            .copied()
            .unwrap_or_default()
    }

    fn text(&mut self) -> String {
        let long = "长".repeat(300);
        let texts = [
            "",
            " ",
            "plain",
            "中国工商银行 海淀支行",
            "quote\" back\\slash",
            "line\nbreak",
            "\u{0}nul",
            &long,
        ];
        self.pick(&texts).to_owned()
    }

    fn opt_text(&mut self) -> Option<String> {
        if self.next().is_multiple_of(3) {
            None
        } else {
            Some(self.text())
        }
    }

    fn sensitive(&mut self) -> Option<Sensitive> {
        self.opt_text().map(Sensitive::new)
    }

    fn amount(&mut self) -> Amount {
        Amount::from_fen(self.next() % 10_000_000_000).unwrap_or(Amount::ZERO)
    }

    fn opt_amount(&mut self) -> Option<Amount> {
        if self.next().is_multiple_of(3) {
            None
        } else {
            Some(self.amount())
        }
    }

    fn time(&mut self) -> Option<crate::wire::ReportedTime> {
        let times = [
            "2026-11-27 10:10:10",
            "2026-11-27 10:10:10.0",
            "",
            "tomorrow",
            "20261127101010",
        ];
        if self.next().is_multiple_of(3) {
            None
        } else {
            Some(crate::wire::ReportedTime::parse(self.pick(&times)))
        }
    }

    fn when(&mut self) -> DateTime<Utc> {
        t((self.next() % 100_000_000) as i64 - 50_000_000)
    }

    fn status(&mut self) -> crate::domain::Status {
        use crate::domain::Status::*;
        [Requested, Reserved, Submitted, Unpaid, Processing, Success, Failure][(self.next() % 7) as usize]
    }

    fn flag(&mut self) -> bool {
        self.next().is_multiple_of(2)
    }

    fn attempts(&mut self) -> crate::domain::Attempts {
        let sends = (self.next() % 9) as u32;
        crate::domain::Attempts {
            sends,
            last_sent_at: if self.flag() { Some(self.when()) } else { None },
            quiet_polls: (self.next() % 40) as u32,
            needs_attention: self.flag(),
            unsent: (self.next() % u64::from(sends + 1)) as u32,
            double_payment_suspected: self.next().is_multiple_of(5),
            decided_by_person: self.next().is_multiple_of(7),
        }
    }

    fn refusal(&mut self) -> Option<crate::domain::Refusal> {
        self.flag().then(|| crate::domain::Refusal {
            code: self.text(),
            msg: self.text(),
        })
    }

    pub(super) fn protocol(&mut self, seed: u64) -> Protocol {
        let balances = crate::domain::RemoteBalances {
            available: self.amount(),
            in_transit: self.amount(),
            paid_out: self.amount(),
            seen_at: self.when(),
        };
        Protocol {
            trans_no: format!("T-rt-{seed}"),
            business_id: self.text(),
            trans_desc: self.text(),
            channel_type: ChannelType::from_wire(self.pick(&["LFT", "", "NEW"])),
            cashier_type: CashierType::from_wire(self.pick(&["POS", "QP", "ONLINEBANK"])),
            create_time: self.time(),
            remote: if self.flag() { Some(balances) } else { None },
            ledger: crate::ledger::Ledger {
                in_transit: self.amount(),
                available: self.amount(),
                reserved: self.amount(),
                paid_out: self.amount(),
                refunded: self.amount(),
                opening: self.amount(),
            },
        }
    }

    pub(super) fn inbound(&mut self, trans_no: &str, seed: u64) -> Order {
        use crate::wire::{ArrivedStatus, InboundView, PayStatus, ProdCatalog};
        let request = Prepay {
            trans_no: trans_no.into(),
            out_req_no: format!("APP001-rt-in-{seed}"),
            amount: self.amount(),
            out_success_notify_url: self.text(),
            out_arrived_notify_url: self.opt_text(),
            prod_catalog: self.opt_text().map(|s| ProdCatalog::from_wire(&s)),
            contract_num: self.opt_text(),
            qp_user_name: self.sensitive(),
            qp_cert_number: self.sensitive(),
            return_url: self.opt_text(),
        };
        let remote = InboundView {
            trans_no: self.opt_text(),
            app_id: self.opt_text(),
            channel_type: self.opt_text().map(|s| ChannelType::from_wire(&s)),
            amount: self.opt_amount(),
            out_req_no: self.opt_text(),
            pos_code: self.opt_text(),
            pay_order_no: self.opt_text(),
            pay_status: self.opt_text().map(|s| PayStatus::from_wire(&s)),
            arrived_status: self.opt_text().map(|s| ArrivedStatus::from_wire(&s)),
            pay_finish_time: self.time(),
            pay_arrive_time: self.time(),
            create_time: self.time(),
            card_num: self.sensitive(),
            issuing_bank: self.opt_text(),
            issuing_bank_zh: self.opt_text(),
            channel_return_code: self.opt_text(),
            channel_return_msg: self.opt_text(),
            contract_num: self.opt_text(),
            cashier_url: self.opt_text(),
            qp_user_name: self.sensitive(),
            qp_cert_number: self.sensitive(),
            cashier_type: self.opt_text().map(|s| CashierType::from_wire(&s)),
        };
        let (app_id, status) = (self.text(), self.status());
        let kind = OrderKind::Inbound(Inbound {
            request,
            arrived: self.flag(),
            closed: self.flag(),
            remote,
        });
        Order {
            app_id,
            status,
            refusal: self.refusal(),
            attempts: self.attempts(),
            kind,
        }
    }

    pub(super) fn outbound(&mut self, trans_no: &str, seed: u64) -> Order {
        use crate::wire::{OutboundView, PayStatus};
        let request = Outpay {
            trans_no: trans_no.into(),
            out_req_no: format!("APP001-rt-out-{seed}"),
            amount: self.amount(),
            channel_type: ChannelType::from_wire(self.pick(&["LFT", ""])),
            out_notify_url: self.text(),
            bank_acc_name: Sensitive::new(self.text()),
            bank_acc_num: Sensitive::new(self.text()),
            bank_name: self.text(),
            bank_cnaps: self.text(),
            out_type: OutType::from_wire(self.pick(&["OUT", "REFUND", "SPLIT"])),
            remark: self.opt_text(),
        };
        let remote = OutboundView {
            trans_no: self.opt_text(),
            app_id: self.opt_text(),
            channel_subacc_code: self.opt_text(),
            channel_subacc_custid: self.opt_text(),
            amount: self.opt_amount(),
            out_req_no: self.opt_text(),
            pay_order_no: self.opt_text(),
            channel_type: self.opt_text().map(|s| ChannelType::from_wire(&s)),
            bank_acc_name: self.sensitive(),
            bank_acc_num: self.sensitive(),
            bank_name: self.opt_text(),
            bank_cnaps: self.opt_text(),
            out_type: self.opt_text().map(|s| OutType::from_wire(&s)),
            remark: self.opt_text(),
            pay_status: self.opt_text().map(|s| PayStatus::from_wire(&s)),
            pay_finish_time: self.time(),
            create_time: self.time(),
            channel_return_code: self.opt_text(),
            channel_return_msg: self.opt_text(),
        };
        Order {
            app_id: self.text(),
            status: self.status(),
            refusal: self.refusal(),
            attempts: self.attempts(),
            kind: OrderKind::Outbound(Outbound { request, remote }),
        }
    }

    pub(super) fn event(&mut self, seed: u64) -> Event {
        let kind = match self.next() % 5 {
            0 => EventKind::ProtocolCreateRequested { attempt: self.text() },
            1 => EventKind::OperatorResolved {
                status: self.status(),
                note: self.text(),
                by: self.flag().then(|| self.text()),
            },
            2 => EventKind::Anomaly(crate::event::Anomaly::UnknownEnumValue {
                field: self.text(),
                value: self.text(),
            }),
            3 => EventKind::OutboundFailed {
                refusal: self.refusal(),
            },
            _ => EventKind::Pending { status: self.status() },
        };
        Event {
            seq: 0,
            at: self.when(),
            trans_no: self.opt_text(),
            out_req_no: self.flag().then(|| format!("APP001-rt-{seed}")),
            source: [
                Source::Poll,
                Source::Reply,
                Source::Engine,
                Source::Operator,
                Source::Callback(CallbackKind::Outbound),
            ][(self.next() % 5) as usize],
            kind,
        }
    }

    pub(super) fn orphan(&mut self, seed: u64) -> Orphan {
        Orphan {
            kind: CallbackKind::ALL[(self.next() % 3) as usize],
            out_req_no: self.opt_text(),
            sign: format!("sign-rt-{seed}"),
            data: self.text(),
            received_at: self.when(),
        }
    }
}
