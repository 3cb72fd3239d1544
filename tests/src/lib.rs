//! Harness for end-to-end tests.
#![forbid(unsafe_code)]
