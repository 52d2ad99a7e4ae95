//! Time parsing: the envelope timestamp and the times inside `data` never panic, and what
//! parses formats back to the same text; a reported (informative) time keeps its text exactly
//! and reads the strict format the same way `WireTime` does.
#![no_main]

use libfuzzer_sys::fuzz_target;
use protopay_engine::wire::{ReportedTime, WireTime, china_standard_time, format_timestamp, parse_timestamp};

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    if let Ok(t) = parse_timestamp(s, china_standard_time()) {
        assert_eq!(format_timestamp(t, china_standard_time()), s);
    }
    let reported = ReportedTime::parse(s);
    assert_eq!(reported.raw(), s);
    if let Ok(w) = WireTime::parse(s) {
        assert_eq!(WireTime::parse(&w.to_string()).ok(), Some(w));
        assert_eq!(reported.time(), Some(w));
    }
});
