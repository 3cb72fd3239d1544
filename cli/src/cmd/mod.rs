pub mod agents;
pub mod bench;
pub mod commands;
pub mod demo;
pub mod pki;
pub mod sandbox;
pub mod transfer;
