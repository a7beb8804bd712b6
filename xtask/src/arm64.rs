//! What the arm64 machine of the tests (`profiler/tests/arm64.rs`) boots: a Debian arm64 kernel
//! (the cloud flavour: BTF, uprobes, the PL011 console and initramfs support built in),
//! Debian's static arm64 busybox, and gprof cross-built for aarch64 (statically linked, its
//! eBPF object built for `bpf_target_arch = "aarch64"`), in `target/arm64/`. The Go programs
//! are the `arm64` variants of the Go targets; the third-party ones come from
//! `testdata/corpus-arm64.json`. The test packs them into an initramfs and runs the machine
//! under qemu's software emulation: no arm64 hardware is needed.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, bail};

use crate::{corpus, run, toolchain};

/// Environment variable that tells the test where the machine's files are.
pub const ENV: &str = "GPROF_ARM64";

/// The Debian packages the machine is made of (the kernel through its metapackage).
const KERNEL_METAPACKAGE: &str = "linux-image-cloud-arm64:arm64";
const BUSYBOX: &str = "busybox-static:arm64";

/// The emulated machine's qemu arguments, written to `target/arm64/qemu-machine` (one per line)
/// for everything that boots it: the test, and the clean-root check of `cargo xtask setup`'s
/// packages (`cleanroot.rs`). No network device: nothing inside needs more than loopback, and
/// qemu's default NIC needs option ROMs (Debian's ipxe-qemu) that `qemu-system-arm` installed
/// without recommends leaves out ("failed to find romfile efi-virtio.rom" on a fresh machine).
pub const QEMU_MACHINE: &[&str] = &[
    "-M",
    "virt",
    "-cpu",
    "neoverse-n1",
    "-smp",
    "2",
    "-m",
    "2048",
    "-nographic",
    "-no-reboot",
    "-nic",
    "none",
];

/// The file in the machine's directory that holds [`QEMU_MACHINE`].
pub const QEMU_MACHINE_FILE: &str = "qemu-machine";

fn dir() -> PathBuf {
    run::workspace().join("target/arm64")
}

fn downloads() -> PathBuf {
    PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into()))
        .join(".cache/gprof/arm64")
}

/// Everything the machine needs, in `target/arm64/`: `vmlinuz`, `busybox`, `gprof`, its qemu
/// arguments (`qemu-machine`); returns
/// that directory. The third-party programs are ensured in the corpus cache.
pub fn prepare() -> anyhow::Result<PathBuf> {
    let dir = dir();
    std::fs::create_dir_all(&dir)?;
    ensure_arm64_packages_visible()?;
    let kernel = resolve_kernel_package()?;
    let kernel_dir = unpack_package(&kernel)?;
    let vmlinuz = std::fs::read_dir(kernel_dir.join("boot"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz-"))
        })
        .with_context(|| format!("{kernel} has no boot/vmlinuz-*"))?;
    std::fs::copy(&vmlinuz, dir.join("vmlinuz"))?;
    std::fs::copy(
        unpack_package(BUSYBOX)?.join("bin/busybox"),
        dir.join("busybox"),
    )?;
    std::fs::write(dir.join(QEMU_MACHINE_FILE), QEMU_MACHINE.join("\n") + "\n")?;
    build_gprof(&dir)?;
    corpus::ensure_file("testdata/corpus-arm64.json")?;
    Ok(dir)
}

/// apt must know the arm64 packages (Debian's multiarch): added once, then the lists updated.
fn ensure_arm64_packages_visible() -> anyhow::Result<()> {
    let foreign = run::output(Command::new("dpkg").arg("--print-foreign-architectures"))?;
    if foreign.lines().any(|a| a.trim() == "arm64") {
        return Ok(());
    }
    if toolchain::effective_uid() != 0 {
        bail!(
            "the arm64 machine needs Debian's arm64 packages: run `dpkg --add-architecture arm64 && apt-get update` as root"
        );
    }
    run::status(Command::new("dpkg").args(["--add-architecture", "arm64"]))?;
    run::status(Command::new("apt-get").args(["update", "-qq"]))
}

/// The kernel package the metapackage points at today (Debian replaces it with each update).
fn resolve_kernel_package() -> anyhow::Result<String> {
    let depends = run::output(Command::new("apt-cache").args(["depends", KERNEL_METAPACKAGE]))?;
    depends
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Depends: "))
        .find(|p| p.starts_with("linux-image-"))
        .map(|p| {
            let p = p.trim();
            if p.contains(':') {
                p.to_string()
            } else {
                format!("{p}:arm64")
            }
        })
        .with_context(|| format!("apt-cache depends {KERNEL_METAPACKAGE}: no kernel package"))
}

/// A Debian package downloaded and unpacked (once) under the downloads directory.
fn unpack_package(package: &str) -> anyhow::Result<PathBuf> {
    let name = package.replace(':', "_");
    let out = downloads().join(&name);
    if out.join(".done").exists() {
        return Ok(out);
    }
    let archives = downloads().join("_debs");
    std::fs::create_dir_all(&archives)?;
    run::status(
        Command::new("apt-get")
            .current_dir(&archives)
            .args(["download", "-q=2", "-o", "APT::Sandbox::User=root"])
            .arg(package),
    )
    .with_context(|| format!("downloading {package}"))?;
    let stem = package.split(':').next().unwrap_or(package);
    let deb = newest_deb(&archives, stem)?;
    let _ = std::fs::remove_dir_all(&out);
    run::status(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&out))?;
    std::fs::write(out.join(".done"), "")?;
    Ok(out)
}

fn newest_deb(archives: &Path, stem: &str) -> anyhow::Result<PathBuf> {
    let mut debs: Vec<PathBuf> = std::fs::read_dir(archives)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name().is_some_and(|n| {
                let n = n.to_string_lossy();
                n.starts_with(&format!("{stem}_")) && n.ends_with("_arm64.deb")
            })
        })
        .collect();
    debs.sort_by_key(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok());
    debs.pop()
        .with_context(|| format!("no {stem}_*_arm64.deb in {}", archives.display()))
}

/// gprof for aarch64, linked statically (the machine has no C library of its own): the
/// image's binary.
fn build_gprof(dir: &Path) -> anyhow::Result<()> {
    let built = crate::image::static_gprof(toolchain::CROSS_TARGET, "aarch64-linux-gnu-gcc")?;
    std::fs::copy(&built, dir.join("gprof"))
        .with_context(|| format!("copying {}", built.display()))?;
    Ok(())
}
