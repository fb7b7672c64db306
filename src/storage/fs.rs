//! Filesystem store (being implemented: see the storage issue).

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::{
    ByteStream, Capabilities, GetOptions, GetResult, ObjectMeta, ObjectStore, PutOptions,
    PutResult, StorageError, StoreContext,
};

/// The `type = "fs"` store table.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FsConfig {
    pub path: Option<std::path::PathBuf>,
    pub encryption: Option<super::Encryption>,
    pub encryption_key: Option<crate::secret::Secret>,
}

#[derive(Debug)]
pub struct FsStore {
    cfg: FsConfig,
}

impl FsStore {
    #[allow(clippy::unused_async)]
    pub fn new(cfg: &FsConfig, _ctx: &StoreContext) -> Result<Self, StorageError> {
        Ok(FsStore { cfg: cfg.clone() })
    }

    fn unsupported(&self, operation: &'static str) -> StorageError {
        StorageError::Unsupported {
            operation,
            store: self.describe(),
        }
    }
}

#[async_trait]
impl ObjectStore for FsStore {
    fn describe(&self) -> String {
        format!("fs {:?}", self.cfg)
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
