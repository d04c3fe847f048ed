//! Untrusted payment headers and facilitator bodies: decoding must never panic, and whatever
//! decodes must survive re-encoding unchanged.
//!
//! Run: `cargo +nightly fuzz run payment_headers fuzz/corpus/payment_headers`

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    x402_proto::fuzzing::decode_untrusted_headers(data);
});
