//! Full-fidelity JSONL dumps: one episode per line, with its steps, decisions, observations and end.
//! `import(export(store))` gives a store whose export is the same bytes.

use std::io::{BufRead, Write};

use serde::{Deserialize, Serialize};

use crate::store::{EpisodeFilter, EpisodeTree, Store, StoreError};
use crate::types::*;
use crate::writer::redact_record;

/// The format version written in every line.
pub const DUMP_VERSION: u32 = 1;

#[derive(Serialize, Deserialize)]
struct Line {
    keel_dump: u32,
    #[serde(flatten)]
    tree: EpisodeTree,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ImportStats {
    pub episodes: usize,
    pub steps: usize,
    /// Episodes already present, left as they were.
    pub skipped: usize,
}

impl Store {
    /// Write the episodes matching `filter` as JSONL; returns how many.
    pub fn export_jsonl(&self, filter: &EpisodeFilter, out: &mut impl Write) -> Result<usize, StoreError> {
        let episodes = self.episodes(filter)?;
        for e in &episodes {
            let tree = self.tree(e.id)?.ok_or_else(|| StoreError::Data(format!("episode {} vanished", e.id)))?;
            let line = serde_json::to_string(&Line { keel_dump: DUMP_VERSION, tree })
                .map_err(|e| StoreError::Data(e.to_string()))?;
            writeln!(out, "{line}").map_err(|e| StoreError::Write(e.to_string()))?;
        }
        Ok(episodes.len())
    }

    /// Read a JSONL dump. Each episode is written in one transaction; episodes already in the store
    /// are skipped. A malformed line stops the import with its line number; what came before stays.
    pub fn import_jsonl(&self, input: impl BufRead) -> Result<ImportStats, StoreError> {
        let mut stats = ImportStats::default();
        let mut conn = crate::store::connect(self.location(), self.durability())?;
        for (i, line) in input.lines().enumerate() {
            let line = line.map_err(|e| StoreError::Data(format!("line {}: {e}", i + 1)))?;
            if line.trim().is_empty() {
                continue;
            }
            let parsed: Line = serde_json::from_str(&line).map_err(|e| StoreError::Data(format!("line {}: {e}", i + 1)))?;
            if parsed.keel_dump > DUMP_VERSION {
                return Err(StoreError::Data(format!(
                    "line {}: dump format {} is newer than this Keel reads ({DUMP_VERSION})",
                    i + 1,
                    parsed.keel_dump
                )));
            }
            let tree = parsed.tree;
            if self.episode(tree.episode.id)?.is_some() {
                stats.skipped += 1;
                continue;
            }
            let mut records = vec![Record::Episode(tree.episode.clone())];
            for s in &tree.steps {
                records.push(Record::Step(s.step.clone()));
                if let Some(o) = &s.observation {
                    let at = s.decisions.last().map_or(s.step.created_at, |d| d.at);
                    records.push(Record::Observation { step_id: s.step.id, at, observation: o.clone() });
                }
            }
            // Decisions in their original order across steps.
            let mut decisions: Vec<&DecisionEvent> = tree.steps.iter().flat_map(|s| &s.decisions).collect();
            decisions.sort_by_key(|d| d.at);
            records.extend(decisions.into_iter().cloned().map(Record::Decision));
            if let Some(end) = &tree.end {
                records.push(Record::EpisodeEnd(end.clone()));
            }
            conn.transaction(|tx| {
                for r in &mut records {
                    redact_record(r);
                    crate::writer::write_one(tx, r)?;
                }
                Ok(())
            })?;
            stats.episodes += 1;
            stats.steps += tree.steps.len();
        }
        Ok(stats)
    }
}
