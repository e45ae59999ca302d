//! The trainer binary states its usage and never pretends to do work it cannot do yet.

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_leitwerk-trainer");

#[test]
fn help_states_the_usage() {
    let out = Command::new(BIN)
        .arg("--help")
        .output()
        .expect("run leitwerk-trainer");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(
        text.contains("Usage: leitwerk-trainer")
            && text.contains("materialize")
            && text.contains("train")
            && text.contains("index"),
        "{text}"
    );
}

#[test]
fn an_unimplemented_sub_command_fails_and_says_so() {
    let out = Command::new(BIN)
        .args([
            "train",
            "--spec",
            "m.json",
            "--snapshot",
            "file:///s",
            "--artifact-store",
            "file:///a",
        ])
        .output()
        .expect("run leitwerk-trainer");
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not implemented"));
}

#[test]
fn a_missing_argument_names_it() {
    let out = Command::new(BIN)
        .args(["materialize", "--spec", "fs.json"])
        .output()
        .expect("run leitwerk-trainer");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--artifact-store"));
}
