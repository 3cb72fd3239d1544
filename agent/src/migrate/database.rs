//! The registry's databases, table by table, for verification: rows and a
//! checksum PostgreSQL computes over the rows in primary-key order.
//!
//! The address and password come from the registry's own Secrets: Crunchy
//! PGO keeps `<cluster>-pguser-<user>` in the namespace with `host`,
//! `port`, `dbname`, `user` and `password`. `--registry-database` may point
//! the agent elsewhere (an agent outside the cluster cannot resolve
//! `<cluster>-primary.<ns>.svc`); the user and password stay the Secret's.
//! The password is never logged: errors name host, port, user and database.

use std::time::Duration;

use ferry_common::pb;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DynamicObject};
use tokio_postgres::{Client, NoTls};

use super::Step;
use super::cluster::{absent_if_missing, resource};
use super::error::{Result, StepError, kube_err};

/// The schema of a Platform registry's data; `public` where it is absent.
const REGISTRY_SCHEMA: &str = "registry";
const FALLBACK_SCHEMA: &str = "public";
/// One attempt to connect.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Session settings that make a row's text the same on any server of the
/// same major version, whatever its defaults: time zone, date, interval
/// and float formats, bytea output.
const STABLE_TEXT: &str = "SET LOCAL TimeZone = 'UTC'; SET LOCAL DateStyle = 'ISO, YMD'; \
     SET LOCAL IntervalStyle = 'postgres'; SET LOCAL extra_float_digits = 3; \
     SET LOCAL bytea_output = 'hex'";

/// One entry per cluster of `clusters` that exists in the namespace.
pub(super) async fn inventory(
    step: &mut Step<'_>,
    clusters: &[String],
) -> Result<Vec<pb::DatabaseInventory>> {
    let ns = step.registry;
    let pgo: Api<DynamicObject> = Api::namespaced_with(
        step.client.clone(),
        ns,
        &resource(
            "postgres-operator.crunchydata.com",
            "v1beta1",
            "PostgresCluster",
            "postgresclusters",
        ),
    );
    let mut out = Vec::new();
    for cluster in clusters {
        let what = format!("PostgresCluster {ns}/{cluster}");
        if absent_if_missing(pgo.get(cluster).await)
            .map_err(kube_err("read", &what))?
            .is_none()
        {
            continue;
        }
        let (target, client) = Target::connect(step, cluster).await?;
        out.push(target.read(step, client).await?);
    }
    Ok(out)
}

/// Where and as whom one cluster's database is read.
struct Target {
    cluster: String,
    host: String,
    port: u16,
    dbname: String,
    user: String,
    password: String,
}

/// Never prints the password.
impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "database {} of PostgresCluster {} at {}:{} as {}",
            self.dbname, self.cluster, self.host, self.port, self.user
        )
    }
}

impl Target {
    async fn from_secret(step: &Step<'_>, cluster: &str) -> Result<Self> {
        let ns = step.registry;
        let config = &step.ctx.config;
        let name = format!("{cluster}-pguser-{}", config.registry_db_user);
        let what = format!("Secret {ns}/{name}");
        let secrets: Api<Secret> = Api::namespaced(step.client.clone(), ns);
        let secret = absent_if_missing(secrets.get(&name).await)
            .map_err(kube_err("read", &what))?
            .ok_or_else(|| {
                StepError::State(format!(
                    "{what} does not exist: PGO makes it for each user in the PostgresCluster's \
                     spec.users; name the user to read with by --registry-db-user"
                ))
            })?;
        let data = secret.data.unwrap_or_default();
        let key = |k: &str| -> Result<String> {
            let v = data
                .get(k)
                .ok_or_else(|| StepError::State(format!("{what} has no key {k:?}")))?;
            String::from_utf8(v.0.clone())
                .map(|s| s.trim().to_owned())
                .map_err(|_| StepError::State(format!("{what}: key {k:?} is not UTF-8")))
        };
        let mut target = Target {
            cluster: cluster.to_owned(),
            host: key("host")?,
            port: key("port")?
                .parse()
                .map_err(|_| StepError::State(format!("{what}: key \"port\" is not a port")))?,
            dbname: key("dbname")?,
            user: key("user")?,
            password: key("password")?,
        };
        if let Some(a) = config
            .registry_databases
            .iter()
            .find(|a| a.cluster == cluster)
        {
            target.host = a.host.clone();
            target.port = a.port;
            if !a.dbname.is_empty() {
                target.dbname = a.dbname.clone();
            }
        }
        Ok(target)
    }

    /// Reads the cluster's Secret and connects, retrying while the server
    /// is not up yet (connection refused, "starting up", its database
    /// still being restored) within the agent's `--ready-timeout`. The
    /// Secret is read again before each attempt: PGO points it at the
    /// instance that serves now (a restored Secret still names the source's).
    async fn connect(step: &Step<'_>, cluster: &str) -> Result<(Self, Client)> {
        let deadline = tokio::time::Instant::now() + step.ctx.config.ready_timeout;
        let mut wait = Duration::from_millis(100);
        loop {
            let target = Target::from_secret(step, cluster).await?;
            let mut config = tokio_postgres::Config::new();
            config
                .host(&target.host)
                .port(target.port)
                .dbname(&target.dbname)
                .user(&target.user)
                .password(&target.password)
                .application_name("ferry-verify")
                .connect_timeout(CONNECT_TIMEOUT);
            match config.connect(NoTls).await {
                Ok((client, connection)) => {
                    let cluster = target.cluster.clone();
                    tokio::spawn(async move {
                        if let Err(error) = connection.await {
                            tracing::warn!(%cluster, %error, "registry database connection ended");
                        }
                    });
                    return Ok((target, client));
                }
                Err(e) if starting(&e) && tokio::time::Instant::now() + wait < deadline => {
                    tracing::info!(%target, error = %e, "registry database not answering yet");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(5));
                }
                Err(e) => {
                    return Err(StepError::State(format!(
                        "could not connect to {target}: {e}; check that the instance runs and that the \
                         agent reaches it (from outside the cluster: --registry-database {}=postgresql://host:port)",
                        target.cluster
                    )));
                }
            }
        }
    }

    async fn read(&self, step: &mut Step<'_>, mut client: Client) -> Result<pb::DatabaseInventory> {
        let db = |what: String| {
            let target = self.to_string();
            move |e: tokio_postgres::Error| StepError::State(format!("{what} in {target}: {e}"))
        };
        // One snapshot for every table, and nothing written.
        let tx = client
            .build_transaction()
            .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await
            .map_err(db("starting a read-only transaction".into()))?;
        tx.batch_execute(STABLE_TEXT)
            .await
            .map_err(db("setting the session's formats".into()))?;
        let has_registry: bool = tx
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)",
                &[&REGISTRY_SCHEMA],
            )
            .await
            .and_then(|r| r.try_get(0))
            .map_err(db("looking for schema registry".into()))?;
        let schema = if has_registry {
            REGISTRY_SCHEMA
        } else {
            FALLBACK_SCHEMA
        };
        let tables = tx
            .query(
                "SELECT c.oid, c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') AND NOT c.relispartition ORDER BY 2",
                &[&schema],
            )
            .await
            .map_err(db(format!("listing the tables of schema {schema}")))?;
        let mut out = pb::DatabaseInventory {
            cluster: self.cluster.clone(),
            database: self.dbname.clone(),
            schema: schema.to_owned(),
            tables: vec![],
        };
        let total = tables.len() as u64;
        for (i, row) in tables.iter().enumerate() {
            let oid: u32 = row.try_get(0).map_err(db("reading a table's oid".into()))?;
            let table: String = row
                .try_get(1)
                .map_err(db("reading a table's name".into()))?;
            let what = format!("table {schema}.{table}");
            let keys: Vec<String> = tx
                .query(
                    "SELECT a.attname::text FROM pg_index i \
                     JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey::int2[]) \
                     WHERE i.indrelid = $1 AND i.indisprimary \
                     ORDER BY array_position(i.indkey::int2[], a.attnum)",
                    &[&oid],
                )
                .await
                .map_err(db(format!("reading the primary key of {what}")))?
                .iter()
                .map(|r| r.try_get(0))
                .collect::<std::result::Result<_, _>>()
                .map_err(db(format!("reading the primary key of {what}")))?;
            let row = tx
                .query_one(&checksum_sql(schema, &table, &keys), &[])
                .await
                .map_err(db(format!("summing up {what}")))?;
            let rows: i64 = row.try_get(0).map_err(db(format!("counting {what}")))?;
            let checksum: String = row.try_get(1).map_err(db(format!("summing up {what}")))?;
            out.tables.push(pb::TableInventory {
                table,
                rows: u64::try_from(rows).unwrap_or(0),
                checksum,
            });
            step.progress.report(
                format!("read tables of database {} ({})", self.dbname, self.cluster),
                i as u64 + 1,
                total,
            );
        }
        tx.commit()
            .await
            .map_err(db("ending the read-only transaction".into()))?;
        Ok(out)
    }
}

/// Rows and an MD5 over each row's text (as `md5(row::text)`, joined in
/// primary-key order; by the whole row's text when there is no key).
fn checksum_sql(schema: &str, table: &str, keys: &[String]) -> String {
    let order = if keys.is_empty() {
        "t::text".to_owned()
    } else {
        keys.iter()
            .map(|k| format!("t.{}", ident(k)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        "SELECT count(*), md5(coalesce(string_agg(md5(t::text), '' ORDER BY {order}), '')) FROM {}.{} t",
        ident(schema),
        ident(table)
    )
}

fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The server is not up yet: it refuses connections, or says it is
/// starting. A name that does not resolve or a wrong password is not
/// waited for.
fn starting(e: &tokio_postgres::Error) -> bool {
    if let Some(code) = e.code() {
        // A restored instance's database appears once its restore is whole.
        return *code == tokio_postgres::error::SqlState::CANNOT_CONNECT_NOW
            || *code == tokio_postgres::error::SqlState::INVALID_CATALOG_NAME;
    }
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            return io.kind() == std::io::ErrorKind::ConnectionRefused;
        }
        source = s.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_orders_by_the_key_and_quotes_names() {
        let sql = checksum_sql("registry", "la\"b", &["id".into(), "part".into()]);
        assert!(sql.contains("ORDER BY t.\"id\", t.\"part\""), "{sql}");
        assert!(sql.contains("\"registry\".\"la\"\"b\" t"), "{sql}");
        assert!(checksum_sql("public", "x", &[]).contains("ORDER BY t::text"));
    }
}
