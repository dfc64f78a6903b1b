//! The sandbox against a real engine (podman's Docker-compatible service, started by
//! `cargo xtask setup`). Without it these tests fail, saying how to start it.
//!
//! The tests take turns (one lock): each checks afterwards that no container labelled
//! `keel.sandbox` is left that was not there before it started.

mod basics;
mod common;
mod contained;
mod python;
mod remote;
