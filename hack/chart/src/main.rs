//! `etcd-op-chart [--check] [--out DIR]`: writes the Helm chart generated from config/ into DIR
//! (dist/chart), or with --check says whether the committed one is what config/ generates.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use etcd_op_chart::{Sources, differences, generate};

fn main() -> Result<()> {
    let mut check = false;
    let mut out = PathBuf::from("dist/chart");
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--check" => check = true,
            "--out" => out = args.next().context("--out needs a folder")?.into(),
            other => bail!("unknown argument {other:?}; usage: etcd-op-chart [--check] [--out DIR]"),
        }
    }
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let kubectl = std::env::var("KUBECTL").unwrap_or_else(|_| "kubectl".to_string());
    let files = generate(&Sources::read(&repo, &kubectl)?, env!("CARGO_PKG_VERSION"))?;
    let out = if out.is_absolute() { out } else { repo.join(out) };
    if check {
        let stale = differences(&files, &out)?;
        if !stale.is_empty() {
            bail!("{} is stale ({}); run `make chart`", out.display(), stale.join(", "));
        }
        return Ok(());
    }
    if out.exists() {
        std::fs::remove_dir_all(&out).with_context(|| format!("removing {}", out.display()))?;
    }
    for (path, text) in &files {
        let path = out.join(path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    println!("wrote {} files into {}", files.len(), out.display());
    Ok(())
}
