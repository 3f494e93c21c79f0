//! End-to-end tests: each starts the server on port 0 with a fresh database.
//! One test binary, many modules: one link, faster builds.

mod fixtures;
mod helpers;
mod read;
mod smoke;
