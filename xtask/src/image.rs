//! `cargo xtask image`: gprof's container image, built without a container engine. A static
//! gprof (its eBPF object embedded) is the image's only file, with the capabilities it needs as
//! file capabilities (the `security.capability` extended attribute, carried in the layer as a
//! PAX record, as container engines write it), run as `nobody`; for amd64 and arm64, written
//! as an OCI image layout (a directory, and the same as a tar) that skopeo, umoci and any
//! registry client read. The layers are reproducible: every time and owner is fixed, so the
//! same binary gives the same digest.
//!
//! `profiler/tests/image.rs` unpacks it and runs it under runc with the DaemonSet's own
//! securityContext.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use sha2::Digest as _;

use crate::{run, toolchain};

/// Environment variable that tells the tests where the image layout is.
#[allow(dead_code)] // until the image test is in the suite
pub const ENV: &str = "GPROF_IMAGE";

/// The image's tag (the crate's version), and the per-architecture ones beside it.
pub fn tag() -> String {
    env!("CARGO_PKG_VERSION").to_string()
}

/// The user the image runs as: nobody.
pub const USER: &str = "65534:65534";

/// The binary's path in the image.
const BINARY: &str = "gprof";

/// The capabilities gprof needs (README, Privileges): CAP_DAC_READ_SEARCH (2), CAP_SYS_PTRACE
/// (19), CAP_SYS_ADMIN (21), as `setcap cap_sys_admin,cap_sys_ptrace,cap_dac_read_search=ep`
/// writes them.
const CAPABILITIES: u64 = (1 << 2) | (1 << 19) | (1 << 21);

/// Directories the image holds for what the DaemonSet mounts (a read-only root cannot make
/// its mount points).
const MOUNT_POINTS: &[&str] = &["etc/gprof", "proc", "sys", "dev", "tmp", "var/log/pods"];

/// The image's architectures: (OCI name, Rust target, linker for it).
const ARCHITECTURES: &[(&str, &str, &str)] = &[
    ("amd64", "x86_64-unknown-linux-gnu", "gcc"),
    ("arm64", toolchain::CROSS_TARGET, "aarch64-linux-gnu-gcc"),
];

/// Where the layout and its tar are written.
pub fn dir() -> PathBuf {
    run::workspace().join("target/image")
}

/// Builds gprof for each architecture, statically linked, and writes the image: the layout
/// directory `target/image/oci` and its tar `target/image/gprof-oci.tar`. Returns the layout.
pub fn build() -> anyhow::Result<PathBuf> {
    toolchain::ensure_ebpf()?;
    let out = dir();
    let layout = out.join("oci");
    let _ = std::fs::remove_dir_all(&layout);
    std::fs::create_dir_all(layout.join("blobs/sha256"))?;
    let mut manifests = Vec::new();
    for &(arch, target, linker) in ARCHITECTURES {
        let binary = static_gprof(target, linker)?;
        let (descriptor, size) = write_image(&layout, arch, &binary)?;
        println!(
            "image: {arch}: {} ({:.1} MiB compressed)",
            descriptor["digest"].as_str().unwrap_or("?"),
            size as f64 / 1048576.0
        );
        manifests.push(descriptor);
    }
    // One index for both architectures (what `skopeo copy --all` pushes as a multi-arch
    // image), and each architecture's manifest by a tag of its own (what umoci unpacks).
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": manifests,
        "annotations": annotations(),
    });
    let index_blob = blob(&layout, &serde_json::to_vec(&index)?)?;
    let mut refs = vec![serde_json::json!({
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "digest": index_blob.0,
        "size": index_blob.1,
        "annotations": {"org.opencontainers.image.ref.name": tag()},
    })];
    for m in &manifests {
        let mut m = m.clone();
        let arch = m["platform"]["architecture"]
            .as_str()
            .unwrap_or("")
            .to_string();
        m["annotations"] =
            serde_json::json!({"org.opencontainers.image.ref.name": format!("{}-{arch}", tag())});
        refs.push(m);
    }
    std::fs::write(
        layout.join("index.json"),
        serde_json::to_vec_pretty(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": refs,
        }))?,
    )?;
    std::fs::write(
        layout.join("oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )?;
    let tar = out.join("gprof-oci.tar");
    run::status(
        std::process::Command::new("tar")
            .args(["--sort=name", "--mtime=@0", "--owner=0", "--group=0", "-cf"])
            .arg(&tar)
            .arg("-C")
            .arg(&layout)
            .arg("."),
    )?;
    println!(
        "image: {} (tags {t}, {t}-amd64, {t}-arm64) and {}",
        layout.display(),
        tar.display(),
        t = tag()
    );
    Ok(layout)
}

/// gprof for `target`, linked statically (the image and the emulated arm64 machine have no C
/// library), stripped.
pub fn static_gprof(target: &str, linker: &str) -> anyhow::Result<PathBuf> {
    let upper = target.to_uppercase().replace('-', "_");
    run::cargo_with_env(
        &[
            "build",
            "--release",
            "--package",
            "profiler",
            "--bin",
            "gprof",
            "--target",
            target,
        ],
        &[
            (&format!("CARGO_TARGET_{upper}_LINKER"), linker.as_ref()),
            (
                &format!("CARGO_TARGET_{upper}_RUSTFLAGS"),
                "-C target-feature=+crt-static -C strip=symbols".as_ref(),
            ),
        ],
    )?;
    let built = run::workspace().join(format!("target/{target}/release/gprof"));
    anyhow::ensure!(built.exists(), "{} was not built", built.display());
    Ok(built)
}

/// The image's labels (`org.opencontainers.image.*`), also its manifests' annotations.
fn annotations() -> serde_json::Value {
    serde_json::json!({
        "org.opencontainers.image.title": "gprof",
        "org.opencontainers.image.description": "eBPF health profiler for Go services (goroutine leaks, GC pauses, the free-G pool), as a node agent",
        "org.opencontainers.image.version": tag(),
        "org.opencontainers.image.licenses": "MIT OR Apache-2.0",
        "org.opencontainers.image.revision": git_revision(),
        "org.opencontainers.image.created": "1970-01-01T00:00:00Z",
    })
}

fn git_revision() -> String {
    run::output(
        std::process::Command::new("git")
            .current_dir(run::workspace())
            .args(["rev-parse", "HEAD"]),
    )
    .map(|s| s.trim().to_string())
    .unwrap_or_default()
}

/// Writes one architecture's layer, config and manifest; returns the manifest's descriptor
/// and the layer's compressed size.
fn write_image(
    layout: &Path,
    arch: &str,
    binary: &Path,
) -> anyhow::Result<(serde_json::Value, u64)> {
    let tar = layer(binary)?;
    let diff_id = format!("sha256:{:x}", sha2::Sha256::digest(&tar));
    let mut gz = flate2::GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), flate2::Compression::best());
    gz.write_all(&tar)?;
    let gz = gz.finish()?;
    let layer = blob(layout, &gz)?;
    let config = serde_json::json!({
        "created": "1970-01-01T00:00:00Z",
        "architecture": arch,
        "os": "linux",
        "config": {
            "User": USER,
            "Entrypoint": [format!("/{BINARY}")],
            "Cmd": ["daemon", "--config", "/etc/gprof/gprof.yaml"],
            "ExposedPorts": {"9477/tcp": {}},
            "Labels": annotations(),
        },
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{
            "created": "1970-01-01T00:00:00Z",
            "created_by": "cargo xtask image: a static gprof with file capabilities",
        }],
    });
    let config = blob(layout, &serde_json::to_vec(&config)?)?;
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config.0,
            "size": config.1,
        },
        "layers": [{
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "digest": layer.0,
            "size": layer.1,
        }],
        "annotations": annotations(),
    });
    let manifest = blob(layout, &serde_json::to_vec(&manifest)?)?;
    Ok((
        serde_json::json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest.0,
            "size": manifest.1,
            "platform": {"architecture": arch, "os": "linux"},
        }),
        layer.1,
    ))
}

/// Stores `bytes` as a blob; returns its digest and size.
fn blob(layout: &Path, bytes: &[u8]) -> anyhow::Result<(String, u64)> {
    let hex = format!("{:x}", sha2::Sha256::digest(bytes));
    let path = layout.join("blobs/sha256").join(&hex);
    std::fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))?;
    Ok((format!("sha256:{hex}"), bytes.len() as u64))
}

/// The layer: the mount points, and the binary owned by root, mode 0755, with its file
/// capabilities.
fn layer(binary: &Path) -> anyhow::Result<Vec<u8>> {
    let mut tar = tar::Builder::new(Vec::new());
    tar.mode(tar::HeaderMode::Deterministic);
    let mut dirs: Vec<String> = Vec::new();
    for d in MOUNT_POINTS {
        let mut path = String::new();
        for part in d.split('/') {
            path = if path.is_empty() {
                part.to_string()
            } else {
                format!("{path}/{part}")
            };
            if !dirs.contains(&path) {
                dirs.push(path.clone());
            }
        }
    }
    dirs.sort();
    for d in &dirs {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(if d == "tmp" { 0o1777 } else { 0o755 });
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_size(0);
        tar.append_data(&mut h, format!("{d}/"), std::io::empty())?;
    }
    let bytes = std::fs::read(binary).with_context(|| format!("{}", binary.display()))?;
    tar.append_pax_extensions([(
        "SCHILY.xattr.security.capability",
        file_capabilities(CAPABILITIES).as_slice(),
    )])?;
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_mode(0o755);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_size(bytes.len() as u64);
    tar.append_data(&mut h, BINARY, bytes.as_slice())?;
    Ok(tar.into_inner()?)
}

/// The `security.capability` attribute that grants `caps` as permitted and effective
/// (`struct vfs_cap_data`, revision 2: what `setcap CAPS=ep` writes).
fn file_capabilities(caps: u64) -> Vec<u8> {
    const VFS_CAP_REVISION_2: u32 = 0x0200_0000;
    const VFS_CAP_FLAGS_EFFECTIVE: u32 = 0x1;
    let mut v = Vec::with_capacity(20);
    v.extend_from_slice(&(VFS_CAP_REVISION_2 | VFS_CAP_FLAGS_EFFECTIVE).to_le_bytes());
    for half in [caps as u32, (caps >> 32) as u32] {
        v.extend_from_slice(&half.to_le_bytes()); // permitted
        v.extend_from_slice(&0u32.to_le_bytes()); // inheritable
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The attribute `setcap cap_sys_admin,cap_sys_ptrace,cap_dac_read_search=ep` writes
    /// (read back with `getfattr -n security.capability -e hex`).
    #[test]
    fn file_capabilities_are_setcaps() {
        let hex: String = file_capabilities(CAPABILITIES)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(hex, "0100000204002800000000000000000000000000");
    }
}
