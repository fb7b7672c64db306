//! GCS store (being implemented: see the storage issue).

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::{
    ByteStream, Capabilities, GetOptions, GetResult, ObjectMeta, ObjectStore, PutOptions,
    PutResult, StorageError, StoreContext,
};

/// The `type = "gcs"` store table.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GcsConfig {
    pub bucket: Option<String>,
    pub prefix: Option<String>,
    pub endpoint: Option<String>,
}

#[derive(Debug)]
pub struct GcsStore {
    cfg: GcsConfig,
}

impl GcsStore {
    #[allow(clippy::unused_async)]
    pub async fn new(cfg: &GcsConfig, _ctx: &StoreContext) -> Result<Self, StorageError> {
        Ok(GcsStore { cfg: cfg.clone() })
    }

    fn unsupported(&self, operation: &'static str) -> StorageError {
        StorageError::Unsupported {
            operation,
            store: self.describe(),
        }
    }
}

#[async_trait]
impl ObjectStore for GcsStore {
    fn describe(&self) -> String {
        format!("gcs {:?}", self.cfg)
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            write: false,
            stat: false,
            list: false,
            range_reads: false,
            reports_md5: false,
        }
    }

    fn location(&self, _name: &str) -> Result<String, StorageError> {
        Err(self.unsupported("location"))
    }

    async fn stat(&self, _name: &str) -> Result<ObjectMeta, StorageError> {
        Err(self.unsupported("stat"))
    }

    async fn get(&self, _name: &str, _opts: &GetOptions) -> Result<GetResult, StorageError> {
        Err(self.unsupported("get"))
    }

    async fn put(
        &self,
        _name: &str,
        _body: ByteStream,
        _opts: &PutOptions,
    ) -> Result<PutResult, StorageError> {
        Err(self.unsupported("put"))
    }

    async fn delete(&self, _name: &str) -> Result<(), StorageError> {
        Err(self.unsupported("delete"))
    }

    async fn check(&self) -> Result<(), StorageError> {
        Err(self.unsupported("check"))
    }
}
