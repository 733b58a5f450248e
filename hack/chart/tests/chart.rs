//! The committed chart is what config/ generates, so the chart and `kubectl apply -k config/default` install
//! the same operator.

use std::path::Path;

use etcd_op_chart::{Sources, differences, generate};

#[test]
#[ignore = "needs kubectl with kustomize v5: `make test-unit` finds or builds one"]
fn committed_chart_is_what_config_generates() -> anyhow::Result<()> {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let kubectl = std::env::var("KUBECTL").unwrap_or_else(|_| "kubectl".to_string());
    let files = generate(&Sources::read(&repo, &kubectl)?, env!("CARGO_PKG_VERSION"))?;
    assert!(files.keys().any(|path| path.starts_with("templates/deployment-")), "{:?}", files.keys());
    assert!(files.keys().any(|path| path.starts_with("crds/")), "{:?}", files.keys());
    let stale = differences(&files, &repo.join("dist/chart"))?;
    assert!(stale.is_empty(), "dist/chart is stale, run `make chart`: {stale:?}");
    Ok(())
}
