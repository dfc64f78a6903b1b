//! # keel-server
//!
//! `keel-lsp`, the language server that puts Keel's agent in the editor: code actions start an
//! episode; the agent's proposals wait as code lenses until the user accepts, rejects or asks for
//! another; every step and decision goes to the trajectory store.
//!
//! Layout, in the order data flows: [`config`] (options), [`document`] (text and positions),
//! [`syntax`] (tree-sitter context), [`model`] (the OpenAI-compatible client), [`episode`] (the
//! editor's driver of the shared agent, `keel-agent`: its prompt, tools and rules live there),
//! [`watch`] (reverts and user edits after an accept), [`hunks`] (a pending edit's hunks, for
//! review hunk by hunk), [`recorder`] (records on their way to the
//! store, kept while it cannot be written), [`files`] (bounded reads of the user's files),
//! [`ui`] (lenses, diagnostics, status), [`decisions`] (the user's answers, recorded with one
//! meaning for every front end), [`server`] (the thin `LanguageServer` handlers), [`acp`] (the
//! Agent Client Protocol front end, `keel-lsp --acp`, over the same episode loop and store).
//! It never links libtorch and never runs a model-proposed command on the host: an accepted `run`
//! executes in a container (`keel_agent::EditorWorkspace::run`).

pub mod acp;
pub mod config;
pub mod decisions;
pub mod document;
pub mod episode;
pub mod files;
pub mod hunks;
pub mod model;
pub mod recorder;
pub mod server;
pub mod state;
pub mod syntax;
pub mod transport;
pub mod ui;
pub mod watch;
