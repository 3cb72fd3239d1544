//! What the agent's database role may do. A load needs INSERT on the
//! registry's tables, SELECT on referenced ones and CREATE for the ledger's
//! schema — not a superuser, which could write PostgreSQL's catalogs.

use tokio_postgres::GenericClient;

use super::error::{LoadError, Result};

/// `Some(warning)` when the connected role is a superuser (or can bypass
/// row-level security), saying what to use instead.
pub async fn superuser_warning<C: GenericClient>(client: &C) -> Result<Option<String>> {
    let ctx = || "reading the agent's database role".to_string();
    let row = client
        .query_one(
            "SELECT current_user::text, rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user",
            &[],
        )
        .await
        .map_err(LoadError::db(ctx()))?;
    let role: String = row.try_get(0).map_err(LoadError::db(ctx()))?;
    let superuser: bool = row.try_get(1).map_err(LoadError::db(ctx()))?;
    let bypass: bool = row.try_get(2).map_err(LoadError::db(ctx()))?;
    if !superuser && !bypass {
        return Ok(None);
    }
    let what = if superuser {
        "a superuser"
    } else {
        "allowed to bypass row-level security"
    };
    Ok(Some(format!(
        "the agent's database role {role} is {what}: a load could reach far beyond the registry's data; \
         give the agent a role with INSERT/SELECT on the registry's schemas and CREATE on the database \
         (docs/operations.md, \"The agent's database role\")"
    )))
}
