//! The trainer's test suite: one binary, one module per area.

mod convert;
mod dpo;
mod engine;
mod eval;
mod model;
mod pairs;
mod prefix;
mod search;
mod ab;
mod models;
mod serve;
mod schedule;
mod schedule_e2e;
