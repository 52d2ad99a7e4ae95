//! A shared store's notification payload, which anyone allowed to connect can send: it never
//! panics, and what it reads as writes back to a payload that reads the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use protopay_engine::storage::Announced;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    let announced = Announced::from_payload(s);
    assert_eq!(Announced::from_payload(&announced.to_payload()), announced);
});
