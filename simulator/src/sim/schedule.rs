//! The seeded auto schedule: orders move along by themselves, reproducibly.

use super::{Action, Sim, State};
use protopay_engine::wire::PayStatus;

impl Sim {
    pub(super) fn schedule(&self, s: &mut State, action: Action) {
        let (lo, hi) = self.config.auto_delay_ms;
        let delay = s.rng.range(lo, hi);
        let at = self.now() + chrono::Duration::milliseconds(i64::try_from(delay).unwrap_or(i64::MAX));
        let n = self.next_number(s);
        s.timers.push((at, n, action));
    }

    /// Run every scheduled step that is due (auto mode).
    pub fn tick(&self) {
        let now = self.now();
        let mut s = self.lock();
        s.timers.sort_by_key(|(at, n, _)| (*at, *n));
        let due = s.timers.iter().take_while(|(at, _, _)| *at <= now).count();
        let fired: Vec<Action> = s.timers.drain(..due).map(|(_, _, a)| a).collect();
        for action in fired {
            // A step that no longer applies (the order was moved by hand) is skipped.
            let _ = match action {
                Action::Processing(key) => {
                    if let Some(o) = s.books.inbound.get_mut(&key).filter(|o| o.status == PayStatus::Unpaid) {
                        o.status = PayStatus::Processing;
                    }
                    let ok = s.rng.unit() >= self.config.auto_failure_rate;
                    self.schedule(&mut s, Action::Pay(key, ok));
                    Ok(())
                }
                Action::Pay(key, ok) => {
                    let r = self.do_pay(&mut s, &key, ok);
                    if ok && r.is_ok() {
                        self.schedule(&mut s, Action::Arrive(key));
                    }
                    r
                }
                Action::Arrive(key) => self.do_arrive(&mut s, &key),
                Action::Settle(key, ok) => self.do_settle(&mut s, &key, ok),
            };
        }
    }
}
