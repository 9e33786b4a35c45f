//! The admin endpoint's HTTP request-head parser: never panics, and a complete head it
//! accepts lies within the bytes given and within the size limit.
#![no_main]

use isoswitch_net::admin::parse_request;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for max in [16usize, 256, 8192] {
        if let Ok(Some(head)) = parse_request(data, max) {
            assert!(head.head_len <= data.len().min(max));
            assert!(head.path.len() < head.head_len);
        }
    }
});
