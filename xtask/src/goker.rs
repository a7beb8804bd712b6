//! GoBench's GoKer kernels (Yuan et al., CGO 2021) as Go 1.27's source tree ships them
//! (`src/runtime/testdata/testgoroutineleakprofile/goker`), built with our driver
//! (`testdata/goker/driver.go`, which runs one kernel as recurring traffic) into two programs:
//! `goker` (the kernels as the tree has them) and `goker-fixed` (each kernel with its fix,
//! `testdata/goker/fixes/KERNEL.patch`, applied). Nothing of the suite is committed here: it
//! is copied from the installed toolchain each time it is built; the tests read the expected
//! leaks from the tree's own `goroutineleakprofile_test.go`.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, bail};

use crate::{gotargets, run, toolchain};

/// The release whose source tree holds the kernels (and builds them).
pub const RELEASE: &str = "1.27.3";

/// The Go tree's root, as its `go` reports it.
fn goroot() -> anyhow::Result<PathBuf> {
    let out = run::output(Command::new(toolchain::go_binary(RELEASE)).args(["env", "GOROOT"]))?;
    Ok(PathBuf::from(out.trim()))
}

/// Where the kernels are in the tree.
pub fn kernels_dir() -> anyhow::Result<PathBuf> {
    let dir = goroot()?.join("src/runtime/testdata/testgoroutineleakprofile/goker");
    if !dir.join("main.go").exists() {
        bail!(
            "{} has no GoKer kernels (Go {RELEASE}'s tree ships them)",
            dir.display()
        );
    }
    Ok(dir)
}

fn newest(dir: &Path) -> std::time::SystemTime {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.metadata().ok()?.modified().ok())
        .max()
        .unwrap_or(std::time::UNIX_EPOCH)
}

/// Builds `goker` and `goker-fixed` into `target/go-targets/goker/` (when out of date).
pub fn build() -> anyhow::Result<()> {
    let kernels = kernels_dir()?;
    let ours = run::workspace().join("testdata/goker");
    let out_dir = gotargets::dir().join("goker");
    std::fs::create_dir_all(&out_dir)?;
    let sources = newest(&ours).max(newest(&ours.join("fixes")));
    for (name, fixed) in [("goker", false), ("goker-fixed", true)] {
        let out = out_dir.join(name);
        if out
            .metadata()
            .and_then(|m| m.modified())
            .is_ok_and(|built| built >= sources)
        {
            continue;
        }
        let src = out_dir.join(format!("{name}-src"));
        let _ = std::fs::remove_dir_all(&src);
        std::fs::create_dir_all(&src)?;
        for entry in std::fs::read_dir(&kernels)? {
            let path = entry?.path();
            let file = path
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            if file.ends_with(".go") && file != "main.go" {
                std::fs::copy(&path, src.join(&file))?;
            }
        }
        if fixed {
            let mut patches: Vec<PathBuf> = std::fs::read_dir(ours.join("fixes"))?
                .filter_map(|e| Some(e.ok()?.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "patch"))
                .collect();
            patches.sort();
            for patch in patches {
                run::status(
                    Command::new("patch")
                        .args(["--quiet", "--forward", "-p1", "-d"])
                        .arg(&src)
                        .arg("-i")
                        .arg(&patch),
                )
                .with_context(|| format!("applying {}", patch.display()))?;
            }
        }
        // The kernels' own profile writes: the driver decides when the profile is written.
        for entry in std::fs::read_dir(&src)? {
            let path = entry?.path();
            let text = std::fs::read_to_string(&path)?;
            std::fs::write(
                &path,
                text.replace("prof.WriteTo(os.Stdout, 2)", "kernelDone(prof, os.Stdout)"),
            )?;
        }
        std::fs::copy(ours.join("driver.go"), src.join("driver.go"))?;
        std::fs::write(src.join("go.mod"), "module goker\n\ngo 1.27\n")?;
        run::status(
            Command::new(toolchain::go_binary(RELEASE))
                .current_dir(&src)
                .env("GOTOOLCHAIN", "local")
                .env("CGO_ENABLED", "0")
                .env("GOFLAGS", "-mod=mod")
                .args(["build", "-o"])
                .arg(&out)
                .arg("."),
        )?;
    }
    Ok(())
}
