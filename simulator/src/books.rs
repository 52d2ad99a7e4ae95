//! The payment system's own books: protocols, orders and balances, kept independently of the
//! engine's ledger so that the two can catch each other's mistakes.

use chrono::{DateTime, FixedOffset, Utc};
use protopay_engine::wire::{
    Amount, ArrivedStatus, CashierType, ChannelType, InboundView, OutboundView, Outpay, PayStatus, Prepay,
    RemoteProtocol, WireTime,
};
use serde::Serialize;
use std::collections::BTreeMap;

/// A protocol and its balances, as the payment system keeps them.
#[derive(Debug, Clone)]
pub(crate) struct SimProtocol {
    pub trans_no: String,
    pub trans_desc: String,
    pub business_id: String,
    pub cashier_type: CashierType,
    pub create_time: WireTime,
    pub balances: Balances,
}

/// A protocol's balances.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Balances {
    /// `amount`: available.
    pub available: Amount,
    /// `onpassageAmount`: paid in, not yet arrived.
    pub in_transit: Amount,
    /// Accepted payouts not yet settled (not reported by `find`).
    pub reserved: Amount,
    /// `outAmount`: paid out (payouts and refunds).
    pub paid_out: Amount,
}

/// An inbound order at the payment system.
#[derive(Debug, Clone)]
pub(crate) struct SimInbound {
    pub request: Prepay,
    pub cashier_type: CashierType,
    pub pay_order_no: String,
    pub pos_code: Option<String>,
    pub cashier_url: Option<String>,
    pub status: PayStatus,
    pub arrived: bool,
    pub closed: bool,
    pub create_time: WireTime,
    pub finish_time: Option<WireTime>,
    pub arrive_time: Option<WireTime>,
}

/// One payout at the payment system. In no-dedupe mode one `outReqNo` can have several.
#[derive(Debug, Clone)]
pub(crate) struct SimOutbound {
    pub request: Outpay,
    pub pay_order_no: String,
    pub status: PayStatus,
    pub create_time: WireTime,
    pub finish_time: Option<WireTime>,
}

/// Everything the payment system holds.
#[derive(Debug, Default)]
pub(crate) struct Books {
    pub protocols: BTreeMap<String, SimProtocol>,
    pub inbound: BTreeMap<String, SimInbound>,
    pub outbound: BTreeMap<String, Vec<SimOutbound>>,
}

/// Why a money movement was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BooksError {
    /// A balance would go negative.
    #[error("balance would go negative")]
    Insufficient,
    /// A balance would pass the amount bound.
    #[error("amount out of range")]
    Overflow,
}

fn add(a: Amount, b: Amount) -> Result<Amount, BooksError> {
    a.checked_add(b).ok_or(BooksError::Overflow)
}

fn sub(a: Amount, b: Amount) -> Result<Amount, BooksError> {
    a.checked_sub(b).ok_or(BooksError::Insufficient)
}

impl Balances {
    /// Paid in: on its way.
    pub fn paid(&mut self, amount: Amount) -> Result<(), BooksError> {
        self.in_transit = add(self.in_transit, amount)?;
        Ok(())
    }

    /// Arrived: available.
    pub fn arrived(&mut self, amount: Amount) -> Result<(), BooksError> {
        let in_transit = sub(self.in_transit, amount)?;
        self.available = add(self.available, amount)?;
        self.in_transit = in_transit;
        Ok(())
    }

    /// A payout accepted: reserved apart from the available balance.
    pub fn reserve(&mut self, amount: Amount) -> Result<(), BooksError> {
        let available = sub(self.available, amount)?;
        self.reserved = add(self.reserved, amount)?;
        self.available = available;
        Ok(())
    }

    /// A payout settled: paid out on success, back to available on failure.
    pub fn settle(&mut self, amount: Amount, success: bool) -> Result<(), BooksError> {
        let reserved = sub(self.reserved, amount)?;
        if success {
            self.paid_out = add(self.paid_out, amount)?;
        } else {
            self.available = add(self.available, amount)?;
        }
        self.reserved = reserved;
        Ok(())
    }
}

/// Wall time in the payment system's zone.
pub(crate) fn wire_time(now: DateTime<Utc>, zone: FixedOffset) -> WireTime {
    WireTime::from_instant(now, zone)
}

impl SimProtocol {
    /// The protocol view.
    pub(crate) fn view(&self, app_id: &str) -> RemoteProtocol {
        RemoteProtocol {
            trans_no: self.trans_no.clone(),
            trans_desc: Some(self.trans_desc.clone()),
            app_id: Some(app_id.to_owned()),
            business_id: Some(self.business_id.clone()),
            business_desc: Some(format!("商户{}", self.business_id)),
            channel_type: Some(ChannelType::Lft),
            amount: Some(self.balances.available),
            onpassage_amount: Some(self.balances.in_transit),
            out_amount: Some(self.balances.paid_out),
            create_time: Some(self.create_time.into()),
            cashier_type: Some(self.cashier_type.clone()),
        }
    }
}

impl SimInbound {
    /// The inbound view, as replies and callbacks carry it.
    pub(crate) fn view(&self, app_id: &str) -> InboundView {
        let paid = self.status == PayStatus::Success;
        InboundView {
            trans_no: Some(self.request.trans_no.clone()),
            app_id: Some(app_id.to_owned()),
            channel_type: Some(ChannelType::Lft),
            amount: Some(self.request.amount),
            out_req_no: Some(self.request.out_req_no.clone()),
            pos_code: self.pos_code.clone(),
            pay_order_no: Some(self.pay_order_no.clone()),
            pay_status: Some(self.status.clone()),
            arrived_status: Some(if self.arrived {
                ArrivedStatus::Arrived
            } else {
                ArrivedStatus::NotArrived
            }),
            pay_finish_time: self.finish_time.map(Into::into),
            pay_arrive_time: self.arrive_time.map(Into::into),
            create_time: Some(self.create_time.into()),
            card_num: paid.then(|| protopay_engine::Sensitive::new("6222020200112233445")),
            issuing_bank: paid.then(|| "ICBC".to_owned()),
            issuing_bank_zh: paid.then(|| "中国工商银行".to_owned()),
            channel_return_code: self.finish_time.map(|_| if paid { "00" } else { "51" }.to_owned()),
            channel_return_msg: self
                .finish_time
                .map(|_| if paid { "交易成功" } else { "余额不足" }.to_owned()),
            contract_num: self.request.contract_num.clone(),
            cashier_url: self.cashier_url.clone(),
            qp_user_name: self.request.qp_user_name.clone(),
            qp_cert_number: self.request.qp_cert_number.clone(),
            cashier_type: Some(self.cashier_type.clone()),
        }
    }
}

impl SimOutbound {
    /// The outbound view.
    pub(crate) fn view(&self, app_id: &str) -> OutboundView {
        let r = &self.request;
        OutboundView {
            trans_no: Some(r.trans_no.clone()),
            app_id: Some(app_id.to_owned()),
            channel_subacc_code: Some(format!("SA{}", r.trans_no)),
            channel_subacc_custid: Some(format!("CU{}", r.trans_no)),
            amount: Some(r.amount),
            out_req_no: Some(r.out_req_no.clone()),
            pay_order_no: Some(self.pay_order_no.clone()),
            channel_type: Some(ChannelType::Lft),
            bank_acc_name: Some(r.bank_acc_name.clone()),
            bank_acc_num: Some(r.bank_acc_num.clone()),
            bank_name: Some(r.bank_name.clone()),
            bank_cnaps: Some(r.bank_cnaps.clone()),
            out_type: Some(r.out_type.clone()),
            remark: r.remark.clone(),
            pay_status: Some(self.status.clone()),
            pay_finish_time: self.finish_time.map(Into::into),
            create_time: Some(self.create_time.into()),
            channel_return_code: self.finish_time.map(|_| "00".to_owned()),
            channel_return_msg: self.finish_time.map(|_| "处理完成".to_owned()),
        }
    }
}

/// A small built-in table of real branch names and their 12-digit CNAPS numbers.
pub(crate) const CNAPS: &[(&str, &str)] = &[
    ("中国工商银行股份有限公司北京海淀支行", "102100000072"),
    ("中国工商银行股份有限公司北京中关村支行", "102100000030"),
    ("中国农业银行股份有限公司北京海淀支行", "103100000026"),
    ("中国银行股份有限公司北京海淀支行", "104100000045"),
    ("中国建设银行股份有限公司北京海淀支行", "105100000017"),
    ("招商银行股份有限公司北京分行", "308100005019"),
    ("中国工商银行股份有限公司上海市分行营业部", "102290000011"),
    ("中国建设银行股份有限公司上海浦东分行", "105290036005"),
    ("中国银行股份有限公司深圳分行", "104584000003"),
    ("招商银行股份有限公司深圳分行", "308584000013"),
];

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> Amount {
        Amount::parse(s).unwrap()
    }

    #[test]
    fn balances_move_like_the_real_ones() {
        let mut b = Balances::default();
        b.paid(a("100")).unwrap();
        b.arrived(a("100")).unwrap();
        b.reserve(a("60")).unwrap();
        assert_eq!(b.reserve(a("41")), Err(BooksError::Insufficient));
        b.settle(a("60"), false).unwrap();
        b.reserve(a("100")).unwrap();
        b.settle(a("100"), true).unwrap();
        assert_eq!(
            (b.available, b.in_transit, b.reserved, b.paid_out),
            (a("0"), a("0"), a("0"), a("100"))
        );
    }
}
