//! One libFuzzer binary for every target of `benches/src/fuzz_targets.rs`: the target is
//! named by `LEITWERK_FUZZ_TARGET`, the model it serves by `LEITWERK_FUZZ_MODEL` and the ONNX
//! Runtime library by `ORT_DYLIB_PATH`. `fuzz/run.sh` builds it with coverage instrumentation
//! and runs every target; a finding panics, which libFuzzer records as a crash.

#![no_main]

use std::sync::{Mutex, OnceLock};

#[path = "../../benches/src/fuzz_targets.rs"]
#[allow(dead_code)]
mod fuzz_targets;

fn target() -> &'static Mutex<fuzz_targets::Target> {
    static TARGET: OnceLock<Mutex<fuzz_targets::Target>> = OnceLock::new();
    TARGET.get_or_init(|| {
        let name = std::env::var("LEITWERK_FUZZ_TARGET").unwrap_or_default();
        let model = std::env::var("LEITWERK_FUZZ_MODEL").unwrap_or_default();
        let ort = std::env::var("ORT_DYLIB_PATH").unwrap_or_default();
        let bytes = std::fs::read(&model)
            .unwrap_or_else(|e| panic!("LEITWERK_FUZZ_MODEL {model:?}: {e}"));
        let all = fuzz_targets::targets(&bytes, std::path::Path::new(&ort))
            .unwrap_or_else(|e| panic!("the targets: {e}"));
        let names: Vec<&str> = all.iter().map(|(n, _, _)| *n).collect();
        let names = names.join(", ");
        let run = all
            .into_iter()
            .find(|(n, _, _)| *n == name)
            .map(|(_, _, run)| run)
            .unwrap_or_else(|| panic!("LEITWERK_FUZZ_TARGET {name:?} is none of: {names}"));
        Mutex::new(run)
    })
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let mut run = target().lock().unwrap_or_else(|p| p.into_inner());
    if let Err(finding) = run(data) {
        panic!("{finding}");
    }
});
