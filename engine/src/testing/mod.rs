//! Test support shared by every crate's tests, benchmarks and fuzz targets (feature
//! `test-util`): what would otherwise be copied into each of them.

mod intercepted;

pub use intercepted::{Hooks, Injected, Intercepted};

use crate::secret::Sensitive;
use crate::transport::{Transport, TransportError};
use crate::wire::{Amount, Endpoint, Envelope, OutType};
use crate::{NewOutbound, Payee, Result};

/// A transport whose every call fails before it is sent: for tests of what the engine does
/// without the payment system (callbacks, storage, the ledger).
#[derive(Debug, Clone, Copy, Default)]
pub struct Offline;

#[async_trait::async_trait]
impl Transport for Offline {
    async fn call(&self, _: Endpoint, _: &Envelope) -> std::result::Result<Vec<u8>, TransportError> {
        Err(TransportError::NotDelivered {
            reason: "offline".into(),
        })
    }
}

/// A payout or refund of `amount` from `trans_no` to a fixed payee (a real CNAPS branch).
pub fn payee(trans_no: &str, out_req_no: Option<&str>, amount: &str, out_type: OutType) -> Result<NewOutbound> {
    let payee = Payee {
        name: Sensitive::new("李四"),
        account: Sensitive::new("6222020200112233445"),
        bank_name: "中国工商银行股份有限公司北京海淀支行".into(),
        bank_cnaps: "102100000072".into(),
    };
    let amount = Amount::parse(amount)?;
    let outbound = match out_type {
        OutType::Refund => NewOutbound::refund(trans_no, amount, payee),
        _ => NewOutbound {
            out_type,
            ..NewOutbound::payout(trans_no, amount, payee)
        },
    };
    Ok(NewOutbound {
        out_req_no: out_req_no.map(str::to_owned),
        ..outbound
    })
}

/// Whether a test that needs `what`, which this machine lacks (`why`), is skipped. On a
/// newcomer's machine it is, and says so straight to the terminal — past the test harness's
/// capture, so that a passing run still shows what it did not run — with `how` to run it.
/// With `PROTOPAY_REQUIRE_ALL=1` (CI) nothing is skipped: the test fails, saying the same.
pub fn skip_without(what: &str, why: &str, how: &str) -> bool {
    use std::io::Write;
    let message = format!("{what} unavailable ({why}); to run these tests: {how}");
    if std::env::var("PROTOPAY_REQUIRE_ALL").is_ok_and(|v| v == "1") {
        panic!("PROTOPAY_REQUIRE_ALL=1 and {message}");
    }
    // The harness names each test's thread after the test.
    let test = std::thread::current().name().unwrap_or("a test").to_owned();
    let _ = writeln!(std::io::stderr(), "SKIPPED {test}: {message}");
    true
}

/// The due-time invariant, audited from outside: every open order of `orders` is in the due
/// index of `store`, and no closed one is. One sentence per order that breaks it (empty when
/// all hold). The simulations run it after their steps.
pub async fn due_time_violations<'a>(
    store: &dyn crate::storage::Storage,
    orders: impl IntoIterator<Item = &'a crate::domain::Order>,
) -> Result<Vec<String>> {
    let due: std::collections::BTreeSet<String> = store
        .due(chrono::DateTime::<chrono::Utc>::MAX_UTC, usize::MAX)
        .await?
        .into_iter()
        .map(|d| d.out_req_no)
        .collect();
    Ok(orders
        .into_iter()
        .filter(|o| o.is_open() != due.contains(o.out_req_no()))
        .map(|o| {
            let is = if due.contains(o.out_req_no()) { "is" } else { "is not" };
            format!("{} is {} but {is} in the due index", o.out_req_no(), o.state_label())
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::due_time_violations;
    use crate::storage::conformance::sample_inbound;
    use crate::storage::{Batch, MemoryStorage, Put, Storage};

    #[tokio::test]
    async fn an_open_order_without_a_due_time_is_reported() {
        let store = MemoryStorage::new();
        let order = sample_inbound("T1", "APP001-1", 100);
        let put = |schedule| Batch {
            orders: vec![Put {
                expected: None,
                value: order.clone(),
            }],
            schedule,
            ..Default::default()
        };
        store.commit(put(vec![])).await.unwrap();
        let found = due_time_violations(&store, [&order]).await.unwrap();
        assert_eq!(found, ["APP001-1 is REQUESTED but is not in the due index"]);
        let scheduled = MemoryStorage::new();
        scheduled
            .commit(put(vec![("APP001-1".into(), Some(chrono::Utc::now()))]))
            .await
            .unwrap();
        assert!(due_time_violations(&scheduled, [&order]).await.unwrap().is_empty());
    }
}
