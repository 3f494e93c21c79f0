//! End-to-end tests: each starts the server on port 0 with a fresh database.
//! One test binary, many modules: one link, faster builds.

mod audit;
mod auth;
mod backup;
mod connections;
mod console;
mod crash;
mod faults;
mod fixtures;
mod helpers;
mod hostile;
mod ingest;
mod projector;
mod proofs;
mod quarantine;
mod read;
mod reports;
mod smoke;
#[path = "../support/dump.rs"]
mod support;
mod tamper;
mod tree;
