//! Critical decisions by Monte Carlo Tree Search over the recorded decision trees (SEAlign's core
//! step).
//!
//! Each episode's recorded steps become a tree: a node is a state (the message list the model saw),
//! an edge an action proposed there. Human decisions are known values on their edges (accepted 1,
//! edited 1, rejected 0, reverted 0, automatic rejection 0). A simulation selects edges by UCT from
//! the root, expands a node the first time it is reached by sampling K alternative actions from the
//! policy, evaluates a new edge by replaying the path in a fresh environment (a sandbox container),
//! rolling out with the policy to `finish` or the depth limit, and running the task's verification
//! command (1 if it passes, 0 if not), and backs the value up the path.
//!
//! A node whose children's mean values differ by more than a margin, each with enough visits, is a
//! *critical decision*: its best and worst children become a preference pair.
//!
//! Replay follows the recorded transitions and runs the shared agent (`keel-agent`): its tools,
//! its rules and its observations, over the container's workspace, so a rebuilt state is the
//! recorded one byte for byte (each rebuilt recorded state's hash is checked against the store's).
//! A user's decision is final for its step: a step the user rejected is never executed — its child
//! state is the recorded one (the model was told it was rejected) — and it is never the preferred
//! side of a pair; a step the user asked "another" for has no child. Sampled actions that the rules
//! reject automatically (invalid calls, loops, edits that do not apply) are leaves worth the
//! automatic value. Every state search builds goes through the store's redaction.
//!
//! Determinism: simulations run in waves of `parallel`. Within a wave, paths are selected one after
//! the other (with virtual loss so they spread out) and policy samples are seeded from the global
//! seed and the node, so the tree depends only on the seed — not on which rollout finishes first.

use std::collections::HashMap;

use anyhow::Result;
use keel_agent::{Agent, Workspace};
use keel_trajectory::action::parse_output;
use keel_trajectory::{Action, Decision, Episode, EpisodeTree, ModelOutput, Observation, Parsed, Prompt, RejectCause, state_hash};
use serde_json::{Value, json};

pub mod policy;
pub mod sandbox_env;

/// Samples actions at a state.
pub trait Policy: Sync {
    /// `k` outputs at `prompt`, deterministic for a given `seed`.
    fn sample(&self, prompt: &Prompt, k: usize, seed: u64) -> Result<Vec<ModelOutput>>;
    /// The model version that samples, for the pairs' meta.
    fn version(&self) -> Option<String> {
        None
    }
}

/// Makes fresh copies of an episode's workspace to roll out in.
pub trait Environment: Sync {
    type Session<'a>: Session
    where
        Self: 'a;
    fn start<'a>(&'a self, episode: &Episode) -> Result<Self::Session<'a>>;
}

/// One rollout's workspace.
pub trait Session {
    /// The workspace the agent's tools act on.
    fn workspace(&self) -> &dyn Workspace;
    /// Restores the protected files (path, original text), then runs the verification command
    /// (passed when it exits 0).
    fn verify(&mut self, command: &str, protected: &[(String, String)]) -> Result<Observation> {
        keel_agent::task::verify(self.workspace(), command, protected).map_err(|e| anyhow::anyhow!(e))
    }
    /// Why the environment failed under this session (the container engine stopped, the container
    /// was lost), if it did: then nothing the session answered is an outcome.
    fn lost(&self) -> Option<String> {
        None
    }
}

/// An error when the environment failed under `session`: a rollout or episode that saw its engine
/// fail has no outcome (a failed read looked like a missing file to the rules; a failed command
/// like a failing test), so it must not be counted as one.
pub fn check_session<S: Session + ?Sized>(session: &S) -> Result<()> {
    match session.lost() {
        Some(why) => anyhow::bail!("the container engine failed during the run, so it has no outcome: {why}"),
        None => Ok(()),
    }
}

#[derive(Debug, Clone)]
pub struct SearchConfig {
    pub simulations: usize,
    pub expand: usize,
    pub c_uct: f64,
    pub margin: f64,
    pub max_depth: usize,
    pub parallel: usize,
    pub seed: u64,
    /// Visits each of the two children needs before their values count.
    pub min_visits: u32,
    /// The verification command when the episode has none.
    pub verify: Option<String>,
    pub values: HumanValues,
    /// Reads' observations are cut at this many bytes (the editor's default).
    pub observation_bytes: usize,
}

impl Default for SearchConfig {
    fn default() -> Self {
        SearchConfig {
            simulations: 32,
            expand: 3,
            c_uct: 1.0,
            margin: 0.5,
            max_depth: 8,
            parallel: 4,
            seed: 0,
            min_visits: 2,
            verify: None,
            values: HumanValues::default(),
            observation_bytes: keel_agent::DEFAULT_OBSERVATION_BYTES,
        }
    }
}

/// What a human decision is worth (ARCHITECTURE.md, "States, values and replay").
#[derive(Debug, Clone, Copy)]
pub struct HumanValues {
    pub accepted: f64,
    pub edited: f64,
    pub rejected: f64,
    pub reverted: f64,
    pub automatic: f64,
}

impl Default for HumanValues {
    fn default() -> Self {
        HumanValues { accepted: 1.0, edited: 1.0, rejected: 0.0, reverted: 0.0, automatic: 0.0 }
    }
}

impl HumanValues {
    pub fn of(&self, d: &Decision) -> Option<f64> {
        match d {
            Decision::Accepted => Some(self.accepted),
            Decision::Edited { .. } => Some(self.edited),
            Decision::Reverted => Some(self.reverted),
            d if d.is_automatic_rejection() => Some(self.automatic),
            Decision::Rejected { .. } => Some(self.rejected),
            Decision::Auto | Decision::Unreviewed | Decision::Superseded { .. } => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    Recorded(uuid::Uuid),
    Sampled,
}

#[derive(Debug, Clone)]
pub struct Edge {
    pub output: ModelOutput,
    pub parsed: Parsed,
    /// Identifies the action (tool and arguments, or the raw output when it did not parse).
    pub key: String,
    pub origin: Origin,
    pub human: Option<f64>,
    /// The recorded decision (recorded edges), or the automatic rejection a replay found.
    pub decision: Option<Decision>,
    /// The recorded observation (what the model was shown after the step).
    pub observation: Option<Observation>,
    pub n: u32,
    pub w: f64,
    virtual_loss: u32,
    pub child: Option<usize>,
}

impl Edge {
    pub fn q(&self) -> f64 {
        if self.n == 0 { 0.0 } else { self.w / self.n as f64 }
    }

    /// The user turned this step down (rejected it, asked for another, or undid it): it is never
    /// executed and never preferred.
    pub fn user_rejected(&self) -> bool {
        self.decision.as_ref().is_some_and(|d| d.is_human_rejection() || matches!(d, Decision::Reverted))
    }

    /// Rejected by the rules (recorded or found in a replay).
    pub fn auto_rejected(&self) -> bool {
        self.decision.as_ref().is_some_and(Decision::is_automatic_rejection)
    }

    /// Carried out when a path goes through it.
    fn executes(&self) -> bool {
        !self.user_rejected() && !self.auto_rejected()
    }

    /// The value a pair compares: a decision made about the step itself (the user's, or the
    /// rules') is its value; otherwise the mean of the rollouts below it.
    pub fn value(&self) -> f64 {
        match self.human {
            Some(h) if self.user_rejected() || self.auto_rejected() => h,
            _ => self.q(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Node {
    pub prompt: Prompt,
    pub state_hash: String,
    pub depth: usize,
    pub edges: Vec<Edge>,
    pub expanded: bool,
    pub n: u32,
    /// A state recorded in the store (else one search built).
    pub recorded: bool,
    /// For a recorded state below the root: the hash of the state a replay rebuilt in the
    /// container (equal to `state_hash` when the replay is faithful).
    pub replayed_hash: Option<String>,
}

impl Node {
    fn new(prompt: Prompt, state_hash: String, depth: usize, recorded: bool) -> Node {
        Node { prompt, state_hash, depth, edges: vec![], expanded: false, n: 0, recorded, replayed_hash: None }
    }

    /// The mean value of the rollouts through this state.
    pub fn value(&self) -> f64 {
        let (n, w) = self.edges.iter().fold((0u32, 0.0), |(n, w), e| (n + e.n, w + e.w));
        if n == 0 { 0.0 } else { w / n as f64 }
    }
}

/// One episode's search tree.
pub struct Tree {
    pub episode: Episode,
    pub nodes: Vec<Node>,
    /// Recorded steps not in the tree, and the episodes they belong to: a step that led to another
    /// state than the same step of an earlier episode (a command whose output differs run to run,
    /// or anything else in the state that differs) is left out with the steps below it.
    pub left_out: usize,
    pub left_out_episodes: usize,
}

fn action_key(output: &ModelOutput, parsed: &Parsed) -> String {
    match parsed {
        Parsed::Action { action, .. } => format!("{}:{}", action.tool_name(), action.arguments()),
        Parsed::Error { .. } => format!("raw:{}", serde_json::to_string(output).unwrap_or_default()),
    }
}

impl Tree {
    /// The recorded tree: recorded steps are edges, their decisions known values.
    pub fn from_episode(t: &EpisodeTree, values: &HumanValues) -> Option<Tree> {
        Tree::from_episodes(std::slice::from_ref(t), values)
    }

    /// One tree over several episodes of the same task (the samples `collect` takes): their
    /// shared prefixes merge, as SEAlign merges them — the same action at the same state is one
    /// edge, and the states it leads to one node. Episodes whose first state differs from the
    /// first episode's are left out (the caller groups episodes by task). A verified episode is one
    /// observed rollout along its path: every step it carried out on the way to its end is worth its
    /// outcome (a node's value is the success rate below it); rejected steps keep the value of their
    /// decision.
    pub fn from_episodes(ts: &[EpisodeTree], values: &HumanValues) -> Option<Tree> {
        let t0 = ts.first()?;
        let first = t0.steps.iter().find(|s| s.step.parent_id.is_none())?;
        let mut tree = Tree {
            episode: t0.episode.clone(),
            nodes: vec![Node::new(first.step.prompt.clone(), first.step.state_hash.clone(), 0, true)],
            left_out: 0,
            left_out_episodes: 0,
        };
        for t in ts {
            if t.steps.iter().find(|s| s.step.parent_id.is_none()).is_none_or(|f| f.step.state_hash != tree.nodes[0].state_hash) {
                continue;
            }
            // The edge each step of this episode became.
            let mut edge_of_step: HashMap<uuid::Uuid, (usize, usize)> = HashMap::new();
            let left_before = tree.left_out;
            for s in &t.steps {
                let node = match s.step.parent_id {
                    None => 0,
                    Some(p) => {
                        let Some(&(pn, pe)) = edge_of_step.get(&p) else {
                            tree.left_out += 1;
                            continue;
                        };
                        match tree.nodes[pn].edges[pe].child {
                            Some(c) if tree.nodes[c].state_hash == s.step.state_hash => c,
                            // The same step led elsewhere in another episode (a command's output
                            // differed): the first record stands, this branch is left out.
                            Some(_) => {
                                tree.left_out += 1;
                                continue;
                            }
                            None => {
                                let depth = tree.nodes[pn].depth + 1;
                                tree.nodes.push(Node::new(s.step.prompt.clone(), s.step.state_hash.clone(), depth, true));
                                let i = tree.nodes.len() - 1;
                                tree.nodes[pn].edges[pe].child = Some(i);
                                i
                            }
                        }
                    }
                };
                let human = s.decision().and_then(|d| values.of(d));
                let key = action_key(&s.step.output, &s.step.parsed);
                if let Some(e) = tree.nodes[node].edges.iter().position(|e| e.key == key) {
                    // The same action again at this state (another episode, or a resample that
                    // repeated itself): one edge, and the steps below either copy hang under it.
                    // (A copy the rules resampled after has no observation; one they moved on
                    // after has: the edge shows what the model was shown.)
                    let edge = &mut tree.nodes[node].edges[e];
                    if edge.observation.is_none() {
                        edge.observation = s.observation.clone();
                    }
                    edge_of_step.insert(s.step.id, (node, e));
                    continue;
                }
                let (n, w) = match human {
                    Some(v) => (1, v),
                    None => (0, 0.0),
                };
                tree.nodes[node].edges.push(Edge {
                    output: s.step.output.clone(),
                    parsed: s.step.parsed.clone(),
                    key,
                    origin: Origin::Recorded(s.step.id),
                    human,
                    decision: s.decision().cloned(),
                    observation: s.observation.clone(),
                    n,
                    w,
                    virtual_loss: 0,
                    child: None,
                });
                tree.nodes[node].n += n;
                edge_of_step.insert(s.step.id, (node, tree.nodes[node].edges.len() - 1));
            }
            if tree.left_out > left_before {
                tree.left_out_episodes += 1;
            }
            if let (Some(outcome), Some(last)) = (t.end.as_ref().and_then(|e| e.outcome.as_ref()), t.steps.last()) {
                let reward = if outcome.passed { 1.0 } else { 0.0 };
                let mut at = Some(last.step.id);
                while let Some(id) = at {
                    if let Some(&(n, e)) = edge_of_step.get(&id) {
                        let edge = &mut tree.nodes[n].edges[e];
                        if edge.executes() && edge.human.is_none() {
                            edge.n += 1;
                            edge.w += reward;
                            tree.nodes[n].n += 1;
                        }
                    }
                    at = t.step(id).and_then(|s| s.step.parent_id);
                }
            }
        }
        Some(tree)
    }

    fn uct(&self, node: usize, c: f64) -> Option<usize> {
        let nd = &self.nodes[node];
        let total: u32 = nd.edges.iter().map(|e| e.n + e.virtual_loss).sum();
        let ln = ((total.max(1)) as f64).ln();
        let mut best: Option<(usize, f64)> = None;
        for (i, e) in nd.edges.iter().enumerate() {
            let n = e.n + e.virtual_loss;
            let score = if n == 0 {
                f64::INFINITY
            } else {
                // A virtual loss counts as a visit with value 0.
                e.w / n as f64 + c * (ln / n as f64).sqrt()
            };
            if best.is_none_or(|(_, s)| score > s) {
                best = Some((i, score));
            }
        }
        best.map(|b| b.0)
    }

    fn add_samples(&mut self, node: usize, outputs: Vec<ModelOutput>) {
        for output in outputs {
            let parsed = parse_output(&output);
            let key = action_key(&output, &parsed);
            if self.nodes[node].edges.iter().any(|e| e.key == key) {
                continue;
            }
            self.nodes[node].edges.push(Edge { output, parsed, key, origin: Origin::Sampled, human: None, decision: None, observation: None, n: 0, w: 0.0, virtual_loss: 0, child: None });
        }
        self.nodes[node].expanded = true;
    }
}

/// Mixes a seed with a node's identity.
pub fn seed_for(seed: u64, parts: &[&[u8]]) -> u64 {
    let mut h = blake3::Hasher::new();
    h.update(&seed.to_le_bytes());
    for p in parts {
        h.update(p);
    }
    u64::from_le_bytes(h.finalize().as_bytes()[..8].try_into().unwrap())
}

/// A selected path: (node, edge) pairs from the root.
struct Selected {
    path: Vec<(usize, usize)>,
    sim: usize,
}

struct Evaluated {
    reward: f64,
    /// The state after each edge of the path (`None`: a leaf), to create or check child nodes.
    children: Vec<Option<Prompt>>,
    /// The automatic rejection a replay found for the path's last edge (a sampled action).
    rejected: Option<Decision>,
}

/// An edge of a selected path, as a rollout needs it.
#[derive(Clone)]
struct PathEdge {
    output: ModelOutput,
    parsed: Parsed,
    executes: bool,
    /// A user-rejected or automatically rejected step: what the model was shown.
    shown: Option<Observation>,
    decision: Option<Decision>,
    /// The recorded child state, if there is one.
    recorded_child: Option<Prompt>,
}

fn is_finish(p: &Parsed) -> bool {
    matches!(p, Parsed::Action { action: Action::Finish { .. }, .. })
}

/// Runs the search on one tree.
pub fn search<P: Policy, E: Environment>(tree: &mut Tree, policy: &P, env: &E, cfg: &SearchConfig) -> Result<SearchStats> {
    let verify = tree.episode.verify.clone().or_else(|| cfg.verify.clone());
    let Some(verify) = verify else {
        anyhow::bail!("episode {} has no verification command (give one with --verify or in the episode)", tree.episode.id);
    };
    let mut stats = SearchStats::default();
    replay_recorded(tree, env, cfg, &mut stats)?;
    let mut sim = 0usize;
    while sim < cfg.simulations {
        let wave = cfg.parallel.max(1).min(cfg.simulations - sim);
        let mut selected = Vec::with_capacity(wave);
        for _ in 0..wave {
            let s = select(tree, policy, cfg, sim, &mut stats)?;
            for &(n, e) in &s.path {
                tree.nodes[n].edges[e].virtual_loss += 1;
            }
            selected.push(s);
            sim += 1;
        }
        // Evaluate the wave in parallel; results are used in selection order.
        let results: Vec<Result<Evaluated>> = std::thread::scope(|scope| {
            let handles: Vec<_> = selected
                .iter()
                .map(|s| {
                    let path = path_edges(tree, &s.path);
                    let root = tree.nodes[0].prompt.clone();
                    let episode = &tree.episode;
                    let verify = verify.as_str();
                    let sim = s.sim;
                    scope.spawn(move || evaluate(episode, root, &path, policy, env, cfg, verify, sim))
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap_or_else(|_| Err(anyhow::anyhow!("a rollout panicked")))).collect()
        });
        for (s, r) in selected.into_iter().zip(results) {
            for &(n, e) in &s.path {
                tree.nodes[n].edges[e].virtual_loss -= 1;
            }
            let r = match r {
                Ok(r) => r,
                Err(e) => {
                    // A rollout the environment lost (the engine stopped, its container removed):
                    // counted, no value changed, the search goes on — unless it keeps happening.
                    stats.failed_rollouts += 1;
                    tracing::warn!("episode {}: a rollout failed: {e:#}", tree.episode.id);
                    eprintln!("search: episode {}: a rollout failed ({} so far): {e:#}", tree.episode.id, stats.failed_rollouts);
                    if stats.failed_rollouts > max_failed_rollouts(cfg) {
                        return Err(e.context(format!("{} rollouts of episode {} failed: giving up on its search", stats.failed_rollouts, tree.episode.id)));
                    }
                    continue;
                }
            };
            stats.rollouts += 1;
            if r.reward > 0.0 {
                stats.successes += 1;
            }
            // Check the recorded states the replay rebuilt; grow the path's missing child nodes from
            // the states the rollout reached.
            check_replay(tree, &s.path, &r.children, &mut stats);
            let last = s.path.len().saturating_sub(1);
            for (i, &(n, e)) in s.path.iter().enumerate() {
                if i == last {
                    if let Some(d) = &r.rejected {
                        let edge = &mut tree.nodes[n].edges[e];
                        if edge.decision.is_none() {
                            edge.decision = Some(d.clone());
                            edge.human = cfg.values.of(d);
                        }
                    }
                }
                let rebuilt = r.children.get(i).cloned().flatten();
                if let (None, Some(p)) = (tree.nodes[n].edges[e].child, rebuilt) {
                    if !is_finish(&tree.nodes[n].edges[e].parsed) {
                        let depth = tree.nodes[n].depth + 1;
                        let h = state_hash(&p);
                        tree.nodes.push(Node::new(p, h, depth, false));
                        let idx = tree.nodes.len() - 1;
                        tree.nodes[n].edges[e].child = Some(idx);
                    }
                }
                let edge = &mut tree.nodes[n].edges[e];
                edge.n += 1;
                edge.w += r.reward;
                tree.nodes[n].n += 1;
            }
        }
    }
    // Lost rollouts below the give-up threshold are tolerated, but a search none of whose
    // rollouts finished learned nothing: an error, so that no caller records it as searched (the
    // loop's pairs file, which a rerun reuses).
    if stats.rollouts == 0 && stats.failed_rollouts > 0 {
        anyhow::bail!("every rollout of episode {} failed ({}): nothing was learned from its search", tree.episode.id, stats.failed_rollouts);
    }
    Ok(stats)
}

fn select<P: Policy>(tree: &mut Tree, policy: &P, cfg: &SearchConfig, sim: usize, stats: &mut SearchStats) -> Result<Selected> {
    let mut node = 0;
    let mut path = Vec::new();
    loop {
        if tree.nodes[node].depth >= cfg.max_depth {
            break;
        }
        if !tree.nodes[node].expanded {
            let seed = seed_for(cfg.seed, &[tree.nodes[node].state_hash.as_bytes(), b"expand"]);
            let outputs = policy.sample(&tree.nodes[node].prompt, cfg.expand, seed)?;
            stats.samples += outputs.len();
            tree.add_samples(node, outputs);
        }
        let Some(e) = tree.uct(node, cfg.c_uct) else { break };
        path.push((node, e));
        let edge = &tree.nodes[node].edges[e];
        let unvisited = edge.n == 0;
        if is_finish(&edge.parsed) || unvisited || (!edge.executes() && edge.child.is_none()) {
            break;
        }
        match edge.child {
            Some(c) => node = c,
            None => break,
        }
    }
    Ok(Selected { path, sim })
}

/// A path replayed in a fresh workspace.
struct Replayed<S> {
    session: S,
    agent: Agent,
    children: Vec<Option<Prompt>>,
    /// The path ended in a leaf: its value, and the automatic rejection found for a sampled last edge.
    leaf: Option<(f64, Option<Decision>)>,
    finished: bool,
}

/// Replays a path with the shared agent: recorded transitions as recorded (a step the user or the
/// rules rejected is not carried out; the model is shown what it was shown), the others carried out
/// in the workspace.
fn replay<'a, E: Environment>(episode: &Episode, root: Prompt, path: &[PathEdge], env: &'a E, cfg: &SearchConfig) -> Result<Replayed<E::Session<'a>>> {
    let session = env.start(episode)?;
    let mut agent = Agent::new(root, cfg.observation_bytes);
    let mut children = Vec::with_capacity(path.len());
    for (i, pe) in path.iter().enumerate() {
        let ws = session.workspace();
        if !pe.executes {
            // The user's (or the rules') decision stands: not carried out. The rules still see the
            // action (for loops), as they did when it was recorded.
            let verdict = agent.judge(&pe.parsed, ws);
            let retry = matches!(&pe.decision, Some(Decision::Rejected { cause: RejectCause::Retry, .. }));
            match (&pe.recorded_child, retry) {
                (Some(child), false) => {
                    // The recorded transition, rebuilt from the recorded observation; without one,
                    // what the rules say of the step (an automatic rejection is not the user's).
                    let shown = pe.shown.clone().unwrap_or_else(|| match (&pe.decision, verdict) {
                        (Some(d), keel_agent::Verdict::Rejected { cause, message }) if d.is_automatic_rejection() => keel_agent::tools::rejected(cause, &message),
                        _ => keel_agent::tools::user_rejected(None),
                    });
                    agent.advance(&pe.parsed, &pe.output, &shown);
                    children.push(Some(agent.prompt().clone()));
                    follow_record(&mut agent, child, cfg);
                }
                _ => {
                    // A leaf: "another" has no child state, and the transition of a rejected step
                    // that was never recorded is not invented.
                    children.push(None);
                    let value = pe.decision.as_ref().and_then(|d| cfg.values.of(d)).unwrap_or(0.0);
                    return Ok(Replayed { session, agent, children, leaf: Some((value, None)), finished: false });
                }
            }
            continue;
        }
        // An edit the user accepted in part, or changed after accepting, is recorded `edited` with
        // the text they kept: the state below it holds that text, not the model's whole proposal.
        let kept = match (&pe.decision, pe.parsed.action()) {
            (Some(Decision::Edited { final_text }), Some(Action::Edit { path, old_text, .. })) => match ws.read(path) {
                Ok(keel_agent::FileRead::Text(before)) => Some((path.clone(), before, old_text.clone(), final_text.clone())),
                _ => None,
            },
            _ => None,
        };
        let u = agent.step_unattended(&pe.output, ws);
        if let Some((path, before, old_text, final_text)) = kept.filter(|_| u.advanced && !u.decision.is_automatic_rejection()) {
            if !before.contains(&old_text) {
                // (A file whose line ends differ from old_text's: the agent's edit matched it
                // loosely; the model's proposal stays, and the state is a replay mismatch.)
                tracing::warn!("replay: the edited step's old_text is not verbatim in {path}; the model's proposal stands");
            } else if let Err(e) = ws.write(&path, &before.replacen(&old_text, &final_text, 1)) {
                tracing::warn!("replay: writing the text the user kept in {path}: {e}");
            }
        }
        // The engine failed under this step: the rest of the path is not carried out (each step
        // would fail again, a remote engine's only after its timeout).
        check_session(&session)?;
        if u.decision.is_automatic_rejection() {
            // A sampled action the rules reject: a leaf worth the automatic value.
            children.push(None);
            let last = i + 1 == path.len();
            return Ok(Replayed { session, agent, children, leaf: Some((cfg.values.automatic, last.then_some(u.decision))), finished: false });
        }
        if u.finished {
            children.push(None);
            return Ok(Replayed { session, agent, children, leaf: None, finished: true });
        }
        children.push(u.advanced.then(|| agent.prompt().clone()));
        if let Some(child) = &pe.recorded_child {
            follow_record(&mut agent, child, cfg);
        }
    }
    Ok(Replayed { session, agent, children, leaf: None, finished: false })
}

/// Below a recorded state the record is followed, whatever the rebuild gave (a mismatch is
/// counted by the caller).
fn follow_record(agent: &mut Agent, recorded: &Prompt, cfg: &SearchConfig) {
    if state_hash(agent.prompt()) != state_hash(recorded) {
        *agent = Agent::new(recorded.clone(), cfg.observation_bytes);
    }
}

/// Replays a path, rolls out with the policy from the state after it (every proposal carried
/// out), and runs the verification command.
#[allow(clippy::too_many_arguments)]
fn evaluate<P: Policy, E: Environment>(episode: &Episode, root: Prompt, path: &[PathEdge], policy: &P, env: &E, cfg: &SearchConfig, verify: &str, sim: usize) -> Result<Evaluated> {
    let Replayed { mut session, mut agent, children, leaf, finished } = replay(episode, root, path, env, cfg)?;
    if let Some((reward, rejected)) = leaf {
        // An automatic rejection the engine's failure caused is not the rules' verdict.
        check_session(&session)?;
        return Ok(Evaluated { reward, children, rejected });
    }
    if !finished && path.len() < cfg.max_depth {
        let depth0 = path.len();
        keel_agent::run_unattended(
            &mut agent,
            session.workspace(),
            cfg.max_depth - depth0,
            |prompt, n| {
                // The engine failed under the rollout: it stops here, without asking the model again.
                check_session(&session)?;
                let seed = seed_for(cfg.seed, &[&(sim as u64).to_le_bytes(), &((depth0 + n) as u64).to_le_bytes(), b"rollout"]);
                policy.sample(prompt, 1, seed)?.into_iter().next().ok_or_else(|| anyhow::anyhow!("the policy gave no sample"))
            },
            |_, _, _| {},
        )?;
    }
    check_session(&session)?;
    let ok = session.verify(verify, &keel_agent::task::episode_protected(episode))?.exit_code == Some(0);
    check_session(&session)?;
    Ok(Evaluated { reward: if ok { 1.0 } else { 0.0 }, children, rejected: None })
}

fn path_edges(tree: &Tree, path: &[(usize, usize)]) -> Vec<PathEdge> {
    path.iter()
        .map(|&(n, e)| {
            let edge = &tree.nodes[n].edges[e];
            PathEdge {
                output: edge.output.clone(),
                parsed: edge.parsed.clone(),
                executes: edge.executes(),
                shown: edge.observation.clone(),
                decision: edge.decision.clone(),
                recorded_child: edge.child.filter(|&c| tree.nodes[c].recorded).map(|c| tree.nodes[c].prompt.clone()),
            }
        })
        .collect()
}

/// Checks the states a replay rebuilt against the recorded ones on `path`.
fn check_replay(tree: &mut Tree, path: &[(usize, usize)], children: &[Option<Prompt>], stats: &mut SearchStats) {
    for (&(n, e), rebuilt) in path.iter().zip(children) {
        let (Some(c), Some(p)) = (tree.nodes[n].edges[e].child, rebuilt) else { continue };
        if !tree.nodes[c].recorded || tree.nodes[c].replayed_hash.is_some() {
            continue;
        }
        let h = state_hash(p);
        if h == tree.nodes[c].state_hash {
            stats.replayed += 1;
        } else {
            stats.replay_mismatches += 1;
            let tail = |p: &Prompt| serde_json::to_string(&p.messages[p.messages.len().saturating_sub(2)..]).unwrap_or_default();
            eprintln!(
                "episode {}: the state rebuilt at depth {} differs from the recorded one:\n  rebuilt  {}\n  recorded {}",
                tree.episode.id,
                tree.nodes[c].depth,
                tail(p),
                tail(&tree.nodes[c].prompt)
            );
        }
        tree.nodes[c].replayed_hash = Some(h);
    }
}

/// Replays every recorded path once (before the simulations), so every recorded state is rebuilt
/// in a container and checked against the store.
fn replay_recorded<E: Environment>(tree: &mut Tree, env: &E, cfg: &SearchConfig, stats: &mut SearchStats) -> Result<()> {
    let mut parent: HashMap<usize, (usize, usize)> = HashMap::new();
    for (n, node) in tree.nodes.iter().enumerate() {
        for (e, edge) in node.edges.iter().enumerate() {
            if let Some(c) = edge.child {
                parent.insert(c, (n, e));
            }
        }
    }
    let leaves: Vec<usize> = (0..tree.nodes.len())
        .filter(|&n| tree.nodes[n].recorded && !tree.nodes[n].edges.iter().any(|e| e.child.is_some_and(|c| tree.nodes[c].recorded)))
        .collect();
    for leaf in leaves {
        let mut path = Vec::new();
        let mut at = leaf;
        while let Some(&(n, e)) = parent.get(&at) {
            path.push((n, e));
            at = n;
        }
        path.reverse();
        if path.is_empty() || tree.nodes[leaf].replayed_hash.is_some() {
            continue;
        }
        let edges = path_edges(tree, &path);
        let r = replay(&tree.episode, tree.nodes[0].prompt.clone(), &edges, env, cfg)?;
        // A state the engine's failure changed is not a replay mismatch.
        check_session(&r.session)?;
        check_replay(tree, &path, &r.children, stats);
    }
    Ok(())
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SearchStats {
    pub rollouts: usize,
    pub successes: usize,
    pub samples: usize,
    /// Recorded states a replay rebuilt byte for byte (same hash as in the store) ...
    pub replayed: usize,
    /// ... and those it rebuilt differently.
    pub replay_mismatches: usize,
    /// Rollouts the environment failed (not counted in `rollouts`; no value changed).
    pub failed_rollouts: usize,
}

/// How many failed rollouts a tree's search survives: a quarter of its simulations, at least 2.
fn max_failed_rollouts(cfg: &SearchConfig) -> usize {
    (cfg.simulations / 4).max(2)
}

/// A critical decision found in a tree.
#[derive(Debug, Clone)]
pub struct Critical {
    pub node: usize,
    pub best: usize,
    pub worst: usize,
}

/// The nodes whose children's values differ by more than the margin, each side visited enough (a
/// human decision about the step counts as enough: it is what the user said). A step the user
/// turned down is never the preferred side.
pub fn critical(tree: &Tree, cfg: &SearchConfig) -> Vec<Critical> {
    let mut out = Vec::new();
    for (i, n) in tree.nodes.iter().enumerate() {
        let visited: Vec<(usize, &Edge)> = n.edges.iter().enumerate().filter(|(_, e)| e.n >= cfg.min_visits || (e.human.is_some() && matches!(e.origin, Origin::Recorded(_)))).collect();
        if visited.len() < 2 {
            continue;
        }
        // Ties broken by the edge order, which is deterministic.
        let Some(best) = visited.iter().filter(|(_, e)| !e.user_rejected()).fold(None::<(usize, &Edge)>, |a, b| match a {
            Some(a) if b.1.value() <= a.1.value() => Some(a),
            _ => Some(*b),
        }) else {
            continue;
        };
        let worst = visited.iter().fold(visited[0], |a, b| if b.1.value() < a.1.value() { *b } else { a });
        if best.0 != worst.0 && best.1.value() - worst.1.value() > cfg.margin {
            out.push(Critical { node: i, best: best.0, worst: worst.0 });
        }
    }
    out
}

fn edge_message(e: &Edge) -> Value {
    match &e.parsed {
        Parsed::Action { action, .. } => json!({
            "role": "assistant", "content": "",
            "tool_calls": [{"type": "function", "function": {"name": action.tool_name(), "arguments": action.arguments()}}],
        }),
        Parsed::Error { .. } => json!({"role": "assistant", "content": e.output.content.clone().unwrap_or_default()}),
    }
}

/// The preference pairs of the critical decisions (TRL conversational format, `meta.source = "mcts"`).
pub fn pairs(tree: &Tree, found: &[Critical], model_version: Option<&str>) -> Vec<Value> {
    found
        .iter()
        .map(|c| {
            let n = &tree.nodes[c.node];
            let (b, w) = (&n.edges[c.best], &n.edges[c.worst]);
            json!({
                "prompt": n.prompt.messages.iter().map(crate::pairs::message_json).collect::<Vec<_>>(),
                "chosen": [edge_message(b)],
                "rejected": [edge_message(w)],
                "tools": n.prompt.tools.as_ref(),
                "meta": {
                    "source": "mcts",
                    "episode": tree.episode.id,
                    "state_hash": n.state_hash,
                    "depth": n.depth,
                    "q_chosen": b.value(), "q_rejected": w.value(),
                    "visits_chosen": b.n, "visits_rejected": w.n, "visits_state": n.n,
                    "model_version": model_version,
                    "task_kind": tree.episode.task.kind.as_str(),
                    "language": tree.episode.task.language,
                }
            })
        })
        .collect()
}

/// The tree as JSON a person can read: each node's `state_hash`, whether it was `recorded` or
/// `sampled`, its visits and value, and for recorded states the hash a replay rebuilt.
pub fn tree_json(tree: &Tree, found: &[Critical]) -> Value {
    let nodes: Vec<Value> = tree
        .nodes
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let crit = found.iter().find(|c| c.node == i);
            let shown = n.prompt.messages.last().filter(|m| m.role == keel_trajectory::Role::Tool).and_then(|m| m.content.clone());
            json!({
                "id": i,
                "depth": n.depth,
                "state_hash": n.state_hash,
                "origin": if n.recorded { "recorded" } else { "sampled" },
                "replayed_hash": n.replayed_hash,
                "replay": n.replayed_hash.as_ref().map(|h| if *h == n.state_hash { "match" } else { "mismatch" }),
                "visits": n.n,
                "value": n.value(),
                "observation": shown,
                "critical": crit.is_some(),
                "edges": n.edges.iter().enumerate().map(|(j, e)| json!({
                    "action": match &e.parsed { Parsed::Action { action, .. } => json!({"tool": action.tool_name(), "arguments": action.arguments()}), Parsed::Error { error } => json!({"error": error.message}) },
                    "origin": match &e.origin { Origin::Recorded(s) => json!({"recorded": s}), Origin::Sampled => json!("sampled") },
                    "decision": e.decision.as_ref().map(|d| serde_json::to_value(d).unwrap_or(Value::Null)),
                    "human_value": e.human,
                    "visits": e.n,
                    "q": e.q(),
                    "value": e.value(),
                    "child": e.child,
                    "best": crit.is_some_and(|c| c.best == j),
                    "worst": crit.is_some_and(|c| c.worst == j),
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({"episode": tree.episode.id, "task": tree.episode.task.instruction, "left_out_steps": tree.left_out, "left_out_episodes": tree.left_out_episodes, "nodes": nodes})
}

/// A short text summary for the terminal.
pub fn summary(tree: &Tree, found: &[Critical], stats: &SearchStats) -> String {
    let mut s = format!(
        "episode {}: {} nodes, {} rollouts ({} passed), {} samples, {} critical decision(s), replay {} of {} recorded states faithful\n",
        tree.episode.id,
        tree.nodes.len(),
        stats.rollouts,
        stats.successes,
        stats.samples,
        found.len(),
        stats.replayed,
        stats.replayed + stats.replay_mismatches
    );
    if stats.failed_rollouts > 0 {
        s.push_str(&format!("  {} rollout(s) failed in the environment and were left out\n", stats.failed_rollouts));
    }
    if tree.left_out > 0 {
        s.push_str(&format!(
            "  {} recorded step(s) of {} episode(s) left out: a step led to another state than the same step of an earlier episode (a command whose output differs from run to run?)\n",
            tree.left_out, tree.left_out_episodes
        ));
    }
    for c in found {
        let n = &tree.nodes[c.node];
        let show = |e: &Edge| match &e.parsed {
            Parsed::Action { action, .. } => format!("{} {}", action.tool_name(), short(&action.arguments().to_string())),
            Parsed::Error { .. } => "(invalid)".into(),
        };
        s.push_str(&format!(
            "  depth {}: best {} (Q {:.2}, {} visits) vs worst {} (Q {:.2}, {} visits)\n",
            n.depth,
            show(&n.edges[c.best]),
            n.edges[c.best].value(),
            n.edges[c.best].n,
            show(&n.edges[c.worst]),
            n.edges[c.worst].value(),
            n.edges[c.worst].n
        ));
    }
    s
}

fn short(s: &str) -> String {
    if s.chars().count() > 70 { format!("{}…", s.chars().take(70).collect::<String>()) } else { s.to_string() }
}

impl<P: Policy + ?Sized> Policy for &P {
    fn sample(&self, prompt: &Prompt, k: usize, seed: u64) -> Result<Vec<ModelOutput>> {
        (**self).sample(prompt, k, seed)
    }
    fn version(&self) -> Option<String> {
        (**self).version()
    }
}

impl<P: Policy + ?Sized> Policy for Box<P> {
    fn sample(&self, prompt: &Prompt, k: usize, seed: u64) -> Result<Vec<ModelOutput>> {
        (**self).sample(prompt, k, seed)
    }
    fn version(&self) -> Option<String> {
        (**self).version()
    }
}
