//! Builds the eBPF object (`profiler-ebpf`, nightly, bpf-linker) and leaves it in OUT_DIR,
//! where `src/kernel.rs` embeds it. `cargo xtask build` installs the toolchain first.
use anyhow::{Context as _, anyhow};
use aya_build::{Package, Toolchain};

fn main() -> anyhow::Result<()> {
    let cargo_metadata::Metadata { packages, .. } = cargo_metadata::MetadataCommand::new()
        .no_deps()
        .exec()
        .context("cargo metadata")?;
    let ebpf = packages
        .iter()
        .find(|p| p.name.as_str() == "profiler-ebpf")
        .ok_or_else(|| anyhow!("package profiler-ebpf not in the workspace"))?;
    let root_dir = ebpf
        .manifest_path
        .parent()
        .ok_or_else(|| anyhow!("profiler-ebpf has no manifest directory"))?
        .as_str();
    aya_build::build_ebpf(
        [Package {
            name: "profiler-ebpf",
            root_dir,
            ..Default::default()
        }],
        Toolchain::default(),
    )
}
