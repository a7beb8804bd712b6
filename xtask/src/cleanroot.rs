//! Is what `cargo xtask setup` installs enough for the suite? The machines we work on have
//! more than a newcomer's: earlier installs, recommended packages pulled in by hand (a fresh
//! machine once failed the arm64 test on `efi-virtio.rom`, which only a recommend of
//! qemu-system-arm brought). So the suite checks its own setup in a clean Debian 12 root made
//! with mmdebstrap: the machine kind's own base ([`toolchain::MACHINE_PACKAGES`]), then setup's
//! packages installed as setup installs them ([`toolchain::apt_install`], no recommends).
//! Inside it, every command the sources run is found, the emulated arm64 machine boots with
//! the test's own qemu arguments, Debian's Go builds and runs a cgo program, and every PyPI Go
//! toolchain runs.
//!
//! The root is about 1.2 GB and takes a few minutes to make, so a check that passed is
//! remembered (`~/.cache/gprof/clean-root.ok`) with everything it depended on: a change to the
//! packages, the commands, the qemu arguments, the kernel or the Go releases checks again.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, bail};

use crate::{arm64, run, toolchain};

/// What the clean root boots: an initramfs whose init says so and powers off.
const INIT: &str = "#!/bin/busybox sh\n/bin/busybox mount -t proc proc /proc\necho \"=== clean root: $(/bin/busybox uname -m) machine up\"\n/bin/busybox poweroff -f\n";
const BOOTED: &str = "=== clean root: aarch64 machine up";

/// The check's inputs, as remembered with a pass.
fn inputs(machine: &Path) -> anyhow::Result<String> {
    let kernel = std::fs::metadata(machine.join("vmlinuz"))
        .with_context(|| format!("{}/vmlinuz", machine.display()))?
        .len();
    Ok(format!(
        "packages {:?}\nmachine {:?}\nbase {:?}\nqemu {:?}\nkernel {kernel} bytes\ngo {:?}\ncheck {}\n",
        toolchain::APT_PACKAGES,
        toolchain::MACHINE_PACKAGES,
        toolchain::ESSENTIAL_COMMANDS,
        arm64::QEMU_MACHINE,
        toolchain::GO_RELEASES,
        script().len(),
    ))
}

fn stamp() -> PathBuf {
    toolchain::tools_home().join("clean-root.ok")
}

/// Runs the check unless it passed before with the same inputs; `machine` is the arm64
/// machine's directory (`arm64::prepare`).
pub fn ensure(machine: &Path) -> anyhow::Result<()> {
    let want = inputs(machine)?;
    if std::fs::read_to_string(stamp()).is_ok_and(|s| s == want) {
        eprintln!(
            "xtask: setup's packages were checked in a clean root with these inputs ({})",
            stamp().display()
        );
        return Ok(());
    }
    if toolchain::effective_uid() != 0 {
        bail!("the clean-root check of setup's packages needs root (mmdebstrap, chroot)");
    }
    check(machine).context(
        "setup's packages, installed into a clean Debian root, are not enough for the suite: \
         name what is missing in xtask/src/toolchain.rs (APT_PACKAGES)",
    )?;
    std::fs::write(stamp(), want)?;
    Ok(())
}

fn check(machine: &Path) -> anyhow::Result<()> {
    let work = run::workspace().join("target/clean-root");
    remove(&work)?;
    std::fs::create_dir_all(&work)?;
    let root = work.join("root");
    let started = std::time::Instant::now();
    // Debian 12 from the machine's own apt sources, its essential packages and apt, then the
    // kind's base and setup's packages, each as they are installed.
    // The machine's own apt sources (a CI machine's mirror is its own), pasted in.
    let sources: Vec<PathBuf> = std::iter::once(PathBuf::from("/etc/apt/sources.list"))
        .chain(
            std::fs::read_dir("/etc/apt/sources.list.d")
                .into_iter()
                .flatten()
                .filter_map(|e| e.ok().map(|e| e.path())),
        )
        .filter(|p| {
            p.is_file()
                && std::fs::metadata(p).is_ok_and(|m| m.len() > 0)
                && p.extension().is_some_and(|e| e == "list" || e == "sources")
        })
        .collect();
    run::status(
        Command::new("mmdebstrap")
            .args(["--variant=minbase", "--quiet", "bookworm"])
            .arg(&root)
            .args(&sources),
    )?;
    let root_str = root.to_str().context("the root's path")?;
    let in_root = ["chroot", root_str];
    std::fs::copy("/etc/resolv.conf", root.join("etc/resolv.conf")).ok();
    run::status(
        Command::new("chroot")
            .arg(&root)
            .args(["apt-get", "update", "-qq"]),
    )?;
    toolchain::apt_install(&in_root, toolchain::MACHINE_PACKAGES)?;
    let packages: Vec<&str> = toolchain::APT_PACKAGES.iter().map(|(p, _)| *p).collect();
    toolchain::apt_install(&in_root, &packages)?;

    // The arm64 machine as the test boots it, with a one-line init.
    let initrd = work.join("initrd");
    for d in ["bin", "proc"] {
        std::fs::create_dir_all(initrd.join(d))?;
    }
    std::fs::copy(machine.join("busybox"), initrd.join("bin/busybox"))?;
    std::fs::write(initrd.join("init"), INIT)?;
    std::fs::set_permissions(
        initrd.join("init"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )?;
    let boot = root.join("boot-arm64");
    std::fs::create_dir_all(&boot)?;
    run::status(Command::new("sh").arg("-c").arg(format!(
        "cd {} && find . | cpio -o -H newc --quiet | gzip -1 > {}/initrd.gz",
        initrd.display(),
        boot.display()
    )))?;
    std::fs::copy(machine.join("vmlinuz"), boot.join("vmlinuz"))?;
    std::fs::write(
        boot.join("qemu-machine"),
        arm64::QEMU_MACHINE.join("\n") + "\n",
    )?;
    std::fs::write(root.join("check.sh"), script())?;
    std::fs::create_dir_all(root.join("gobins"))?;

    // Inside a mount namespace of its own: the mounts go with it, whatever happens.
    let gobins = toolchain::tools_home();
    let out = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-ec"])
        .arg(format!(
            "mount -t proc proc {r}/proc; mount --rbind /dev {r}/dev; \
             mount --bind -o ro {g} {r}/gobins; exec chroot {r} /bin/bash /check.sh",
            r = root_str,
            g = gobins.display()
        ))
        .output()
        .context("unshare")?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{text}");
    if !out.status.success() || !text.contains(BOOTED) {
        bail!("the check in the clean root failed ({})", out.status);
    }
    eprintln!(
        "xtask: setup's packages are enough in a clean root ({:.0} s)",
        started.elapsed().as_secs_f64()
    );
    remove(&work)
}

/// Removes the work directory, never crossing into another file system (a mount left by
/// accident is not followed).
fn remove(work: &Path) -> anyhow::Result<()> {
    if work.exists() {
        run::status(
            Command::new("rm")
                .args(["-rf", "--one-file-system"])
                .arg(work),
        )?;
    }
    Ok(())
}

/// What runs inside the root: every command found, the Go toolchains run (Debian's builds
/// and runs a cgo program), the arm64 machine booted.
fn script() -> String {
    let commands: Vec<&str> = toolchain::APT_PACKAGES
        .iter()
        .flat_map(|(_, c)| c.iter().copied())
        .chain(toolchain::ESSENTIAL_COMMANDS.iter().copied())
        .chain(
            toolchain::MACHINE_COMMANDS
                .iter()
                .copied()
                // The machine's own Rust, CPython, Node.js and systemd are not Debian's here.
                .filter(|c| {
                    !["cargo", "rustc", "rustup", "python3", "npm", "systemctl"].contains(c)
                }),
        )
        .collect();
    let releases: Vec<&str> = toolchain::GO_RELEASES
        .iter()
        .copied()
        .filter(|r| *r != "1.19")
        .collect();
    format!(
        r#"set -eu
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/tmp GOCACHE=/tmp/gocache GOFLAGS=-mod=mod GOTOOLCHAIN=local
missing=""
for c in {commands}; do command -v "$c" > /dev/null || missing="$missing $c"; done
if [ -n "$missing" ]; then echo "=== clean root: not found:$missing"; exit 1; fi
echo "=== clean root: every command found"
mkdir -p /tmp/hello && cd /tmp/hello
printf 'module hello\ngo 1.19\n' > go.mod
printf 'package main\n\n// int seven(void) {{ return 7; }}\nimport "C"\nimport "fmt"\n\nfunc main() {{ fmt.Println("hello", C.seven()) }}\n' > main.go
CGO_ENABLED=1 /usr/lib/go-1.19/bin/go build -o hello . && ./hello | grep -qx 'hello 7'
echo "=== clean root: Debian's Go 1.19 built and ran a cgo program"
for r in {releases}; do
  /gobins/go-$r/lib/python3*/site-packages/go/bin/go version | grep -q "go$r "
done
echo "=== clean root: the PyPI Go toolchains run ({releases})"
timeout 300 qemu-system-aarch64 $(cat /boot-arm64/qemu-machine) -kernel /boot-arm64/vmlinuz \
  -initrd /boot-arm64/initrd.gz -append "console=ttyAMA0 rdinit=/init quiet panic=-1" < /dev/null
"#,
        commands = commands.join(" "),
        releases = releases.join(" "),
    )
}
