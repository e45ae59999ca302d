//! One libFuzzer binary for every target of `benches/src/fuzz_targets.rs`: the target is
//! named by `LEITWERK_FUZZ_TARGET`, the model it serves by `LEITWERK_FUZZ_MODEL` and the ONNX
//! Runtime library by `ORT_DYLIB_PATH`. `benches/fuzz/run.sh` builds it with coverage instrumentation
//! and runs every target; a finding panics, which libFuzzer records as a crash.

#![no_main]

use std::cell::RefCell;

#[path = "../../src/fuzz_targets.rs"]
#[allow(dead_code)]
mod fuzz_targets;

/// The target named by `LEITWERK_FUZZ_TARGET`, made once.
fn make() -> fuzz_targets::Target {
    let name = std::env::var("LEITWERK_FUZZ_TARGET").unwrap_or_default();
    let model = std::env::var("LEITWERK_FUZZ_MODEL").unwrap_or_default();
    let ort = std::env::var("ORT_DYLIB_PATH").unwrap_or_default();
    let bytes =
        std::fs::read(&model).unwrap_or_else(|e| panic!("LEITWERK_FUZZ_MODEL {model:?}: {e}"));
    let all = fuzz_targets::targets(&bytes, std::path::Path::new(&ort))
        .unwrap_or_else(|e| panic!("the targets: {e}"));
    let names: Vec<&str> = all.iter().map(|(n, _, _)| *n).collect();
    let names = names.join(", ");
    all.into_iter()
        .find(|(n, _, _)| *n == name)
        .map(|(_, _, run)| run)
        .unwrap_or_else(|| panic!("LEITWERK_FUZZ_TARGET {name:?} is none of: {names}"))
}

thread_local! {
    // libFuzzer calls the target from one thread.
    static TARGET: RefCell<Option<fuzz_targets::Target>> = const { RefCell::new(None) };
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    TARGET.with(|t| {
        let mut t = t.borrow_mut();
        let run = t.get_or_insert_with(make);
        if let Err(finding) = run(data) {
            panic!("{finding}");
        }
    });
});
