//! Amount parsing: never panics; whatever parses formats with two places and parses back equal.
#![no_main]

use libfuzzer_sys::fuzz_target;
use protopay_engine::Amount;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    if let Ok(a) = Amount::parse(s) {
        let text = a.to_string();
        assert_eq!(text.split_once('.').map(|(_, f)| f.len()), Some(2));
        assert_eq!(Amount::parse(&text).ok(), Some(a));
    }
});
