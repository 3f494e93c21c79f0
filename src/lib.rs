//! registrar: mirrors what Jodo (fees) and Toolzz (LMS) know about a school's
//! students into an append-only, hash-chained SQLite event log, and derives
//! projections from it that can be rebuilt on demand.
//!
//! The modules, in the direction data flows:
//!
//! - [`sources`]: parse and validate deliveries ([`sources::jodo`],
//!   [`sources::toolzz`]), one upcaster per provider. Pure: no I/O.
//! - [`auth`]: authentication of deliveries (Jodo signature and custom
//!   header, Toolzz URL token) and its re-check on readmission. Pure.
//! - [`event`]: the normalized events the sources produce.
//! - [`money`]: exact amounts in integer minor units.
//! - [`ledger`]: the one writer; appends and projects in one transaction,
//!   group-committing concurrent deliveries; runs rebuilds between batches.
//! - [`log`]: append with dedupe, the hash chain ([`log::chain`]) and
//!   [`log::verify`]. Knows nothing derived from the log.
//! - [`quarantine`]: rejected deliveries, kept with their reason.
//! - [`projection`]: current state folded from the log in provider-time
//!   order; [`projection::rebuild`] and [`projection::query`].
//! - [`api`]: axum routers (ingest, read, admin) and the error type.
//!   Nothing below it knows HTTP.
//! - [`server`]: runs the API on a bound listener until a shutdown future.
//! - [`connections`]: the accept loop, header and idle timeouts, and the
//!   graceful shutdown bounded by a grace period.
//! - [`config`], [`db`]: settings and limits; opening and migrating SQLite.
//! - [`checkpoint`]: WAL checkpoints on their own thread, off the writer's commits.
//!
//! The binary (`src/main.rs`) is a thin CLI over these.

pub mod api;
pub mod auth;
pub mod checkpoint;
pub mod config;
pub mod connections;
pub mod db;
pub mod event;
pub mod ledger;
pub mod log;
pub mod metrics;
pub mod money;
pub mod projection;
pub mod quarantine;
pub mod server;
pub mod sources;
