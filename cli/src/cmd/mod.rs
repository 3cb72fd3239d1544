pub mod agents;
pub mod commands;
pub mod demo;
pub mod pki;
pub mod transfer;
