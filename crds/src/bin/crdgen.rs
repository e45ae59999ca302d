//! Writes Leitwerk's CRDs as YAML.
//!
//! `crdgen` prints them to standard output; `crdgen --write` updates every committed copy
//! (`config/crd/bases/leitwerk.dev_crds.yaml` and `charts/leitwerk/crds/leitwerk.dev_crds.yaml`);
//! `crdgen --check` fails when a committed copy differs from what the types generate.

use std::{path::PathBuf, process::ExitCode};

/// Paths, relative to the repository root, of every committed copy of the CRDs.
const COPIES: [&str; 2] = [
    "config/crd/bases/leitwerk.dev_crds.yaml",
    "charts/leitwerk/crds/leitwerk.dev_crds.yaml",
];

fn main() -> ExitCode {
    let yaml = match leitwerk_crds::crd::render_yaml() {
        Ok(yaml) => yaml,
        Err(err) => {
            eprintln!("crdgen: {err}");
            return ExitCode::FAILURE;
        }
    };
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    match std::env::args().nth(1).as_deref() {
        None => {
            print!("{yaml}");
            ExitCode::SUCCESS
        }
        Some("--write") => {
            for rel in COPIES {
                let path = root.join(rel);
                if let Some(dir) = path.parent()
                    && let Err(err) = std::fs::create_dir_all(dir)
                {
                    eprintln!("crdgen: failed to create {}: {err}", dir.display());
                    return ExitCode::FAILURE;
                }
                if let Err(err) = std::fs::write(&path, &yaml) {
                    eprintln!("crdgen: failed to write {}: {err}", path.display());
                    return ExitCode::FAILURE;
                }
                eprintln!("crdgen: wrote {rel}");
            }
            ExitCode::SUCCESS
        }
        Some("--check") => {
            let mut ok = true;
            for rel in COPIES {
                let current = std::fs::read_to_string(root.join(rel)).unwrap_or_default();
                if current != yaml {
                    eprintln!(
                        "crdgen: {rel} is out of date; run `cargo run -p leitwerk-crds --bin crdgen -- --write`"
                    );
                    ok = false;
                }
            }
            if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Some(other) => {
            eprintln!("crdgen: unknown argument {other:?}; usage: crdgen [--write|--check]");
            ExitCode::FAILURE
        }
    }
}
