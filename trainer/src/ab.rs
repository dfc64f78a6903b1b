//! Online A/B of model versions: a share of live episodes is served by a candidate, and the
//! users' own decisions judge it.
//!
//! - **Routing** ([`in_candidate_arm`]): `keel-train serve` sends an episode to the candidate when
//!   a hash of (candidate id, episode id) falls under the share — sticky, so every step of an
//!   episode is served by one version, and reshuffled for every new candidate. keel-lsp names its
//!   episode in each request (the OpenAI `user` field, or an `x-keel-episode` header); a request
//!   that names none is served by the live version. Every step records the version that answered
//!   (`system_fingerprint`), so the store knows which arm each decision belongs to.
//! - **State**: the candidate's row in the store carries `eval.ab` = `{status, share, started_at,
//!   ...}`; `status` is `running` until a verdict, then `promoted` or `rolled_back`. `serve
//!   --store` follows it (see `serve::follow_store`).
//! - **Judging** ([`judge`]): per arm, the share of reviewed proposals the user accepted
//!   (accepted, edited, or accepted then reverted, over those and the user's rejections and
//!   requests for another) and the share of accepted edits later reverted. Each is compared with a
//!   mixture sequential probability ratio test (mSPRT; Johari, Pekelis, Walsh, "Always valid
//!   inference", 2017) on the difference of proportions, so the test may be looked at after every
//!   decision and stops as soon as a difference is clear, at level `alpha` split over the two
//!   rates. The candidate is promoted when it is clearly better on one rate and not clearly worse
//!   on the other; rolled back when clearly worse on either, or when both arms reached
//!   `max_decisions` without a clear difference (the live version stays).
//!
//! Automatic rejections (invalid calls, loops) are not the user's judgement and are not counted;
//! the offline gate already judged them before the A/B started.

use anyhow::{Context, Result, bail};
use keel_trajectory::{Decision, EpisodeFilter, ModelVersion, Store};
use serde::Deserialize;
use serde_json::{Value, json};

/// `[ab]` in the schedule's config; also `keel-train models ab`'s flags.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AbConfig {
    /// Share of episodes served by the candidate, in (0, 1).
    pub share: f64,
    /// The test's level: the chance of a verdict when both versions are equally good.
    #[serde(default = "alpha")]
    pub alpha: f64,
    /// The mixture's prior scale on the difference of rates (about the size of effect expected).
    #[serde(default = "tau")]
    pub tau: f64,
    /// No verdict before each arm has this many reviewed proposals.
    #[serde(default = "min_decisions")]
    pub min_decisions: u64,
    /// Both arms past this many reviewed proposals with no clear difference: the live one stays.
    #[serde(default = "max_decisions")]
    pub max_decisions: u64,
}

fn alpha() -> f64 {
    0.05
}
fn tau() -> f64 {
    0.1
}
fn min_decisions() -> u64 {
    20
}
fn max_decisions() -> u64 {
    1000
}

impl AbConfig {
    pub fn new(share: f64) -> AbConfig {
        AbConfig { share, alpha: alpha(), tau: tau(), min_decisions: min_decisions(), max_decisions: max_decisions() }
    }

    pub fn check(&self) -> Result<()> {
        if !(self.share > 0.0 && self.share < 1.0) {
            bail!("ab.share must be in (0, 1), got {}", self.share);
        }
        if !(self.alpha > 0.0 && self.alpha < 1.0) {
            bail!("ab.alpha must be in (0, 1), got {}", self.alpha);
        }
        if !(self.tau > 0.0 && self.tau.is_finite()) {
            bail!("ab.tau must be positive, got {}", self.tau);
        }
        if self.min_decisions == 0 || self.max_decisions < self.min_decisions {
            bail!("ab.min_decisions must be at least 1 and at most ab.max_decisions");
        }
        Ok(())
    }
}

/// Whether the episode `key` is served by the candidate `salt` (its version id) at `share`.
pub fn in_candidate_arm(key: &str, salt: &str, share: f64) -> bool {
    let h = blake3::hash(format!("{salt}\u{0}{key}").as_bytes());
    let x = u64::from_le_bytes(h.as_bytes()[..8].try_into().expect("8 bytes"));
    (x as f64 / u64::MAX as f64) < share
}

/// What the users did with one version's proposals.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ArmStats {
    /// Proposals the user judged (accepted, edited, reverted, rejected, asked for another).
    pub reviewed: u64,
    /// Of those, accepted (including edited and later reverted).
    pub accepted: u64,
    /// Of the accepted, undone afterwards.
    pub reverted: u64,
}

impl ArmStats {
    pub fn acceptance(&self) -> f64 {
        if self.reviewed == 0 { 0.0 } else { self.accepted as f64 / self.reviewed as f64 }
    }
    pub fn reversal(&self) -> f64 {
        if self.accepted == 0 { 0.0 } else { self.reverted as f64 / self.accepted as f64 }
    }
    pub fn add(&mut self, d: &Decision) {
        match d {
            Decision::Accepted | Decision::Edited { .. } => {
                self.reviewed += 1;
                self.accepted += 1;
            }
            Decision::Reverted => {
                self.reviewed += 1;
                self.accepted += 1;
                self.reverted += 1;
            }
            Decision::Rejected { .. } if !d.is_automatic_rejection() => self.reviewed += 1,
            _ => {}
        }
    }
    fn json(&self) -> Value {
        json!({"reviewed": self.reviewed, "accepted": self.accepted, "reverted": self.reverted,
               "acceptance": self.acceptance(), "reversal": self.reversal()})
    }
}

/// The decisions on steps produced by `version` in episodes since `since` (ms).
pub fn arm_stats(store: &Store, version: &str, since: i64) -> Result<ArmStats> {
    let filter = EpisodeFilter { since: Some(since), model_version: Some(version.to_string()), limit: None };
    let mut s = ArmStats::default();
    for e in store.episodes(&filter)? {
        for r in store.steps(e.id)? {
            if r.step.model.version.as_deref() != Some(version) || r.step.created_at < since {
                continue;
            }
            if let Some(d) = r.decision() {
                s.add(d);
            }
        }
    }
    Ok(s)
}

/// The mSPRT statistic for H0: p_a = p_b, from `xa` of `na` and `xb` of `nb`, with a normal
/// mixture of scale `tau` on the difference: (Λ, p̂_b − p̂_a). Λ ≥ 1/α rejects H0, and may be
/// checked after every observation.
pub fn msprt(xa: u64, na: u64, xb: u64, nb: u64, tau: f64) -> (f64, f64) {
    if na == 0 || nb == 0 {
        return (0.0, 0.0);
    }
    let (pa, pb) = (xa as f64 / na as f64, xb as f64 / nb as f64);
    // The variance from smoothed rates, so that 0/n and n/n do not give a zero variance.
    let sa = (xa as f64 + 0.5) / (na as f64 + 1.0);
    let sb = (xb as f64 + 0.5) / (nb as f64 + 1.0);
    let v = sa * (1.0 - sa) / na as f64 + sb * (1.0 - sb) / nb as f64;
    let t2 = tau * tau;
    let d = pb - pa;
    let lambda = (v / (v + t2)).sqrt() * (t2 * d * d / (2.0 * v * (v + t2))).exp();
    (lambda, d)
}

#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Continue(String),
    Promote(String),
    Rollback(String),
}

impl Verdict {
    pub fn name(&self) -> &'static str {
        match self {
            Verdict::Continue(_) => "continue",
            Verdict::Promote(_) => "promote",
            Verdict::Rollback(_) => "rollback",
        }
    }
    pub fn why(&self) -> &str {
        match self {
            Verdict::Continue(w) | Verdict::Promote(w) | Verdict::Rollback(w) => w,
        }
    }
}

/// The verdict on `candidate` against `live` so far.
pub fn judge(live: &ArmStats, candidate: &ArmStats, cfg: &AbConfig) -> Verdict {
    let n = live.reviewed.min(candidate.reviewed);
    let figures = format!(
        "acceptance {:.3} ({}/{}) vs live {:.3} ({}/{}); reversal {:.3} ({}/{}) vs live {:.3} ({}/{})",
        candidate.acceptance(),
        candidate.accepted,
        candidate.reviewed,
        live.acceptance(),
        live.accepted,
        live.reviewed,
        candidate.reversal(),
        candidate.reverted,
        candidate.accepted,
        live.reversal(),
        live.reverted,
        live.accepted
    );
    if n < cfg.min_decisions {
        return Verdict::Continue(format!("{n} of {} reviewed proposals per arm so far; {figures}", cfg.min_decisions));
    }
    // Two rates, each tested at alpha / 2.
    let bar = 2.0 / cfg.alpha;
    let (la, da) = msprt(live.accepted, live.reviewed, candidate.accepted, candidate.reviewed, cfg.tau);
    let (lr, dr) = msprt(live.reverted, live.accepted, candidate.reverted, candidate.accepted, cfg.tau);
    let acc_better = la >= bar && da > 0.0;
    let acc_worse = la >= bar && da < 0.0;
    let rev_better = lr >= bar && dr < 0.0;
    let rev_worse = lr >= bar && dr > 0.0;
    if acc_worse || rev_worse {
        let what = if acc_worse { "fewer proposals accepted" } else { "more accepted edits reverted" };
        return Verdict::Rollback(format!("{what} (mSPRT Λ {:.1} ≥ {bar:.0}): {figures}", if acc_worse { la } else { lr }));
    }
    if acc_better || rev_better {
        let what = if acc_better { "more proposals accepted" } else { "fewer accepted edits reverted" };
        return Verdict::Promote(format!("{what} (mSPRT Λ {:.1} ≥ {bar:.0}): {figures}", if acc_better { la } else { lr }));
    }
    if live.reviewed >= cfg.max_decisions && candidate.reviewed >= cfg.max_decisions {
        return Verdict::Rollback(format!("no clear difference after {} reviewed proposals per arm; the live version stays: {figures}", cfg.max_decisions));
    }
    Verdict::Continue(format!("no clear difference yet (Λ acceptance {la:.2}, reversal {lr:.2}, bar {bar:.0}); {figures}"))
}

/// The A/B state a version's row carries, if any.
pub fn state(v: &ModelVersion) -> Option<&Value> {
    v.eval.get("ab").filter(|a| a.is_object())
}

/// The version whose A/B is running, and its share.
pub fn running(versions: &[ModelVersion]) -> Option<(&ModelVersion, f64)> {
    versions.iter().rev().find_map(|v| {
        let a = state(v)?;
        (a["status"] == "running" && !v.live).then(|| (v, a["share"].as_f64().unwrap_or(0.0)))
    })
}

/// Starts an A/B of `id` against the live version. Only one runs at a time.
pub fn start(store: &Store, id: &str, cfg: &AbConfig) -> Result<ModelVersion> {
    cfg.check()?;
    let versions = store.model_versions()?;
    if let Some((v, _)) = running(&versions) {
        if v.id != id {
            bail!("an A/B of `{}` is already running: judge or stop it first (`keel-train models ab judge --apply`)", v.id);
        }
    }
    let mut v = versions.iter().find(|v| v.id == id).cloned().with_context(|| format!("no model version `{id}`"))?;
    if v.live {
        bail!("`{id}` is the live version: an A/B needs a candidate");
    }
    if v.adapter_path.is_none() {
        bail!("`{id}` has no adapter to serve");
    }
    if !v.eval.is_object() {
        v.eval = json!({});
    }
    v.eval["ab"] = json!({
        "status": "running", "share": cfg.share, "alpha": cfg.alpha, "tau": cfg.tau,
        "min_decisions": cfg.min_decisions, "max_decisions": cfg.max_decisions,
        "started_at": keel_trajectory::now_ms(),
        "live": store.live_model_version()?.map(|l| l.id),
    });
    store.put_model_version(&v)?;
    Ok(v)
}

/// The figures and the verdict of the running A/B, without acting on it.
pub fn status(store: &Store) -> Result<Option<(ModelVersion, ArmStats, ArmStats, Verdict)>> {
    let versions = store.model_versions()?;
    let Some((cand, _)) = running(&versions) else { return Ok(None) };
    let a = state(cand).cloned().unwrap_or_default();
    let cfg: AbConfig = serde_json::from_value(json!({
        "share": a["share"], "alpha": a.get("alpha").cloned().unwrap_or(json!(alpha())), "tau": a.get("tau").cloned().unwrap_or(json!(tau())),
        "min_decisions": a.get("min_decisions").cloned().unwrap_or(json!(min_decisions())),
        "max_decisions": a.get("max_decisions").cloned().unwrap_or(json!(max_decisions())),
    }))
    .context("the A/B state in the store is malformed")?;
    let since = a["started_at"].as_i64().unwrap_or(0);
    let live_id = match store.live_model_version()? {
        Some(l) => l.id,
        None => a["live"].as_str().map(str::to_string).context("no live version to compare the candidate with")?,
    };
    let live = arm_stats(store, &live_id, since)?;
    let candidate = arm_stats(store, &cand.id, since)?;
    let verdict = judge(&live, &candidate, &cfg);
    Ok(Some((cand.clone(), live, candidate, verdict)))
}

/// Judges the running A/B and acts on a verdict: promote (the candidate becomes live) or roll
/// back (the candidate is withdrawn; the live version never changed). Returns the verdict, or
/// `None` when no A/B runs.
pub fn judge_and_apply(store: &mut Store) -> Result<Option<(ModelVersion, Verdict)>> {
    let Some((mut cand, live, candidate, verdict)) = status(store)? else { return Ok(None) };
    if matches!(verdict, Verdict::Continue(_)) {
        return Ok(Some((cand, verdict)));
    }
    let status = if matches!(verdict, Verdict::Promote(_)) { "promoted" } else { "rolled_back" };
    cand.eval["ab"]["status"] = json!(status);
    cand.eval["ab"]["decided_at"] = json!(keel_trajectory::now_ms());
    cand.eval["ab"]["why"] = json!(verdict.why());
    cand.eval["ab"]["live_stats"] = live.json();
    cand.eval["ab"]["candidate_stats"] = candidate.json();
    store.put_model_version(&cand)?;
    if matches!(verdict, Verdict::Promote(_)) {
        crate::models::promote(store, &cand.id)?;
    }
    Ok(Some((cand, verdict)))
}

/// Stops the running A/B without a verdict (the candidate is withdrawn).
pub fn stop(store: &Store, why: &str) -> Result<Option<ModelVersion>> {
    let versions = store.model_versions()?;
    let Some((cand, _)) = running(&versions) else { return Ok(None) };
    let mut cand = cand.clone();
    cand.eval["ab"]["status"] = json!("rolled_back");
    cand.eval["ab"]["decided_at"] = json!(keel_trajectory::now_ms());
    cand.eval["ab"]["why"] = json!(why);
    store.put_model_version(&cand)?;
    Ok(Some(cand))
}

/// One line on the running A/B, for `models ab status` and the schedule.
pub fn line(cand: &ModelVersion, verdict: &Verdict) -> String {
    format!("A/B of {}: {} — {}", cand.id, verdict.name(), verdict.why())
}
