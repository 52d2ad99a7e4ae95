//! Time parsing: the envelope timestamp and the times inside `data` never panic, and what
//! parses formats back to the same text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use protopay_engine::wire::{WireTime, china_standard_time, format_timestamp, parse_timestamp};

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    if let Ok(t) = parse_timestamp(s, china_standard_time()) {
        assert_eq!(format_timestamp(t, china_standard_time()), s);
    }
    if let Ok(w) = WireTime::parse(s) {
        assert_eq!(WireTime::parse(&w.to_string()).ok(), Some(w));
    }
});
