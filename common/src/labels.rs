//! Labels Ferry reads or puts on a cluster's objects that both the
//! coordinator's plan and the agent's steps name.

/// The label the Platform's restore phases select by.
pub const APP_NAME: &str = "app.kubernetes.io/name";

/// `app.kubernetes.io/name` of the volume holder pods the backup step runs
/// (agent `migrate::holders`), which the restore phase `volumes` brings back.
pub const VOLUME_HOLDER_APP: &str = "ferry-volume-holder";
