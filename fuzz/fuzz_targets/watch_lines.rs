//! Any bytes, cut anywhere, as a watch's stream of events.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    // The first bytes say where the stream is cut into reads.
    let (cuts, stream) = data.split_at(data.len().min(8));
    let mut at = 0;
    let cuts: Vec<usize> = cuts
        .iter()
        .map(|c| {
            at += usize::from(*c) * 8;
            at
        })
        .collect();
    let _ = promfed::fuzzing::watch_lines(stream, &cuts);
});
