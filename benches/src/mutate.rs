//! The fuzzer's mutation engine (`benches/benches/fuzz.rs`): random JSON values, structural
//! mutations of valid seeds, and byte edits, with inputs capped at [`MAX_INPUT`].

use rand::{RngExt, rngs::StdRng};
use serde_json::{Value, json};

/// The largest input a target is given.
pub const MAX_INPUT: usize = 2 * 1024 * 1024;

/// A random JSON value, nested at most `depth` deep.
pub fn random_value(rng: &mut StdRng, depth: u32) -> Value {
    match rng.random_range(0..if depth == 0 { 6 } else { 8 }) {
        0 => Value::Null,
        1 => json!(rng.random_bool(0.5)),
        2 => json!([i64::MIN, -1, 0, 1, 3, i64::MAX][rng.random_range(0..6)]),
        3 => json!([1e308, -1e308, 1e-308, 0.5, -0.0, f64::from(u32::MAX)][rng.random_range(0..6)]),
        4 => json!(u64::MAX),
        5 => json!(random_string(rng)),
        6 => Value::Array(
            (0..rng.random_range(0..4))
                .map(|_| random_value(rng, depth - 1))
                .collect(),
        ),
        _ => Value::Object(
            (0..rng.random_range(0..4))
                .map(|_| (random_string(rng), random_value(rng, depth - 1)))
                .collect(),
        ),
    }
}

/// A random string: long, odd characters, or pieces of the syntax the targets parse.
pub fn random_string(rng: &mut StdRng) -> String {
    const PIECES: [&str; 14] = [
        "",
        "a",
        "pro",
        "{{",
        "}}",
        "'",
        "\"",
        "\\",
        "&&",
        "==",
        "\u{0}",
        "ß€😀",
        "\u{202e}",
        "%",
    ];
    match rng.random_range(0..10) {
        0 => "x".repeat(rng.random_range(0..70_000)),
        1 => (0..rng.random_range(0..40))
            .map(|_| char::from(rng.random_range(0u8..128)))
            .collect(),
        _ => (0..rng.random_range(0..6))
            .map(|_| PIECES[rng.random_range(0..PIECES.len())])
            .collect(),
    }
}

/// One structural mutation somewhere in `v`.
pub fn mutate(rng: &mut StdRng, v: &mut Value, depth: u32) {
    if depth == 0 || rng.random_bool(0.15) {
        *v = random_value(rng, 2);
        return;
    }
    match v {
        Value::Object(map) if !map.is_empty() => {
            let key = map
                .keys()
                .nth(rng.random_range(0..map.len()))
                .cloned()
                .unwrap_or_default();
            match rng.random_range(0..6) {
                0 => {
                    map.remove(&key);
                }
                1 => {
                    map.insert(random_string(rng), random_value(rng, 2));
                }
                _ => {
                    if let Some(child) = map.get_mut(&key) {
                        mutate(rng, child, depth - 1);
                    }
                }
            }
        }
        Value::Array(items) if !items.is_empty() => {
            let i = rng.random_range(0..items.len());
            match rng.random_range(0..6) {
                0 => {
                    items.remove(i);
                }
                1 => {
                    let copy = items[i].clone();
                    let n = rng.random_range(1..64);
                    items.extend(std::iter::repeat_n(copy, n));
                }
                _ => mutate(rng, &mut items[i], depth - 1),
            }
        }
        Value::String(s) => {
            *s = match rng.random_range(0..3) {
                0 => random_string(rng),
                1 if s.len() < 20_000 => s.repeat(rng.random_range(0..50)),
                1 => String::new(),
                _ => format!("{s}{}", random_string(rng)),
            }
        }
        _ => *v = random_value(rng, 2),
    }
}

/// A mutated input from `seeds`: structural mutations, sometimes followed by byte edits.
pub fn input(rng: &mut StdRng, seeds: &[Value]) -> Vec<u8> {
    let mut v = seeds[rng.random_range(0..seeds.len())].clone();
    for _ in 0..rng.random_range(1..4) {
        mutate(rng, &mut v, 6);
    }
    let mut bytes = serde_json::to_vec(&v).unwrap_or_default();
    // What the API server stores is at most 1.5 MiB and a server's body at most 16 MiB:
    // inputs stay below 2 MiB, so that a slow execution is a hang and not a large input.
    bytes.truncate(MAX_INPUT);
    if rng.random_bool(0.2) && !bytes.is_empty() {
        for _ in 0..rng.random_range(1..4) {
            let at = rng.random_range(0..bytes.len());
            match rng.random_range(0..3) {
                0 => bytes[at] ^= 1 << rng.random_range(0..8),
                1 => bytes.truncate(at),
                _ => bytes.insert(at, rng.random()),
            }
            if bytes.is_empty() {
                break;
            }
        }
    }
    bytes
}
