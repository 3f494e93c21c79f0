//! registrar: mirrors what Jodo (fees) and Toolzz (LMS) know about a school's
//! students into an append-only, hash-chained SQLite event log (one file),
//! and derives projections from it into a store of their own (another file)
//! that follows the log asynchronously and can be rebuilt on demand.
//!
//! The modules, in layers from the bottom up: each imports only modules
//! listed before it (siblings on one line import neither).
//!
//! - [`money`]: exact amounts in integer minor units.
//! - [`event`]: the normalized events the sources produce.
//! - [`auth`]: authentication of deliveries (Jodo signature and custom
//!   header, Toolzz URL token) and its re-check on readmission. Pure.
//! - [`sources`]: parse and validate deliveries ([`sources::jodo`],
//!   [`sources::toolzz`]), one upcaster per provider and event type. Pure:
//!   no I/O.
//! - [`db`]: opening and migrating SQLite. [`metrics`]: the Prometheus
//!   metrics. [`quarantine`]: rejected deliveries, kept with their reason.
//! - [`log`]: append with dedupe, reads (head and seq ranges: all the
//!   projections read), the hash chain ([`log::chain`]), pins and
//!   [`log::verify`]; the log as a Merkle tree ([`log::merkle`]), its stored
//!   hashes ([`log::tree`], kept by append) and signed checkpoints
//!   ([`log::note`], [`log::checkpoints`]). Knows nothing derived from the
//!   log but its own tree.
//! - [`ledger`]: the one writer; appends to the log, group-committing
//!   concurrent deliveries; its fsync thread answers each batch once the WAL
//!   is on disk and hands what it appended to the projector.
//! - [`checkpoint`]: WAL checkpoints on their own thread, off the writer's
//!   commits.
//! - [`projection`]: current state folded from the log in provider-time
//!   order: the folds ([`projection::entities`]), the store's SQL and its
//!   files, the thread that follows the log, the file serving reads, the
//!   rebuild and [`projection::query`], the one module that reads the store
//!   (typed filters in, typed rows out; HTTP and the CLI only render).
//! - [`report`]: the finance reports (day book, register, statement,
//!   changes, status changes) as of a date and as known at a date, rendered
//!   as JSON or CSV the same way for HTTP and the CLI.
//! - [`clock`]: the time rate limits and console sessions read: the
//!   system's, or a manual one a test moves by hand.
//! - [`config`]: settings, their limits, and the one check that makes them
//!   a [`config::Config`].
//! - [`http`]: what the HTTP channels share: state, log readers, the error
//!   type, query parsing, rate limits, tokens, read-your-writes, streamed
//!   reports and the guard against DNS rebinding. Nothing below it knows
//!   HTTP.
//! - The HTTP channels, siblings: [`ingest`] (the webhooks), [`api`] (`/v1`
//!   reads and reports, admin, health, the OpenAPI document), [`console`]
//!   (the audit console: HTML pages for finance staff at `/console`).
//! - [`connections`]: the accept loop, header and idle timeouts, and the
//!   graceful shutdown bounded by a grace period.
//! - [`server`]: starts the log, the writer, the projector and the
//!   checkpointer, composes the channels into one router, and serves until
//!   a shutdown future.
//! - [`commands`]: the `registrar` commands, one file each. The binary
//!   (`src/main.rs`) only parses arguments and calls them.

pub mod api;
pub mod auth;
mod checkpoint;
pub mod clock;
pub mod commands;
pub mod config;
mod connections;
pub mod console;
pub mod db;
pub mod event;
pub mod http;
mod ingest;
pub mod ledger;
pub mod log;
mod metrics;
mod money;
pub mod projection;
mod quarantine;
pub mod report;
pub mod server;
pub mod sources;
