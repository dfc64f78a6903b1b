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
//! Determinism: simulations run in waves of `parallel`. Within a wave, paths are selected one after
//! the other (with virtual loss so they spread out) and policy samples are seeded from the global
//! seed and the node, so the tree depends only on the seed — not on which rollout finishes first.

use std::collections::HashMap;

use anyhow::Result;
use keel_trajectory::action::{next_messages, parse_output};
use keel_trajectory::{Action, Decision, Episode, EpisodeTree, ModelOutput, Observation, Parsed, Prompt, state_hash};
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
    /// Carries out an action (edits change files, `run` executes in the sandbox, reads read).
    fn act(&mut self, action: &Action) -> Observation;
    /// Runs the verification command; `true` when it passes.
    fn verify(&mut self, command: &str) -> Result<bool>;
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
            Decision::Auto | Decision::Superseded { .. } => None,
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
    pub n: u32,
    pub w: f64,
    virtual_loss: u32,
    pub child: Option<usize>,
}

impl Edge {
    pub fn q(&self) -> f64 {
        if self.n == 0 { 0.0 } else { self.w / self.n as f64 }
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
}

/// One episode's search tree.
pub struct Tree {
    pub episode: Episode,
    pub nodes: Vec<Node>,
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
        let first = t.steps.iter().find(|s| s.step.parent_id.is_none())?;
        let mut tree = Tree {
            episode: t.episode.clone(),
            nodes: vec![Node { prompt: first.step.prompt.clone(), state_hash: first.step.state_hash.clone(), depth: 0, edges: vec![], expanded: false, n: 0 }],
        };
        // node index by (parent step, state hash)
        let mut index: HashMap<(Option<uuid::Uuid>, String), usize> = HashMap::new();
        index.insert((None, first.step.state_hash.clone()), 0);
        let mut edge_of_step: HashMap<uuid::Uuid, (usize, usize)> = HashMap::new();
        for s in &t.steps {
            let key = (s.step.parent_id, s.step.state_hash.clone());
            let node = match index.get(&key) {
                Some(&i) => i,
                None => {
                    let Some(&(pn, pe)) = s.step.parent_id.and_then(|p| edge_of_step.get(&p)) else { continue };
                    let depth = tree.nodes[pn].depth + 1;
                    tree.nodes.push(Node { prompt: s.step.prompt.clone(), state_hash: s.step.state_hash.clone(), depth, edges: vec![], expanded: false, n: 0 });
                    let i = tree.nodes.len() - 1;
                    tree.nodes[pn].edges[pe].child = Some(i);
                    index.insert(key, i);
                    i
                }
            };
            let human = s.decision().and_then(|d| values.of(d));
            let key = action_key(&s.step.output, &s.step.parsed);
            if tree.nodes[node].edges.iter().any(|e| e.key == key) {
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
                n,
                w,
                virtual_loss: 0,
                child: None,
            });
            tree.nodes[node].n += n;
            edge_of_step.insert(s.step.id, (node, tree.nodes[node].edges.len() - 1));
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
            self.nodes[node].edges.push(Edge { output, parsed, key, origin: Origin::Sampled, human: None, n: 0, w: 0.0, virtual_loss: 0, child: None });
        }
        self.nodes[node].expanded = true;
    }
}

/// Mixes a seed with a node's identity.
fn seed_for(seed: u64, parts: &[&[u8]]) -> u64 {
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
    /// The observation after each edge of the path (to create child nodes).
    observations: Vec<Observation>,
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
                    let path: Vec<(Prompt, ModelOutput, Parsed)> = s.path.iter().map(|&(n, e)| (tree.nodes[n].prompt.clone(), tree.nodes[n].edges[e].output.clone(), tree.nodes[n].edges[e].parsed.clone())).collect();
                    let episode = &tree.episode;
                    let verify = verify.as_str();
                    let sim = s.sim;
                    scope.spawn(move || evaluate(episode, &path, policy, env, cfg, verify, sim))
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap_or_else(|_| Err(anyhow::anyhow!("a rollout panicked")))).collect()
        });
        for (s, r) in selected.into_iter().zip(results) {
            for &(n, e) in &s.path {
                tree.nodes[n].edges[e].virtual_loss -= 1;
            }
            let r = r?;
            stats.rollouts += 1;
            if r.reward > 0.0 {
                stats.successes += 1;
            }
            // Grow the path's missing child nodes from what the rollout observed.
            for (i, &(n, e)) in s.path.iter().enumerate() {
                if tree.nodes[n].edges[e].child.is_none() && !is_finish(&tree.nodes[n].edges[e].parsed) {
                    if let Some(obs) = r.observations.get(i) {
                        let edge = &tree.nodes[n].edges[e];
                        let prompt = Prompt {
                            messages: next_messages(&tree.nodes[n].prompt.messages, &edge.parsed, &edge.output, "call_0", obs),
                            tools: tree.nodes[n].prompt.tools.clone(),
                        };
                        let depth = tree.nodes[n].depth + 1;
                        let h = state_hash(&prompt);
                        tree.nodes.push(Node { prompt, state_hash: h, depth, edges: vec![], expanded: false, n: 0 });
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
        if is_finish(&edge.parsed) || unvisited {
            break;
        }
        match edge.child {
            Some(c) => node = c,
            None => break,
        }
    }
    Ok(Selected { path, sim })
}

fn evaluate<P: Policy, E: Environment>(episode: &Episode, path: &[(Prompt, ModelOutput, Parsed)], policy: &P, env: &E, cfg: &SearchConfig, verify: &str, sim: usize) -> Result<Evaluated> {
    let mut session = env.start(episode)?;
    let mut observations = Vec::with_capacity(path.len());
    let mut last: Option<(Prompt, ModelOutput, Parsed, Observation)> = None;
    for (prompt, output, parsed) in path {
        let obs = match parsed {
            Parsed::Action { action, .. } => session.act(action),
            Parsed::Error { error } => Observation { output: format!("error: {}", error.message), exit_code: Some(2), ..Default::default() },
        };
        observations.push(obs.clone());
        last = Some((prompt.clone(), output.clone(), parsed.clone(), obs));
    }
    // Roll out with the policy from the state after the path.
    if let Some((mut prompt, mut output, mut parsed, mut obs)) = last {
        let mut depth = path.len();
        while !is_finish(&parsed) && depth < cfg.max_depth {
            prompt = Prompt { messages: next_messages(&prompt.messages, &parsed, &output, "call_0", &obs), tools: prompt.tools.clone() };
            let seed = seed_for(cfg.seed, &[&(sim as u64).to_le_bytes(), &(depth as u64).to_le_bytes(), b"rollout"]);
            let Some(o) = policy.sample(&prompt, 1, seed)?.into_iter().next() else { break };
            output = o;
            parsed = parse_output(&output);
            obs = match &parsed {
                Parsed::Action { action, .. } => session.act(action),
                Parsed::Error { error } => Observation { output: format!("error: {}", error.message), exit_code: Some(2), ..Default::default() },
            };
            depth += 1;
        }
    }
    let ok = session.verify(verify)?;
    Ok(Evaluated { reward: if ok { 1.0 } else { 0.0 }, observations })
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SearchStats {
    pub rollouts: usize,
    pub successes: usize,
    pub samples: usize,
}

/// A critical decision found in a tree.
#[derive(Debug, Clone)]
pub struct Critical {
    pub node: usize,
    pub best: usize,
    pub worst: usize,
}

/// The nodes whose children's values differ by more than the margin, each side visited enough.
pub fn critical(tree: &Tree, cfg: &SearchConfig) -> Vec<Critical> {
    let mut out = Vec::new();
    for (i, n) in tree.nodes.iter().enumerate() {
        let visited: Vec<(usize, &Edge)> = n.edges.iter().enumerate().filter(|(_, e)| e.n >= cfg.min_visits).collect();
        if visited.len() < 2 {
            continue;
        }
        // Ties broken by the edge order, which is deterministic.
        let best = visited.iter().fold(visited[0], |a, b| if b.1.q() > a.1.q() { *b } else { a });
        let worst = visited.iter().fold(visited[0], |a, b| if b.1.q() < a.1.q() { *b } else { a });
        if best.1.q() - worst.1.q() > cfg.margin {
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
                    "q_chosen": b.q(), "q_rejected": w.q(),
                    "visits_chosen": b.n, "visits_rejected": w.n, "visits_state": n.n,
                    "model_version": model_version,
                    "task_kind": tree.episode.task.kind.as_str(),
                    "language": tree.episode.task.language,
                }
            })
        })
        .collect()
}

/// The tree as JSON a person can read.
pub fn tree_json(tree: &Tree, found: &[Critical]) -> Value {
    let nodes: Vec<Value> = tree
        .nodes
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let crit = found.iter().find(|c| c.node == i);
            json!({
                "id": i,
                "depth": n.depth,
                "state_hash": n.state_hash,
                "visits": n.n,
                "critical": crit.is_some(),
                "edges": n.edges.iter().enumerate().map(|(j, e)| json!({
                    "action": match &e.parsed { Parsed::Action { action, .. } => json!({"tool": action.tool_name(), "arguments": action.arguments()}), Parsed::Error { error } => json!({"error": error.message}) },
                    "origin": match &e.origin { Origin::Recorded(s) => json!({"recorded": s}), Origin::Sampled => json!("sampled") },
                    "human_value": e.human,
                    "visits": e.n,
                    "q": e.q(),
                    "child": e.child,
                    "best": crit.is_some_and(|c| c.best == j),
                    "worst": crit.is_some_and(|c| c.worst == j),
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({"episode": tree.episode.id, "task": tree.episode.task.instruction, "nodes": nodes})
}

/// A short text summary for the terminal.
pub fn summary(tree: &Tree, found: &[Critical], stats: &SearchStats) -> String {
    let mut s = format!(
        "episode {}: {} nodes, {} rollouts ({} passed), {} samples, {} critical decision(s)\n",
        tree.episode.id,
        tree.nodes.len(),
        stats.rollouts,
        stats.successes,
        stats.samples,
        found.len()
    );
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
            n.edges[c.best].q(),
            n.edges[c.best].n,
            show(&n.edges[c.worst]),
            n.edges[c.worst].q(),
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
