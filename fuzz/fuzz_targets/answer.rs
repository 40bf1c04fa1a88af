//! Any bytes as an API server's answer to a GET: an answer or an error,
//! and the same one from hyper (lists) and promfed's framing (watches)
//! wherever both read it whole.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Err(difference) = promfed::fuzzing::framings_agree(data) {
        panic!("{difference}");
    }
});
