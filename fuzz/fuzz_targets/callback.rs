//! Every callback kind through `Engine::handle_callback` on `MemoryStorage`, with a protocol
//! and orders in place: never panics; a refused body changes nothing; the ledger invariants
//! hold whatever was accepted.
#![no_main]

use libfuzzer_sys::fuzz_target;
use protopay_engine::storage::{Batch, MemoryStorage, Put, Storage, conformance};
use protopay_engine::testing::Offline;
use protopay_engine::wire::CallbackKind;
use protopay_engine::{Config, Engine, Md5Key};
use std::sync::OnceLock;

struct World {
    rt: tokio::runtime::Runtime,
    engine: Engine,
    storage: MemoryStorage,
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("runtime");
        let storage = MemoryStorage::new();
        let engine = rt.block_on(async {
            let mut orders = Vec::new();
            for i in 0..4 {
                let mut inbound = conformance::sample_inbound("T1", &format!("APP001-i{i}"), 10_000);
                if let (0, protopay_engine::OrderKind::Inbound(o)) = (i % 2, &mut inbound.kind) {
                    o.arrived = true;
                    inbound.status = protopay_engine::Status::Success;
                }
                orders.push(inbound);
                orders.push(conformance::sample_outbound("T1", &format!("APP001-o{i}"), 100));
            }
            let mut protocol = conformance::sample_protocol("T1");
            protocol.ledger = protopay_engine::ledger::expected(protopay_engine::Amount::ZERO, orders.iter())
                .expect("a consistent seed");
            let orders = orders.into_iter().map(|value| Put { expected: None, value }).collect();
            storage
                .commit(Batch {
                    protocols: vec![Put {
                        expected: None,
                        value: protocol,
                    }],
                    orders,
                    ..Default::default()
                })
                .await
                .expect("seed");
            let config = Config::new(
                "APP001",
                Md5Key::new("k3y"),
                "http://pay.invalid",
                "http://host.invalid/n",
            );
            Engine::builder(config)
                .storage(storage.clone())
                .transport(Offline)
                .build()
                .await
                .expect("engine")
        });
        World { rt, engine, storage }
    })
}

fuzz_target!(|input: &[u8]| {
    let Some((&selector, body)) = input.split_first() else {
        return;
    };
    let kind = CallbackKind::ALL[usize::from(selector) % 3];
    let w = world();
    w.rt.block_on(async {
        let before = w.storage.last_seq().await.expect("seq");
        let reply = w.engine.handle_callback(kind, body).await;
        if !reply.is_success() {
            assert_eq!(
                w.storage.last_seq().await.expect("seq"),
                before,
                "a refused callback wrote events"
            );
        }
        let protocol = w.storage.protocol("T1").await.expect("read").expect("protocol").value;
        let orders: Vec<_> = w
            .storage
            .orders_of("T1")
            .await
            .expect("orders")
            .into_iter()
            .map(|o| o.value)
            .collect();
        protopay_engine::ledger::check(&protocol.ledger, orders.iter()).expect("ledger invariants");
    });
});
