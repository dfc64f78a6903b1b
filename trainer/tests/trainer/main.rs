//! The trainer's test suite: one binary, one module per area.

mod pairs;
mod search;
mod models;
mod serve;
mod schedule;
