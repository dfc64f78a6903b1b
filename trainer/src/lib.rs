//! # keel-trainer
//!
//! Turns recorded trajectories into a better policy: mines preference pairs (from human decisions,
//! and by MCTS over the recorded decision trees), runs the policy model in tch (scoring, sampling,
//! LoRA), aligns it with DPO, serves it over an OpenAI-compatible API, and retrains on a schedule.
//!
//! It reads the trajectory store; the only trajectories it writes are the agent's own runs on tasks
//! (`collect`, `eval --store`), each with its verification outcome. It never speaks LSP. It is the
//! only part of Keel that links libtorch.

pub mod ab;
pub mod convert;
pub mod dpo;
pub mod eval;
pub mod export_train;
pub mod init_model;
pub mod learn;
pub mod metrics;
pub mod model;
pub mod models;
pub mod optim;
pub mod pairs;
pub mod recover;
pub mod schedule;
pub mod score;
pub mod search;
pub mod serve;
pub mod sft;
pub mod train;
pub mod user_rule;
