//! registrar: mirrors what Jodo (fees) and Toolzz (LMS) know about a school's
//! students into an append-only, hash-chained SQLite event log (one file),
//! and derives projections from it into a store of their own (another file)
//! that follows the log asynchronously and can be rebuilt on demand.
//!
//! The modules, in the direction data flows:
//!
//! - [`sources`]: parse and validate deliveries ([`sources::jodo`],
//!   [`sources::toolzz`]), one upcaster per provider. Pure: no I/O.
//! - [`auth`]: authentication of deliveries (Jodo signature and custom
//!   header, Toolzz URL token) and its re-check on readmission. Pure.
//! - [`event`]: the normalized events the sources produce.
//! - [`money`]: exact amounts in integer minor units.
//! - [`ledger`]: the one writer; appends to the log, group-committing
//!   concurrent deliveries; its fsync thread answers each batch once the WAL
//!   is on disk and hands what it appended to the projector.
//! - [`log`]: append with dedupe, [`log::LogReader`] (head and a seq range:
//!   all the projections read), the hash chain ([`log::chain`]) and
//!   [`log::verify`]. Knows nothing derived from the log.
//! - [`quarantine`]: rejected deliveries, kept with their reason.
//! - [`projection`]: current state folded from the log in provider-time
//!   order: the folds ([`projection::entities`]), the store file and its SQL
//!   ([`projection::store`]), the thread that follows the log
//!   ([`projection::projector`]), the file serving reads
//!   ([`projection::live`]), [`projection::rebuild`] and
//!   [`projection::query`], the one module that reads the store (typed
//!   filters in, typed rows out; HTTP and the CLI only render).
//! - [`report`]: the finance reports (day book, register, statement,
//!   changes, status changes) as of a date and as known at a date, rendered
//!   as JSON or CSV the same way for HTTP and the CLI.
//! - [`metrics`]: the Prometheus metrics.
//! - [`api`]: axum routers (ingest; the read resources students, payments,
//!   learners, events, each with its `router()`; admin, health), read-your-writes,
//!   the guard against DNS rebinding while anything is open ([`api::host`])
//!   and the error type. Nothing below it knows HTTP.
//! - [`console`]: the audit console, HTML pages at `/console` for finance
//!   staff (sign-in and sessions, the pages, readmit, verify and pins);
//!   reads through [`projection::query`], [`report`] and [`log`] like the API.
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
pub mod commands;
pub mod config;
pub mod connections;
pub mod console;
pub mod db;
pub mod event;
pub mod http;
pub mod ingest;
pub mod ledger;
pub mod log;
pub mod metrics;
pub mod money;
pub mod projection;
pub mod quarantine;
pub mod report;
pub mod server;
pub mod sources;
