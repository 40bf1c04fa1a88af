//! Any bytes as an exec plugin's ExecCredential and a TokenRequest answer.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = promfed::credential_fuzzing::credential_outputs(data);
});
