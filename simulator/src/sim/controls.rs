//! Test controls: the payer pays, funds arrive, a payout settles.

use super::{Sim, SimError, State};
use crate::books::{BooksError, wire_time};
use protopay_engine::wire::PayStatus;

impl Sim {
    /// Run a control on the books, then wake the background task (callbacks may be due).
    fn control(&self, change: impl FnOnce(&mut State) -> Result<(), SimError>) -> Result<(), SimError> {
        change(&mut self.lock())?;
        self.wake.notify_one();
        Ok(())
    }

    /// The payer pays (`SUCCESS`) or the payment fails (`FAILURE`). Works on a closed POS
    /// code too: a payer may have paid just before the close.
    pub fn pay(&self, out_req_no: &str, success: bool) -> Result<(), SimError> {
        self.control(|s| self.do_pay(s, out_req_no, success))
    }

    pub(super) fn do_pay(&self, s: &mut State, out_req_no: &str, success: bool) -> Result<(), SimError> {
        let now = wire_time(self.now(), self.zone);
        let o = s
            .books
            .inbound
            .get_mut(out_req_no)
            .ok_or_else(|| SimError::UnknownOrder(out_req_no.into()))?;
        if matches!(o.status, PayStatus::Success | PayStatus::Failure) {
            return Err(SimError::InvalidState(out_req_no.into(), "be paid"));
        }
        if success {
            let p = s
                .books
                .protocols
                .get_mut(&o.request.trans_no)
                .ok_or(SimError::Books(BooksError::Overflow))?;
            p.balances.paid(o.request.amount)?;
        }
        o.status = if success {
            PayStatus::Success
        } else {
            PayStatus::Failure
        };
        o.finish_time = Some(now);
        let (url, body) = (o.request.out_success_notify_url.clone(), o.view(&self.config.app_id));
        self.enqueue(s, url, &body);
        Ok(())
    }

    /// Paid-in money arrives in the protocol's available balance.
    pub fn arrive(&self, out_req_no: &str) -> Result<(), SimError> {
        self.control(|s| self.do_arrive(s, out_req_no))
    }

    pub(super) fn do_arrive(&self, s: &mut State, out_req_no: &str) -> Result<(), SimError> {
        let now = wire_time(self.now(), self.zone);
        let o = s
            .books
            .inbound
            .get_mut(out_req_no)
            .ok_or_else(|| SimError::UnknownOrder(out_req_no.into()))?;
        if o.status != PayStatus::Success || o.arrived {
            return Err(SimError::InvalidState(out_req_no.into(), "arrive"));
        }
        let p = s
            .books
            .protocols
            .get_mut(&o.request.trans_no)
            .ok_or(SimError::Books(BooksError::Overflow))?;
        p.balances.arrived(o.request.amount)?;
        o.arrived = true;
        o.arrive_time = Some(now);
        if let Some(url) = o.request.out_arrived_notify_url.clone() {
            let body = o.view(&self.config.app_id);
            self.enqueue(s, url, &body);
        }
        Ok(())
    }

    /// A payout settles: `SUCCESS` (money out) or `FAILURE` (back to available). Every payout
    /// of the `outReqNo` that is still processing settles (more than one only in no-dedupe mode).
    pub fn settle(&self, out_req_no: &str, success: bool) -> Result<(), SimError> {
        self.control(|s| self.do_settle(s, out_req_no, success))
    }

    pub(super) fn do_settle(&self, s: &mut State, out_req_no: &str, success: bool) -> Result<(), SimError> {
        let now = wire_time(self.now(), self.zone);
        let app_id = self.config.app_id.clone();
        let payouts = s
            .books
            .outbound
            .get_mut(out_req_no)
            .ok_or_else(|| SimError::UnknownOrder(out_req_no.into()))?;
        let mut callbacks = Vec::new();
        for o in payouts.iter_mut().filter(|o| o.status == PayStatus::Processing) {
            let p = s
                .books
                .protocols
                .get_mut(&o.request.trans_no)
                .ok_or(SimError::Books(BooksError::Overflow))?;
            p.balances.settle(o.request.amount, success)?;
            o.status = if success {
                PayStatus::Success
            } else {
                PayStatus::Failure
            };
            o.finish_time = Some(now);
            callbacks.push((o.request.out_notify_url.clone(), o.view(&app_id)));
        }
        if callbacks.is_empty() {
            return Err(SimError::InvalidState(out_req_no.into(), "settle"));
        }
        for (url, view) in callbacks {
            self.enqueue(s, url, &view);
        }
        Ok(())
    }
}
