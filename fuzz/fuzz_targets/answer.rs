//! Any bytes as an API server's answer to a GET: an answer or an error.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = promfed::fuzzing::answer(data);
});
