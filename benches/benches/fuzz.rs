//! Structured mutation fuzzing of every target in `leitwerk_benches::fuzz_targets` (the OIP v2
//! JSON infer body through the REST router with a real ONNX model, the gRPC infer message,
//! the retrieval query, the chat-completion request, the FeatureSet filter parser, PromQL
//! template checking and rendering, every spec validation function, the LeitwerkPolicy rules
//! and defaults). The coverage-guided runner of the same targets is libFuzzer (`benches/fuzz/run.sh`);
//! this one needs no instrumented build and explores JSON structure and large inputs: each
//! target starts from valid seeds and mutates them (values replaced by other types, extreme
//! numbers, long and odd strings, members dropped or duplicated; bytes: flips, cuts,
//! insertions), plus fully random inputs. A panic is a crash, an execution over one second a
//! hang; both are written to `benches/fuzz-found/` to become regression tests. Run on demand
//! (see `benches/README.md`):
//!
//! ```sh
//! cargo bench --workspace --profile dev --bench fuzz -- 10000000
//! cargo bench --workspace --profile dev --bench fuzz -- --export DIR   # model and seeds for benches/fuzz/run.sh
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark: a failed setup aborts the run

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use leitwerk_benches::fuzz_targets::{root, targets};
use leitwerk_benches::mutate::input;
use leitwerk_trainer::onnx::{Head, export};
use leitwerk_trainer::preprocess::{Columns, Encoder};
use rand::{RngExt, SeedableRng, rngs::StdRng};

/// The lead-scoring graph the server targets serve: `visits` (numeric) and `plan` (a
/// category), a logistic head.
fn model() -> Vec<u8> {
    let columns = Columns {
        numeric: vec![(
            "visits".into(),
            (0..40).map(|i| f64::from(i % 10)).collect(),
        )],
        categorical: vec![(
            "plan".into(),
            (0..40)
                .map(|i| ["basic", "pro"][i % 2].to_string())
                .collect(),
        )],
    };
    let encoder = Encoder::fit(&columns);
    let weights = vec![1.0, 0.5, -0.5, 0.0];
    export(
        &encoder,
        &Head::Logistic {
            weights: &weights,
            intercept: -0.2,
        },
        &[],
    )
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let total: u64 = args
        .iter()
        .find_map(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let model = model();
    let ort = leitwerk_benches::onnxruntime();
    let mut targets = targets(&model, &ort).expect("the fuzz targets");
    // `--export DIR`: the model and each target's seeds as files, for the libFuzzer runner.
    if let Some(dir) = args
        .iter()
        .position(|a| a == "--export")
        .and_then(|i| args.get(i + 1))
    {
        let dir = std::path::Path::new(dir);
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("model.onnx"), &model).unwrap();
        for (name, seeds, _) in &targets {
            let corpus = dir.join("seeds").join(name);
            std::fs::create_dir_all(&corpus).unwrap();
            for (i, seed) in seeds.iter().enumerate() {
                std::fs::write(
                    corpus.join(format!("seed-{i}.json")),
                    serde_json::to_vec(seed).unwrap(),
                )
                .unwrap();
            }
        }
        println!(
            "fuzz: the model and {} targets' seeds are in {}",
            targets.len(),
            dir.display()
        );
        return;
    }
    // Fixed seed per run given, else the time: each run explores other inputs.
    let seed = std::env::var("LEITWERK_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        });
    let found_dir = root().join("benches/fuzz-found");
    let last_panic = Arc::new(Mutex::new(String::new()));
    let recorded = last_panic.clone();
    std::panic::set_hook(Box::new(move |info| {
        if let Ok(mut p) = recorded.lock() {
            *p = info.to_string();
        }
    }));
    // The server target costs about 100 times a parser's run: it gets a smaller share.
    let weights: Vec<u64> = targets
        .iter()
        .map(|(n, _, _)| if n.contains("infer") { 1 } else { 10 })
        .collect();
    let weight_sum: u64 = weights.iter().sum();
    println!(
        "fuzz: seed {seed}, {total} executions over {} targets",
        targets.len()
    );
    println!("| target | executions | exec/s | crashes | hangs (>1 s) | slowest |");
    println!("|---|---|---|---|---|---|");
    let (mut all_execs, mut all_bad) = (0u64, 0u64);
    for ((name, seeds, run), weight) in targets.iter_mut().zip(weights) {
        let execs = total * weight / weight_sum;
        let mut rng = StdRng::seed_from_u64(seed ^ name.bytes().map(u64::from).sum::<u64>());
        let (mut crashes, mut hangs, mut slowest) = (0u64, 0u64, Duration::ZERO);
        let started = Instant::now();
        for i in 0..execs {
            let bytes = if i % 50 == 0 {
                (0..rng.random_range(0..256))
                    .map(|_| rng.random())
                    .collect()
            } else {
                input(&mut rng, seeds)
            };
            let t = Instant::now();
            let outcome = catch_unwind(AssertUnwindSafe(|| run(&bytes)));
            let took = t.elapsed();
            slowest = slowest.max(took);
            let problem = match outcome {
                Err(_) => Some((
                    "crash",
                    last_panic.lock().map(|p| p.clone()).unwrap_or_default(),
                )),
                Ok(Err(why)) => Some(("crash", why)),
                Ok(Ok(())) if took > Duration::from_secs(1) => Some(("hang", format!("{took:?}"))),
                Ok(Ok(())) => None,
            };
            if let Some((what, why)) = problem {
                if what == "crash" {
                    crashes += 1
                } else {
                    hangs += 1
                }
                let _ = std::fs::create_dir_all(&found_dir);
                let file = found_dir.join(format!("{name}-{what}-{i}.bin"));
                let _ = std::fs::write(&file, &bytes);
                eprintln!("fuzz: {name}: {what} ({why}); input in {}", file.display());
            }
        }
        let secs = started.elapsed().as_secs_f64();
        println!(
            "| {name} | {execs} | {:.0} | {crashes} | {hangs} | {:.1} ms |",
            execs as f64 / secs.max(1e-9),
            slowest.as_secs_f64() * 1e3
        );
        all_execs += execs;
        all_bad += crashes + hangs;
    }
    let peak = std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmHWM"))
        .unwrap_or("VmHWM: ?")
        .to_string();
    println!(
        "fuzz: {all_execs} executions, {all_bad} crashes or hangs, peak memory {}",
        peak.trim_start_matches("VmHWM:").trim()
    );
    if all_bad > 0 {
        std::process::exit(1);
    }
}
