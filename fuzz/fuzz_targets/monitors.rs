//! Any bytes as ServiceMonitors and PodMonitors: decoded, made into jobs,
//! and the same jobs again from the state file they would be kept in.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Err(difference) = promfed::fuzzing::monitor_objects(data) {
        panic!("{difference}");
    }
});
