//! Idempotent creation: a step retried after a crash or a lost reply must
//! find the object it made the first time, never make a second one.

use kube::api::{Api, PostParams};
use serde::Serialize;

use super::error::{Result, VeleroError};
use super::wait::Tracked;

/// Creates `obj` named `name`, or returns the existing object of that name
/// when `differs` finds nothing requested that it disagrees with; otherwise
/// the name belongs to another request and that is a conflict.
pub(crate) async fn create_or_reuse<K: Tracked + Serialize>(
    api: &Api<K>,
    namespace: &str,
    name: &str,
    obj: &K,
    differs: impl Fn(&K) -> Option<&'static str>,
) -> Result<K> {
    let api_err = |action, source| VeleroError::Api {
        action,
        kind: K::KIND,
        namespace: namespace.into(),
        name: name.into(),
        source,
    };
    match api.create(&PostParams::default(), obj).await {
        Ok(created) => {
            tracing::info!(kind = K::KIND, name, namespace, "created Velero object");
            Ok(created)
        }
        Err(kube::Error::Api(status)) if status.code == 409 => {
            let existing = api.get(name).await.map_err(|e| api_err("read", e))?;
            match differs(&existing) {
                None => {
                    tracing::info!(
                        kind = K::KIND,
                        name,
                        "Velero object already exists; reusing it"
                    );
                    Ok(existing)
                }
                Some(field) => Err(VeleroError::SpecConflict {
                    kind: K::KIND,
                    namespace: namespace.into(),
                    name: name.into(),
                    field,
                }),
            }
        }
        Err(e) => Err(api_err("create", e)),
    }
}
