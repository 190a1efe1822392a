#![no_main]
// The harness is momentd::fuzzing (shared with tests/fuzz_corpus.rs).
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = momentd::fuzzing::input_messages(data, momentd::Encoding::Protobuf);
});
