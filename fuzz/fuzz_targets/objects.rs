//! Any bytes as each list and object promfed decodes.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = promfed::fuzzing::objects(data);
});
