#![forbid(unsafe_code)]
pub mod load;
