//! The object stores an agent may use, as its cluster's configuration names
//! them, each limited to the prefixes the configuration allows. Every key
//! that comes from the network is checked before it becomes a path.
mod key;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::memory::InMemory;
use object_store::multipart::MultipartStore;
use object_store::{Certificate, ClientOptions, ObjectStore};
use serde::Deserialize;

pub use key::{KeyError, check_key, join};

#[derive(Debug, thiserror::Error)]
pub enum ObjectsError {
    #[error("cannot read the store configuration {path}: {message}")]
    Config { path: PathBuf, message: String },
    #[error("store {0:?} is not configured on this agent; configured: {1}")]
    UnknownStore(String, String),
    #[error(
        "prefix {prefix:?} of store {store:?} is not allowed on this agent; allowed: {allowed}"
    )]
    PrefixNotAllowed {
        store: String,
        prefix: String,
        allowed: String,
    },
    #[error("store {store:?}: cannot use the CA certificates in {path}: {message}")]
    CaCert {
        store: String,
        path: PathBuf,
        message: String,
    },
    #[error("store {store:?}: {source}")]
    Open {
        store: String,
        source: object_store::Error,
    },
    #[error(transparent)]
    Key(#[from] KeyError),
}

/// `stores.json`: `{"stores": {"<name>": {"s3": {...}, "prefixes": ["backups/"]}}}`.
#[derive(Debug, Clone, Deserialize, Default)]
pub struct StoresConfig {
    #[serde(default)]
    pub stores: BTreeMap<String, StoreSpec>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct StoreSpec {
    #[serde(flatten)]
    pub backend: Backend,
    /// Prefixes this agent may read and write; `""` allows the whole store.
    pub prefixes: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    S3(S3Spec),
    /// In-process memory, for tests of the relay's logic.
    Memory,
}

#[derive(Debug, Clone, Deserialize)]
pub struct S3Spec {
    /// Absent for AWS itself; e.g. `http://rook-ceph-rgw.openshift-storage:80` for Ceph.
    pub endpoint: Option<String>,
    pub bucket: String,
    #[serde(default = "default_region")]
    pub region: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    #[serde(default)]
    pub allow_http: bool,
    /// A PEM file of CA certificates to trust for an `https://` endpoint
    /// besides the system's roots (a cluster's own CA, the relay bench's).
    #[serde(default)]
    pub ca_cert: Option<PathBuf>,
    /// Sign each request's body with SHA-256 for S3 to check. Off by
    /// default: the relay already checks every chunk with SHA-256 end to end,
    /// and hashing every body twice more (client and server) costs a
    /// quarter of the sink's CPU.
    #[serde(default)]
    pub signed_payload: bool,
}

fn default_region() -> String {
    "us-east-1".into()
}

impl StoresConfig {
    pub fn load(path: &Path) -> Result<Self, ObjectsError> {
        let text = std::fs::read_to_string(path).map_err(|e| ObjectsError::Config {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        serde_json::from_str(&text).map_err(|e| ObjectsError::Config {
            path: path.to_owned(),
            message: format!("{e} (expected {{\"stores\": {{\"<name>\": {{\"s3\": {{\"bucket\": …}}, \"prefixes\": [\"…\"]}}}}}})"),
        })
    }
}

/// A store opened for use: both the plain and the multipart interfaces.
#[derive(Clone)]
pub struct OpenStore {
    pub store: Arc<dyn ObjectStore>,
    pub multipart: Arc<dyn MultipartStore>,
}

/// The stores this agent may use, opened lazily and shared.
pub struct Stores {
    config: StoresConfig,
    opened: std::sync::Mutex<BTreeMap<String, OpenStore>>,
}

/// One store limited to one allowed prefix.
#[derive(Clone)]
pub struct Scoped {
    pub name: String,
    pub prefix: String,
    pub open: OpenStore,
}

impl Stores {
    pub fn new(config: StoresConfig) -> Self {
        Self {
            config,
            opened: std::sync::Mutex::new(BTreeMap::new()),
        }
    }

    pub fn names(&self) -> Vec<String> {
        self.config.stores.keys().cloned().collect()
    }

    /// The store `name` limited to `prefix`, if the configuration allows it.
    pub fn scoped(&self, name: &str, prefix: &str) -> Result<Scoped, ObjectsError> {
        let spec =
            self.config.stores.get(name).ok_or_else(|| {
                ObjectsError::UnknownStore(name.to_string(), self.names().join(", "))
            })?;
        key::check_prefix(prefix)?;
        if !spec
            .prefixes
            .iter()
            .any(|allowed| key::within(prefix, allowed))
        {
            return Err(ObjectsError::PrefixNotAllowed {
                store: name.to_string(),
                prefix: prefix.to_string(),
                allowed: spec.prefixes.join(", "),
            });
        }
        let open = {
            let mut opened = match self.opened.lock() {
                Ok(g) => g,
                Err(p) => p.into_inner(),
            };
            match opened.get(name) {
                Some(o) => o.clone(),
                None => {
                    let o = open(name, &spec.backend)?;
                    opened.insert(name.to_string(), o.clone());
                    o
                }
            }
        };
        Ok(Scoped {
            name: name.to_string(),
            prefix: prefix.to_string(),
            open,
        })
    }
}

fn open(name: &str, backend: &Backend) -> Result<OpenStore, ObjectsError> {
    match backend {
        Backend::S3(s3) => {
            let mut b = AmazonS3Builder::new()
                .with_bucket_name(&s3.bucket)
                .with_region(&s3.region)
                .with_access_key_id(&s3.access_key_id)
                .with_secret_access_key(&s3.secret_access_key)
                .with_allow_http(s3.allow_http)
                .with_unsigned_payload(!s3.signed_payload);
            if let Some(endpoint) = &s3.endpoint {
                b = b.with_endpoint(endpoint);
            }
            if let Some(path) = &s3.ca_cert {
                b = b.with_client_options(ca_options(name, path)?);
            }
            let s3: Arc<AmazonS3> = Arc::new(b.build().map_err(|source| ObjectsError::Open {
                store: name.to_string(),
                source,
            })?);
            Ok(OpenStore {
                store: s3.clone(),
                multipart: s3,
            })
        }
        Backend::Memory => {
            let m = Arc::new(InMemory::new());
            Ok(OpenStore {
                store: m.clone(),
                multipart: m,
            })
        }
    }
}

/// Client options that trust the CA certificates in `path` as well.
fn ca_options(store: &str, path: &Path) -> Result<ClientOptions, ObjectsError> {
    let err = |message: String| ObjectsError::CaCert {
        store: store.to_string(),
        path: path.to_owned(),
        message,
    };
    let pem = std::fs::read(path).map_err(|e| err(e.to_string()))?;
    let certs = Certificate::from_pem_bundle(&pem).map_err(|e| err(e.to_string()))?;
    if certs.is_empty() {
        return Err(err("no PEM certificate in it".into()));
    }
    Ok(certs
        .into_iter()
        .fold(ClientOptions::new(), ClientOptions::with_root_certificate))
}

impl Scoped {
    /// The store path of `key` (relative to this scope's prefix), refusing
    /// keys that would escape it.
    pub fn path(&self, key: &str) -> Result<object_store::path::Path, ObjectsError> {
        Ok(object_store::path::Path::from(join(&self.prefix, key)?))
    }

    /// The key relative to the prefix of a path listed in this scope.
    pub fn key_of(&self, path: &object_store::path::Path) -> Option<String> {
        let full = path.as_ref();
        let p = self.prefix.trim_end_matches('/');
        if p.is_empty() {
            return Some(full.to_string());
        }
        full.strip_prefix(p)?.strip_prefix('/').map(str::to_string)
    }

    pub fn list_root(&self) -> Option<object_store::path::Path> {
        let p = self.prefix.trim_end_matches('/');
        (!p.is_empty()).then(|| object_store::path::Path::from(p))
    }
}

#[cfg(test)]
mod tests {
    use ferry_sandbox::s3::{S3Config, S3Server, S3Tls};
    use object_store::{ObjectStoreExt, PutPayload};

    use super::*;

    /// An `https://` endpoint whose certificate comes from a private CA (a
    /// cluster's own, the relay bench's) works once `ca_cert` names that CA.
    #[tokio::test]
    async fn https_endpoint_trusted_through_ca_cert() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let pki = dir.path().join("pki");
        ferry_common::pki::init(&pki, &ferry_common::pki::PkiPlan::default())?;
        let ca = pki.join("ca.pem");
        let mut config = S3Config::new(dir.path().join("s3"), "access", "secret-0123456789");
        config.tls = Some(S3Tls::issued_by(&ca, &pki.join("ca-key.pem"))?);
        let s3 = S3Server::start_with(config).await?;
        assert!(s3.endpoint().starts_with("https://"), "{}", s3.endpoint());
        s3.create_bucket("bkt").await?;
        let stores: StoresConfig = serde_json::from_value(serde_json::json!({"stores": {"obc": {
            "s3": {"endpoint": s3.endpoint(), "bucket": "bkt", "access_key_id": "access",
                   "secret_access_key": "secret-0123456789", "ca_cert": ca},
            "prefixes": ["data"]
        }}}))?;
        let scoped = Stores::new(stores).scoped("obc", "data")?;
        let path = scoped.path("k")?;
        scoped
            .open
            .store
            .put(&path, PutPayload::from_static(b"over TLS"))
            .await?;
        let got = scoped.open.store.get(&path).await?.bytes().await?;
        assert_eq!(&got[..], b"over TLS");
        assert_eq!(&s3.get_object("bkt", "data/k").await?[..], b"over TLS");
        Ok(())
    }
}
