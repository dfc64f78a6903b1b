//! # keel-trajectory
//!
//! The data contract between Keel's language server, which records what the agent proposed and
//! what the person decided, and Keel's trainer, which learns from it.
//!
//! It owns:
//! - the records ([`Episode`], [`Step`], [`Decision`], [`Observation`], [`ModelVersion`]) and their
//!   JSON forms;
//! - the agent's action contract ([`action`]): the five tools, their schema, parsing a model's
//!   answer, and the pure parts of carrying out an edit;
//! - the [`Store`], on SQLite (WAL, 0600 files; the embedded default) or PostgreSQL (a `postgres://`
//!   URL), with numbered migrations, zstd blobs, one batching
//!   [`Writer`] per process, secret [`redact`]ion before anything is written, and full-fidelity
//!   JSONL dumps.
//!
//! It must never know about LSP, HTTP, models or containers: anyone could use it without the server
//! or the trainer.

pub mod action;
mod db;
pub mod private;
mod dump;
pub mod redact;
pub mod state;
mod store;
mod types;
mod writer;

pub use db::{is_postgres_url, redact_location};
pub use action::{Action, ActionError, ActionErrorKind};
pub use dump::{DUMP_VERSION, ImportStats};
pub use state::{pair_held_out, state_hash};
pub use store::{
    APPLICATION_ID, Durability, EpisodeFilter, EpisodeTree, Result, Run, SCHEMA_VERSION, StateGroup, Stats, StepRecord, Store,
    StoreError, blob_hash, data_dir, default_path,
};
pub use types::*;
pub use writer::{Receipt, Writer, redact_record};
