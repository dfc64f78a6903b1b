//! Model versions: `keel-train models list | promote ID | rollback [--to ID]`.
//!
//! The store is the one source of truth: each trained adapter is a row (base model, adapter path
//! and hash, what it was trained on, its evaluation figures), and exactly one row is live (a unique
//! index; promotion is one transaction, so the live pointer is never half-written). `keel-train
//! serve --store DB` follows the live row and swaps adapters without dropping requests.

use anyhow::{Context, Result, bail};
use keel_trajectory::{ModelVersion, Store};

/// A table of the versions, newest last, the live one marked.
pub fn table(versions: &[ModelVersion]) -> String {
    let mut s = format!("{:<4} {:<34} {:<20} {:<10} {:<12} {}\n", "live", "id", "created", "parent", "pref. acc.", "adapter");
    for v in versions {
        let acc = v.eval.get("accuracy").and_then(|a| a.as_f64()).map(|a| format!("{a:.3}")).unwrap_or_else(|| "-".into());
        let created = chrono_like(v.created_at);
        s.push_str(&format!(
            "{:<4} {:<34} {:<20} {:<10} {:<12} {}\n",
            if v.live { "*" } else { "" },
            v.id,
            created,
            v.parent.as_deref().map(|p| p.chars().take(10).collect::<String>()).unwrap_or_else(|| "-".into()),
            acc,
            v.adapter_path.as_deref().unwrap_or("(base)")
        ));
    }
    s
}

/// `YYYY-MM-DD HH:MM:SS` (UTC) from milliseconds, without a date crate.
pub fn chrono_like(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}", rem / 3600, rem % 3600 / 60, rem % 60)
}

pub fn promote(store: &mut Store, id: &str) -> Result<ModelVersion> {
    store.set_live(id).with_context(|| format!("promoting {id}"))?;
    store.live_model_version()?.context("no live version after promotion")
}

/// Makes an earlier version live again: `to`, else the live version's parent, else the version
/// created just before the live one.
pub fn rollback(store: &mut Store, to: Option<&str>) -> Result<ModelVersion> {
    let versions = store.model_versions()?;
    let target = match to {
        Some(id) => versions.iter().find(|v| v.id == id).with_context(|| format!("no model version `{id}`"))?.id.clone(),
        None => {
            let Some(live) = versions.iter().position(|v| v.live) else { bail!("no version is live: nothing to roll back from") };
            let parent = versions[live].parent.clone().filter(|p| versions.iter().any(|v| &v.id == p));
            match parent {
                Some(p) => p,
                None if live > 0 => versions[live - 1].id.clone(),
                None => bail!("`{}` is the oldest version: nothing to roll back to", versions[live].id),
            }
        }
    };
    promote(store, &target)
}

/// The version hash of an adapter folder: BLAKE3 of its weights file, 12 hex digits (the same
/// hash `keel-train serve` reports in `system_fingerprint`).
pub fn adapter_hash(dir: &std::path::Path) -> Result<String> {
    let f = dir.join("adapter_model.safetensors");
    let bytes = std::fs::read(&f).with_context(|| format!("reading {}", f.display()))?;
    Ok(blake3::hash(&bytes).to_hex()[..12].to_string())
}
