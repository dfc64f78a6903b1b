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

/// Adds an adapter trained elsewhere (`keel-train export-train`, then TRL) as a candidate version,
/// not live: `name@hash` as a local run's, its base model, its parent the live version. The adapter
/// is copied under `dest/<hash>/` (0700), so the version does not depend on where it was trained.
pub fn add(store: &Store, adapter: &std::path::Path, base: &str, name: &str, dest: &std::path::Path) -> Result<ModelVersion> {
    for f in ["adapter_config.json", "adapter_model.safetensors"] {
        if !adapter.join(f).is_file() {
            bail!("{} is not a PEFT adapter folder: {f} is missing", adapter.display());
        }
    }
    let cfg: serde_json::Value = serde_json::from_slice(&std::fs::read(adapter.join("adapter_config.json"))?)
        .with_context(|| format!("{}/adapter_config.json is not JSON", adapter.display()))?;
    if cfg.get("peft_type").and_then(|t| t.as_str()).is_some_and(|t| t != "LORA") {
        bail!("{}: only LoRA adapters are served (peft_type {})", adapter.display(), cfg["peft_type"]);
    }
    let hash = adapter_hash(adapter)?;
    let to = dest.join(&hash);
    crate::learn::copy_adapter(adapter, &to)?;
    let live = store.live_model_version()?;
    let v = ModelVersion {
        id: format!("{name}@{hash}"),
        created_at: std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0),
        base_model: base.to_string(),
        adapter_path: Some(to.to_string_lossy().into_owned()),
        adapter_hash: Some(hash),
        parent: live.map(|v| v.id),
        trained_on: serde_json::json!({"external": adapter.to_string_lossy(), "peft": cfg}),
        eval: serde_json::Value::Null,
        live: false,
    };
    store.put_model_version(&v)?;
    Ok(v)
}

/// The evaluation gate on held-out pairs, as a scheduled run applies it: the candidate and the
/// live version (the base model when none is live) score the same pairs; the report says whether
/// the candidate may be promoted. The figures are stored on the candidate's row.
pub fn judge(store: &Store, candidate: &ModelVersion, pairs: &std::path::Path, device: &str, gate: &crate::schedule::Gate) -> Result<crate::schedule::GateReport> {
    use crate::model::{LoadOptions, Model, parse_device};
    let rows: Vec<serde_json::Value> = std::fs::read_to_string(pairs)
        .with_context(|| format!("reading {}", pairs.display()))?
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).with_context(|| format!("a bad line in {}", pairs.display())))
        .collect::<Result<_>>()?;
    let inputs = crate::score::read_pairs(pairs)?;
    let device = parse_device(device)?;
    let live = store.live_model_version()?;
    let scores = |adapter: Option<&str>| -> Result<Vec<(f64, f64)>> {
        let mut m = Model::load(std::path::Path::new(&candidate.base_model), &LoadOptions { device, kind: None })
            .with_context(|| format!("loading {}", candidate.base_model))?;
        if let Some(a) = adapter {
            m.load_adapter(std::path::Path::new(a)).with_context(|| format!("loading adapter {a}"))?;
        }
        crate::score::score_pairs(&m, &inputs, 4)
    };
    let cand = scores(candidate.adapter_path.as_deref())?;
    let base_scores = scores(live.as_ref().and_then(|v| v.adapter_path.as_deref()))?;
    let report = crate::schedule::gate(gate, &rows, &cand, &base_scores);
    let mut v = candidate.clone();
    v.eval = report.json();
    store.put_model_version(&v)?;
    Ok(report)
}
