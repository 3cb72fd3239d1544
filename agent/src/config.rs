//! The agent's configuration: flags with environment fallbacks.
use std::path::PathBuf;
use std::time::Duration;

use ferry_common::pb;
use ferry_common::telemetry::LogFormat;
use ferry_common::time::parse_duration;
use ferry_common::tls::TlsPaths;

/// `name=version`
fn parse_registry(s: &str) -> Result<pb::RegistryFacts, String> {
    let (name, version) = s
        .split_once('=')
        .ok_or_else(|| format!("bad registry {s:?}: use name=version"))?;
    Ok(pb::RegistryFacts {
        name: name.into(),
        version: version.into(),
    })
}

/// A database this agent may load into: `name=postgres://user@host:port/db`.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl {
    pub name: String,
    pub url: String,
}

/// The URL may hold a password: never print it.
impl std::fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}=<url>", self.name)
    }
}

/// A secret given on the command line or in the environment: never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(pub String);

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<password>")
    }
}

fn parse_password(s: &str) -> Result<Password, String> {
    Ok(Password(s.to_owned()))
}

fn parse_database(s: &str) -> Result<DatabaseUrl, String> {
    match s.split_once('=') {
        Some((name, url)) if !name.trim().is_empty() && !url.trim().is_empty() => Ok(DatabaseUrl {
            name: name.trim().into(),
            url: url.trim().into(),
        }),
        _ => Err(format!(
            "bad database {:?}: use name=postgres://user@host:port/dbname",
            s.split_once('=').map_or(s, |(n, _)| n)
        )),
    }
}

/// How the inventory reads a volume claim's contents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum VolumeReader {
    /// A short-lived reader pod mounting the claim read-only and running
    /// `ferry-agent volume-digest` (files, bytes, digest).
    Pod,
    /// Only the totals Velero's PodVolumeBackups and PodVolumeRestores
    /// report, where no pod can mount the claim.
    Velero,
}

/// `--registry-database <cluster>=postgresql://host:port/dbname`: where this
/// agent reaches a PostgresCluster's database when the address in its PGO
/// Secret is not reachable from the agent (an agent outside the cluster).
/// The user and password still come from the Secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabaseAddress {
    pub cluster: String,
    pub host: String,
    pub port: u16,
    /// Empty: the Secret's `dbname`.
    pub dbname: String,
}

fn parse_database_address(s: &str) -> Result<DatabaseAddress, String> {
    // The value may hold a password by mistake: only the cluster is echoed.
    let cluster_name = s.split_once('=').map_or("", |(c, _)| c.trim());
    let bad = || {
        format!(
            "bad registry database for cluster {cluster_name:?}: use \
             <cluster>=postgresql://host:port[/dbname] (no user or password: those come \
             from the cluster's PGO Secret)"
        )
    };
    let (cluster, url) = s.split_once('=').ok_or_else(bad)?;
    let rest = url
        .trim()
        .strip_prefix("postgresql://")
        .or_else(|| url.trim().strip_prefix("postgres://"))
        .ok_or_else(bad)?;
    let (authority, dbname) = rest.split_once('/').unwrap_or((rest, ""));
    let (host, port) = authority.rsplit_once(':').ok_or_else(bad)?;
    if cluster.trim().is_empty() || host.is_empty() || host.contains('@') {
        return Err(bad());
    }
    Ok(DatabaseAddress {
        cluster: cluster.trim().to_owned(),
        host: host.to_owned(),
        port: port.parse().map_err(|_| bad())?,
        dbname: dbname.to_owned(),
    })
}

fn parse_load_schema(s: &str) -> Result<String, String> {
    let s = s.trim().to_owned();
    crate::load::check_schemas(std::slice::from_ref(&s))?;
    Ok(s)
}

#[derive(Debug, Clone, clap::Args)]
pub struct AgentConfig {
    /// This agent's cluster id; must match its certificate (spiffe://ferry/cluster/<id>).
    #[arg(long, env = "FERRY_CLUSTER_ID")]
    pub cluster_id: String,
    /// The coordinator, e.g. https://ferry.example.org:7443.
    #[arg(
        long,
        env = "FERRY_COORDINATOR",
        default_value = "https://127.0.0.1:7443"
    )]
    pub coordinator: String,
    /// TLS server name to expect in the coordinator's certificate, if not the URL's host.
    #[arg(long, env = "FERRY_COORDINATOR_NAME")]
    pub coordinator_name: Option<String>,
    /// The identity (URI SAN) the coordinator's certificate must carry: an
    /// agent runs what its coordinator sends, so no other party of the CA
    /// will do.
    #[arg(
        long,
        env = "FERRY_COORDINATOR_IDENTITY",
        default_value = ferry_common::identity::COORDINATOR_URI
    )]
    pub coordinator_identity: String,
    /// Serve `/healthz`, `/readyz` (ready while registered with the
    /// coordinator) and `/metrics` (Prometheus) over plain HTTP on this
    /// address, e.g. 0.0.0.0:9090; off when unset.
    #[arg(long, env = "FERRY_HTTP_LISTEN")]
    pub http_listen: Option<std::net::SocketAddr>,
    /// Directory with `ca.pem`, `agent-<id>.pem`, `agent-<id>-key.pem`.
    #[arg(long, env = "FERRY_PKI_DIR", default_value = "pki")]
    pub pki_dir: PathBuf,
    #[arg(long, env = "FERRY_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    #[arg(long, env = "FERRY_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    #[arg(long, env = "FERRY_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
    /// Where the agent remembers executed commands across its own restarts.
    /// Without it, it remembers them only while it runs.
    #[arg(long, env = "FERRY_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
    /// The object stores this agent may read and write (JSON; see docs/operations.md).
    #[arg(long, env = "FERRY_STORES")]
    pub stores: Option<PathBuf>,
    /// First reconnect wait; doubles up to `--backoff-cap`, with jitter.
    #[arg(long, env = "FERRY_BACKOFF_BASE", default_value = "200ms", value_parser = parse_duration)]
    pub backoff_base: Duration,
    #[arg(long, env = "FERRY_BACKOFF_CAP", default_value = "30s", value_parser = parse_duration)]
    pub backoff_cap: Duration,
    /// Probe the cluster through this kubeconfig (the sandbox writes one).
    #[arg(long, env = "FERRY_KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// Probe the cluster through the pod's service account.
    #[arg(long, env = "FERRY_IN_CLUSTER")]
    pub in_cluster: bool,
    /// Keycloak's base URL; by default found from its route in `user-management`.
    #[arg(long, env = "FERRY_KEYCLOAK_URL")]
    pub keycloak_url: Option<String>,
    /// Keycloak's master-realm administrator (default `admin`).
    #[arg(long, env = "FERRY_KEYCLOAK_ADMIN_USER")]
    pub keycloak_admin_user: Option<String>,
    /// Its password; without it the agent reads the `--keycloak-admin-secret`.
    #[arg(
        long,
        env = "FERRY_KEYCLOAK_ADMIN_PASSWORD",
        hide_env_values = true,
        value_parser = parse_password
    )]
    pub keycloak_admin_password: Option<Password>,
    /// Secret in Keycloak's namespace with keys `username` and `password`,
    /// read when no password is given.
    #[arg(
        long,
        env = "FERRY_KEYCLOAK_ADMIN_SECRET",
        default_value = "keycloak-admin"
    )]
    pub keycloak_admin_secret: String,
    /// A program printing Keycloak's own export of the realms it is given
    /// as arguments (`kc.sh export --users realm_file` documents on stdout),
    /// run on identity export to carry users' password hashes, which the
    /// Admin API never returns; unset: users travel without credentials.
    #[arg(long, env = "FERRY_KEYCLOAK_EXPORT_COMMAND")]
    pub keycloak_export_command: Option<PathBuf>,
    /// Bytes this cluster declares it can take for a migrated registry
    /// (volumes and buckets), reported by preflight; unset: no declaration.
    #[arg(long, env = "FERRY_CAPACITY_BYTES")]
    pub capacity_bytes: Option<u64>,
    /// Platform version reported when no cluster probe is configured.
    #[arg(long, env = "FERRY_PLATFORM_VERSION", default_value = "")]
    pub platform_version: String,
    /// Registries reported when no cluster probe is configured, `name=version`.
    #[arg(long = "registry", env = "FERRY_REGISTRIES", value_delimiter = ',', value_parser = parse_registry)]
    pub registries: Vec<pb::RegistryFacts>,
    /// A database loads may target, `name=postgres://…` (repeatable). In a
    /// cluster this will come from the registry's database secret.
    #[arg(long = "database", env = "FERRY_DATABASES", value_delimiter = ',', value_parser = parse_database)]
    pub databases: Vec<DatabaseUrl>,
    /// The data schemas loads may write (and read references from), in the
    /// order an unqualified table name is looked up. Ferry's own schema,
    /// `pg_*` and `information_schema` are refused.
    #[arg(
        long = "load-schemas",
        env = "FERRY_LOAD_SCHEMAS",
        value_delimiter = ',',
        default_value = "registry",
        value_parser = parse_load_schema
    )]
    pub load_schemas: Vec<String>,
    /// How verification reads each volume claim of a registry: a reader
    /// pod per claim (`pod`), or Velero's volume backup and restore totals
    /// (`velero`).
    #[arg(long, env = "FERRY_VOLUME_READER", value_enum, default_value = "pod")]
    pub volume_reader: VolumeReader,
    /// The reader pod's image: the agent's own, which has `ferry-agent
    /// volume-digest`. The chart sets it to the image it runs.
    #[arg(
        long,
        env = "FERRY_VOLUME_READER_IMAGE",
        default_value = concat!("registry.example.org/ferry/ferry-agent:", env!("CARGO_PKG_VERSION"))
    )]
    pub volume_reader_image: String,
    /// How long a reader pod may take (scheduling, pulling the image,
    /// reading the whole volume).
    #[arg(long, env = "FERRY_VOLUME_READER_TIMEOUT", default_value = "30m", value_parser = parse_duration)]
    pub volume_reader_timeout: Duration,
    /// How long the inventory waits for the registry's workloads to be
    /// ready (and its databases to answer) before it measures.
    #[arg(long, env = "FERRY_READY_TIMEOUT", default_value = "10m", value_parser = parse_duration)]
    pub ready_timeout: Duration,
    /// The PGO user whose Secret `<cluster>-pguser-<user>` verification
    /// reads a registry database with (read-only transactions).
    #[arg(long, env = "FERRY_REGISTRY_DB_USER", default_value = "postgres")]
    pub registry_db_user: String,
    /// Where to reach a PostgresCluster's database instead of the Secret's
    /// `host`/`port`/`dbname`: `<cluster>=postgresql://host:port[/dbname]`
    /// (repeatable), for an agent outside the cluster.
    #[arg(long = "registry-database", env = "FERRY_REGISTRY_DATABASES", value_delimiter = ',', value_parser = parse_database_address)]
    pub registry_databases: Vec<DatabaseAddress>,
    #[arg(long, env = "FERRY_LOG_FORMAT", default_value = "human")]
    pub log_format: LogFormat,
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
}

impl AgentConfig {
    /// Where durable agent state goes: `--state-dir`, else a directory in the
    /// system's temporary space (which survives a restart of the process, not
    /// of the machine).
    pub fn state_dir_or_temp(&self) -> PathBuf {
        self.state_dir.clone().unwrap_or_else(|| {
            std::env::temp_dir().join(format!("ferry-agent-{}", self.cluster_id))
        })
    }

    /// What the coordinator's certificate must show.
    pub fn coordinator_check(&self) -> ferry_common::tls::ServerCheck<'_> {
        ferry_common::tls::ServerCheck {
            name: self.coordinator_name.as_deref(),
            identity: &self.coordinator_identity,
        }
    }

    pub fn tls_paths(&self) -> TlsPaths {
        let d = TlsPaths::in_dir(&self.pki_dir, &format!("agent-{}", self.cluster_id));
        TlsPaths {
            cert: self.tls_cert.clone().unwrap_or(d.cert),
            key: self.tls_key.clone().unwrap_or(d.key),
            ca: self.tls_ca.clone().unwrap_or(d.ca),
        }
    }

    /// A configuration for in-process use (demo, tests).
    pub fn new(cluster_id: &str, coordinator: &str, pki_dir: PathBuf) -> Self {
        Self {
            cluster_id: cluster_id.into(),
            coordinator: coordinator.into(),
            coordinator_name: None,
            coordinator_identity: ferry_common::identity::COORDINATOR_URI.into(),
            http_listen: None,
            pki_dir,
            tls_cert: None,
            tls_key: None,
            tls_ca: None,
            state_dir: None,
            stores: None,
            kubeconfig: None,
            in_cluster: false,
            keycloak_url: None,
            keycloak_admin_user: None,
            keycloak_admin_password: None,
            keycloak_admin_secret: "keycloak-admin".into(),
            keycloak_export_command: None,
            capacity_bytes: None,
            backoff_base: Duration::from_millis(200),
            backoff_cap: Duration::from_secs(5),
            platform_version: String::new(),
            registries: vec![],
            databases: vec![],
            load_schemas: crate::load::DEFAULT_SCHEMAS
                .iter()
                .map(|s| s.to_string())
                .collect(),
            volume_reader: VolumeReader::Pod,
            volume_reader_image: concat!(
                "registry.example.org/ferry/ferry-agent:",
                env!("CARGO_PKG_VERSION")
            )
            .into(),
            volume_reader_timeout: Duration::from_secs(30 * 60),
            ready_timeout: Duration::from_secs(10 * 60),
            registry_db_user: "postgres".into(),
            registry_databases: vec![],
            log_format: LogFormat::Human,
            otlp_endpoint: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_registry_database_address_takes_no_credentials() {
        let a = parse_database_address("operational=postgresql://127.0.0.1:5433/reg");
        assert_eq!(
            a,
            Ok(DatabaseAddress {
                cluster: "operational".into(),
                host: "127.0.0.1".into(),
                port: 5433,
                dbname: "reg".into(),
            })
        );
        let a = parse_database_address("analytical=postgres://db.example:5432");
        assert_eq!(
            a.map(|a| (a.host, a.dbname)),
            Ok(("db.example".into(), String::new()))
        );
        for bad in [
            "operational=postgresql://user:secret@h:5432/db",
            "operational=h:5432",
            "=postgresql://h:5432",
            "operational=postgresql://h:port",
        ] {
            let err = parse_database_address(bad).err().unwrap_or_default();
            assert!(!err.is_empty(), "{bad} accepted");
            assert!(!err.contains("secret"), "{err}");
        }
    }
}
