//! The relay: pairs each transfer's source and sink streams and pipes them,
//! and the client API that starts and follows transfers.
mod hub;
mod transfers;

#[cfg(feature = "testing")]
pub use hub::RelayFaults;
pub use hub::{MAX_STREAMS_PER_AGENT, Progress, RelayHub, RelayService};
pub use transfers::TransfersApi;
