//! The finance reports.
