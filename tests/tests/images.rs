//! The images: `tests/images.sh` builds the operator's and the trainer's from their
//! Dockerfiles with buildah (on a base made from this machine's libraries, as no registry can
//! be reached), and each image's binary answers `--help` inside it, as the non-root user the
//! image declares, with what it loads at run time baked in.

use std::process::Command;

use leitwerk_testkit::repo_root;

fn buildah(args: &[&str]) -> anyhow::Result<std::process::Output> {
    Command::new("buildah")
        .args(args)
        .env("BUILDAH_ISOLATION", "chroot")
        .output()
        .map_err(|e| anyhow::anyhow!("buildah (tests/setup.sh installs it): {e}"))
}

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn the_operator_and_trainer_images_build_and_run_their_binary_as_non_root() -> anyhow::Result<()> {
    let out = Command::new("bash")
        .arg(repo_root().join("tests/images.sh"))
        .args(["--profile", "debug", "operator", "trainer"])
        .output()?;
    assert!(out.status.success(), "{}", text(&out));
    let tags = String::from_utf8_lossy(&out.stdout).to_string();
    for (tag, binary, env) in [
        ("localhost/leitwerk-operator:dev", "leitwerk-operator", ""),
        (
            "localhost/leitwerk-trainer:dev",
            "leitwerk-trainer",
            "ORT_DYLIB_PATH=/opt/leitwerk/libonnxruntime.so",
        ),
    ] {
        assert!(tags.contains(tag), "{tags}");
        let config = text(&buildah(&[
            "inspect",
            "--format",
            "{{.OCIv1.Config.User}}|{{.OCIv1.Config.Entrypoint}}|{{.OCIv1.Config.Env}}",
            tag,
        ])?);
        assert!(config.starts_with("65532:65532|"), "{tag}: {config}");
        assert!(
            config.contains(&format!("[/usr/local/bin/{binary}]")),
            "{tag}: {config}"
        );
        assert!(config.contains(env), "{tag}: {config}");
        let container = buildah(&["from", tag])?;
        assert!(container.status.success(), "{}", text(&container));
        let name = String::from_utf8_lossy(&container.stdout)
            .trim()
            .to_string();
        let help = buildah(&[
            "run",
            "--user",
            "65532:65532",
            &name,
            "--",
            &format!("/usr/local/bin/{binary}"),
            "--help",
        ])?;
        let _ = buildah(&["rm", &name]);
        assert!(help.status.success(), "{tag}: {}", text(&help));
        assert!(text(&help).contains("Usage:"), "{tag}: {}", text(&help));
    }
    Ok(())
}
