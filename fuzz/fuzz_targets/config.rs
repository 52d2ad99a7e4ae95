//! Config parsing and validation: never panics, and a key never shows in `Debug`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use protopay_engine::Config;

fuzz_target!(|data: &[u8]| {
    if let Ok(config) = serde_json::from_slice::<Config>(data) {
        let _ = config.validate();
        let shown = format!("{config:?}");
        assert!(shown.contains("Md5Key(***)"));
    }
});
