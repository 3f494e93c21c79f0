//! Read-side queries over the projections (used by the read API).
