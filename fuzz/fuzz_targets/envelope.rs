//! Envelope decode + verify + every reply/callback `data` decode: never panics, and a
//! verified envelope re-encodes to one that verifies again.
#![no_main]

use libfuzzer_sys::fuzz_target;
use protopay_engine::Md5Key;
use protopay_engine::wire::{CnapsEntry, Envelope, InboundView, OutboundView, PosCloseResult, RemoteProtocol};

fuzz_target!(|body: &[u8]| {
    let key = Md5Key::new("k3y");
    let Ok(env) = Envelope::decode(body) else { return };
    if env.verify(&key).is_ok() {
        let again = Envelope::decode(env.to_json().as_bytes()).expect("our own encoding decodes");
        assert!(again.verify(&key).is_ok(), "re-encoded envelope must verify");
    }
    if let Ok(data) = env.reply_data() {
        let _ = Envelope::decode_data::<RemoteProtocol>(data);
        let _ = Envelope::decode_data::<InboundView>(data);
        let _ = Envelope::decode_data::<OutboundView>(data);
        let _ = Envelope::decode_data::<PosCloseResult>(data);
        let _ = Envelope::decode_data::<Vec<CnapsEntry>>(data);
    }
});
