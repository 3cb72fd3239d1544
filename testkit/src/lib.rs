//! Harness shared by Ferry's tests: a throwaway PostgreSQL, bounded waits.
#![forbid(unsafe_code)]

pub mod pg;
pub mod wait;

pub use wait::eventually;
