//! What the node stand-in takes from a pod's security context, as a container runtime would:
//! the user, group and supplementary groups the container runs as, `allowPrivilegeEscalation`,
//! dropped capabilities and `readOnlyRootFilesystem`; and the image's files, made visible to
//! that user the way an image's layers are.
//!
//! The container's process is started by `setpriv` after the mounts are made, so a binary that
//! writes outside its volumes, or a user without access to a volume, fails here as it would on
//! a real node. Seccomp profiles are not applied (recorded in `tests/README.md`).

use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{Container, Pod};

/// Where a container sees its image's files (a tmpfs in the container's mount namespace; the
/// empty mount point is the only thing left on the host). The binaries, the ONNX Runtime
/// library and the models live under the tests' caches, often in a home directory other users
/// cannot enter: bound here, they are what an image would hold, readable by any user.
pub(crate) const IMAGE_ROOT: &str = "/run/leitwerk-node/image";

/// The identity and restrictions of one container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Security {
    /// `runAsUser` (container over pod); `None` is the image's user, root here.
    pub user: Option<i64>,
    /// `runAsGroup` (container over pod); a runtime falls back to group 0.
    pub group: i64,
    /// `fsGroup` and `supplementalGroups` of the pod.
    pub groups: Vec<i64>,
    /// `allowPrivilegeEscalation: false`.
    pub no_new_privs: bool,
    /// `capabilities.drop` holds `ALL`.
    pub drop_all: bool,
    /// `readOnlyRootFilesystem: true`.
    pub read_only_root: bool,
}

impl Security {
    /// The container's security as a runtime would apply it; a container that must not run
    /// as root but would is refused as a kubelet refuses it (`CreateContainerConfigError`).
    pub(crate) fn of(pod: &Pod, container: &Container) -> Result<Security, String> {
        let pod_ctx = pod.spec.as_ref().and_then(|s| s.security_context.clone());
        let ctx = container.security_context.clone().unwrap_or_default();
        let pod_ctx = pod_ctx.unwrap_or_default();
        let user = ctx.run_as_user.or(pod_ctx.run_as_user);
        let non_root = ctx.run_as_non_root.or(pod_ctx.run_as_non_root) == Some(true);
        if non_root && user.unwrap_or(0) == 0 {
            return Err(format!(
                "CreateContainerConfigError: container {} has runAsNonRoot and image will run as root",
                container.name
            ));
        }
        let mut groups: Vec<i64> = pod_ctx.fs_group.into_iter().collect();
        groups.extend(pod_ctx.supplemental_groups.iter().flatten());
        groups.dedup();
        Ok(Security {
            user,
            group: ctx.run_as_group.or(pod_ctx.run_as_group).unwrap_or(0),
            groups,
            no_new_privs: ctx.allow_privilege_escalation == Some(false),
            drop_all: ctx
                .capabilities
                .as_ref()
                .and_then(|c| c.drop.as_ref())
                .is_some_and(|d| d.iter().any(|c| c == "ALL")),
            read_only_root: ctx.read_only_root_filesystem == Some(true),
        })
    }

    /// The `setpriv` words that start the container's process as its user, or none for root.
    pub(crate) fn setpriv(&self) -> Vec<String> {
        let Some(user) = self.user else {
            return Vec::new();
        };
        let mut words = vec![
            "setpriv".to_string(),
            format!("--reuid={user}"),
            format!("--regid={}", self.group),
        ];
        if self.groups.is_empty() {
            words.push("--clear-groups".into());
        } else {
            let list: Vec<String> = self.groups.iter().map(i64::to_string).collect();
            words.push(format!("--groups={}", list.join(",")));
        }
        if self.no_new_privs {
            words.push("--no-new-privs".into());
        }
        if self.drop_all {
            words.extend(["--bounding-set=-all".into(), "--inh-caps=-all".into()]);
        }
        words.push("--".into());
        words
    }
}

/// The host's writable mounts a read-only root covers: every mount point outside `/proc`,
/// `/sys` and `/dev` with a file system that holds files (the kernel's pseudo file systems are
/// left alone, as a runtime leaves them to their own options).
pub(crate) fn writable_mounts() -> Vec<String> {
    const PSEUDO: &[&str] = &[
        "proc",
        "sysfs",
        "cgroup",
        "cgroup2",
        "devtmpfs",
        "devpts",
        "mqueue",
        "nsfs",
        "bpf",
        "tracefs",
        "debugfs",
        "securityfs",
        "autofs",
        "binfmt_misc",
        "fusectl",
        "configfs",
        "pstore",
        "hugetlbfs",
    ];
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut points = Vec::new();
    for line in info.lines() {
        // id parent major:minor root mount-point options [optional...] - fstype source super
        let fields: Vec<&str> = line.split(' ').collect();
        let Some(dash) = fields.iter().position(|f| *f == "-") else {
            continue;
        };
        let (Some(point), Some(options), Some(fstype)) =
            (fields.get(4), fields.get(5), fields.get(dash + 1))
        else {
            continue;
        };
        let point = unescape(point);
        let pseudo_dir = ["/proc", "/sys", "/dev"]
            .iter()
            .any(|d| point == *d || point.starts_with(&format!("{d}/")));
        let read_only = options.split(',').any(|o| o == "ro");
        if !pseudo_dir && !read_only && !PSEUDO.contains(fstype) && Path::new(&point).is_dir() {
            points.push(point);
        }
    }
    points.dedup();
    points
}

/// A mount point as `/proc/self/mountinfo` writes it (`\040` for a space and so on).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).and_then(|d| {
            std::str::from_utf8(d)
                .ok()
                .and_then(|d| u8::from_str_radix(d, 8).ok())
        });
        match (bytes[i], octal) {
            (b'\\', Some(b)) => {
                out.push(b);
                i += 4;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The image's files bound under [`IMAGE_ROOT`]: the shell lines that bind them (run as root
/// in the container's mount namespace), the entrypoint's path there, and the image's
/// environment with each path that exists on the host rewritten to where the container sees
/// it (a file's directory is bound, so a library finds the files beside it).
pub(crate) fn image_binds(
    binary: &Path,
    env: &[(String, String)],
    quote: fn(&str) -> String,
) -> (String, PathBuf, Vec<(String, String)>) {
    let root = Path::new(IMAGE_ROOT);
    let mut script = format!(
        "mount -t tmpfs -o mode=755 leitwerk-image {r}\nmkdir -p {r}/bin {r}/env\n",
        r = quote(IMAGE_ROOT)
    );
    let bind = |script: &mut String, source: &Path, target: &Path, file: bool| {
        let t = quote(&target.to_string_lossy());
        let make = if file { "touch" } else { "mkdir -p" };
        script.push_str(&format!(
            "{make} {t}\nmount --bind {} {t}\nmount -o remount,bind,ro {t}\n",
            quote(&source.to_string_lossy())
        ));
    };
    let name = binary
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_else(|| "entrypoint".into());
    let entrypoint = root.join("bin").join(name);
    bind(&mut script, binary, &entrypoint, true);
    let mut rewritten = Vec::new();
    for (key, value) in env {
        let path = Path::new(value);
        let target = root.join("env").join(key);
        if path.is_absolute() && path.is_dir() {
            bind(&mut script, path, &target, false);
            rewritten.push((key.clone(), target.to_string_lossy().to_string()));
        } else if let (true, Some(dir), Some(file)) = (
            path.is_absolute() && path.is_file(),
            path.parent(),
            path.file_name(),
        ) {
            bind(&mut script, dir, &target, false);
            rewritten.push((key.clone(), target.join(file).to_string_lossy().to_string()));
        } else {
            rewritten.push((key.clone(), value.clone()));
        }
    }
    script.push_str(&format!("mount -o remount,ro {}\n", quote(IMAGE_ROOT)));
    (script, entrypoint, rewritten)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodSecurityContext, PodSpec, SecurityContext};

    fn pod(ctx: PodSecurityContext) -> Pod {
        Pod {
            spec: Some(PodSpec {
                security_context: Some(ctx),
                ..PodSpec::default()
            }),
            ..Pod::default()
        }
    }

    #[test]
    fn the_container_runs_as_the_pods_user_unless_it_names_its_own() {
        let p = pod(PodSecurityContext {
            run_as_user: Some(65_532),
            fs_group: Some(65_532),
            supplemental_groups: Some(vec![7]),
            run_as_non_root: Some(true),
            ..PodSecurityContext::default()
        });
        let mut c = Container {
            name: "main".into(),
            security_context: Some(SecurityContext {
                allow_privilege_escalation: Some(false),
                read_only_root_filesystem: Some(true),
                ..SecurityContext::default()
            }),
            ..Container::default()
        };
        let s = Security::of(&p, &c).unwrap();
        assert_eq!(
            s.setpriv(),
            [
                "setpriv",
                "--reuid=65532",
                "--regid=0",
                "--groups=65532,7",
                "--no-new-privs",
                "--"
            ]
        );
        assert!(s.read_only_root);
        c.security_context.as_mut().unwrap().run_as_user = Some(1000);
        c.security_context.as_mut().unwrap().run_as_group = Some(1001);
        let s = Security::of(&p, &c).unwrap();
        assert_eq!((s.user, s.group), (Some(1000), 1001));
    }

    #[test]
    fn run_as_non_root_without_a_user_is_refused_and_no_context_is_root() {
        let p = pod(PodSecurityContext {
            run_as_non_root: Some(true),
            ..PodSecurityContext::default()
        });
        let c = Container {
            name: "main".into(),
            ..Container::default()
        };
        let e = Security::of(&p, &c).unwrap_err();
        assert!(e.contains("runAsNonRoot"), "{e}");
        let s = Security::of(&pod(PodSecurityContext::default()), &c).unwrap();
        assert!(s.setpriv().is_empty() && !s.read_only_root);
    }

    #[test]
    fn mount_points_are_unescaped_and_the_root_is_among_the_writable_ones() {
        assert_eq!(unescape(r"/a\040b\011c"), "/a b\tc");
        assert_eq!(unescape(r"/plain\"), r"/plain\");
        let mounts = writable_mounts();
        assert!(mounts.iter().any(|m| m == "/"), "{mounts:?}");
        assert!(!mounts.iter().any(|m| m.starts_with("/proc")), "{mounts:?}");
    }

    #[test]
    fn image_paths_are_rewritten_to_where_the_container_sees_them() {
        let dir = std::env::temp_dir().join(format!("node-security-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("lib")).unwrap();
        std::fs::write(dir.join("lib/libx.so"), b"").unwrap();
        let env = vec![
            (
                "LIB".to_string(),
                dir.join("lib/libx.so").display().to_string(),
            ),
            ("MODELS".to_string(), dir.join("lib").display().to_string()),
            ("LEVEL".to_string(), "info".to_string()),
        ];
        let (script, entry, env) = image_binds(Path::new("/bin/sh"), &env, |s| s.to_string());
        assert_eq!(entry, Path::new(IMAGE_ROOT).join("bin/sh"));
        assert_eq!(
            env,
            [
                ("LIB".into(), format!("{IMAGE_ROOT}/env/LIB/libx.so")),
                ("MODELS".into(), format!("{IMAGE_ROOT}/env/MODELS")),
                ("LEVEL".into(), "info".into()),
            ]
        );
        assert!(
            script.contains(&format!(
                "mount --bind {} {IMAGE_ROOT}/env/LIB",
                dir.join("lib").display()
            )),
            "{script}"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}
