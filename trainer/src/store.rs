//! The artifact store: `file://`, `s3://`, `gs://` or `az://` URLs through `object_store`.
//!
//! Every write is atomic (object stores publish whole objects; the local file system writes a
//! temporary file and renames it), and artifacts live under digest-named prefixes, so a reader
//! never sees a half-written snapshot or model. Credentials come from the environment
//! (`AWS_ACCESS_KEY_ID`, `GOOGLE_SERVICE_ACCOUNT`, `AZURE_STORAGE_ACCOUNT_KEY`, …), which the
//! operator fills from the Secret a resource names.

use object_store::{ObjectStore, ObjectStoreExt, PutPayload, path::Path as StorePath};
use sha2::{Digest, Sha256};
use url::Url;

/// Errors of the artifact store; each names the URL.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The URL does not parse or names no supported store.
    #[error(
        "artifact store URL {url:?} is not valid (use file:///abs/path, s3://bucket/prefix, gs://bucket/prefix or az://container/prefix): {reason}"
    )]
    Url {
        /// The URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// Reading or writing failed.
    #[error("artifact store {op} {url} failed")]
    Io {
        /// `read`, `write`, `list` or `delete`.
        op: &'static str,
        /// The object's URL.
        url: String,
        /// The store's error.
        #[source]
        source: object_store::Error,
    },
}

/// A location in an artifact store: a store plus a prefix.
#[derive(Debug)]
pub struct Store {
    inner: Box<dyn ObjectStore>,
    base: Url,
    prefix: StorePath,
}

/// `sha256:<hex>` of some bytes.
pub fn digest(bytes: &[u8]) -> String {
    let hash = Sha256::digest(bytes);
    let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

impl Store {
    /// Opens the store behind a URL; options come from the environment.
    pub fn open(url: &str) -> Result<Self, StoreError> {
        let bad = |reason: String| StoreError::Url {
            url: url.to_string(),
            reason,
        };
        let trimmed = url.trim_end_matches('/');
        let parsed = Url::parse(trimmed).map_err(|e| bad(e.to_string()))?;
        if parsed.scheme() == "file" && !parsed.path().starts_with('/') {
            return Err(bad("a file URL needs an absolute path".into()));
        }
        let options: Vec<(String, String)> = std::env::vars()
            .map(|(k, v)| (k.to_ascii_lowercase(), v))
            .collect();
        let (inner, prefix) =
            object_store::parse_url_opts(&parsed, options).map_err(|e| bad(e.to_string()))?;
        Ok(Self {
            inner,
            base: parsed,
            prefix,
        })
    }

    /// The URL of an object below this store's prefix.
    pub fn url_of(&self, key: &str) -> String {
        format!(
            "{}/{}",
            self.base.as_str().trim_end_matches('/'),
            key.trim_start_matches('/')
        )
    }

    fn path(&self, key: &str) -> StorePath {
        let mut parts: Vec<String> = self
            .prefix
            .parts()
            .map(|p| p.as_ref().to_string())
            .collect();
        parts.extend(key.split('/').filter(|s| !s.is_empty()).map(str::to_string));
        StorePath::from_iter(parts)
    }

    /// Writes one object atomically.
    pub async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<(), StoreError> {
        self.inner
            .put(&self.path(key), PutPayload::from(bytes))
            .await
            .map(|_| ())
            .map_err(|source| StoreError::Io {
                op: "write",
                url: self.url_of(key),
                source,
            })
    }

    /// Reads one object.
    pub async fn get(&self, key: &str) -> Result<Vec<u8>, StoreError> {
        let io = |source| StoreError::Io {
            op: "read",
            url: self.url_of(key),
            source,
        };
        let result = self.inner.get(&self.path(key)).await.map_err(io)?;
        let bytes = result.bytes().await.map_err(io)?;
        Ok(bytes.to_vec())
    }

    /// Whether an object exists.
    pub async fn exists(&self, key: &str) -> Result<bool, StoreError> {
        match self.inner.head(&self.path(key)).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(source) => Err(StoreError::Io {
                op: "read",
                url: self.url_of(key),
                source,
            }),
        }
    }
}

impl Store {
    /// Keys (relative to this store's prefix) of the objects below `prefix`.
    pub async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        use futures::TryStreamExt;
        let base: Vec<String> = self
            .prefix
            .parts()
            .map(|p| p.as_ref().to_string())
            .collect();
        let found: Vec<object_store::ObjectMeta> = self
            .inner
            .list(Some(&self.path(prefix)))
            .try_collect()
            .await
            .map_err(|source| StoreError::Io {
                op: "list",
                url: self.url_of(prefix),
                source,
            })?;
        let mut keys: Vec<String> = found
            .into_iter()
            .map(|meta| {
                let parts: Vec<String> = meta
                    .location
                    .parts()
                    .skip(base.len())
                    .map(|p| p.as_ref().to_string())
                    .collect();
                parts.join("/")
            })
            .collect();
        keys.sort();
        Ok(keys)
    }

    /// Deletes one object; a missing object is no error.
    pub async fn delete(&self, key: &str) -> Result<(), StoreError> {
        match self.inner.delete(&self.path(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(source) => Err(StoreError::Io {
                op: "delete",
                url: self.url_of(key),
                source,
            }),
        }
    }
}

/// Reads the object behind a full URL (`file:///…/x.onnx`, `s3://bucket/key`).
pub async fn read_url(url: &str) -> Result<Vec<u8>, StoreError> {
    let (dir, name) = url.rsplit_once('/').ok_or_else(|| StoreError::Url {
        url: url.to_string(),
        reason: "no object name".into(),
    })?;
    let dir = if dir.ends_with(':') || dir.ends_with("//") {
        format!("{dir}/")
    } else {
        dir.to_string()
    };
    Store::open(&dir)?.get(name).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn local_store_round_trips_and_names_missing_objects() {
        let dir = std::env::temp_dir().join(format!("leitwerk-store-{}", std::process::id()));
        let store = Store::open(&format!("file://{}/base/", dir.display())).unwrap();
        store.put("a/b/c.json", b"{}".to_vec()).await.unwrap();
        assert_eq!(store.get("a/b/c.json").await.unwrap(), b"{}");
        assert!(store.exists("a/b/c.json").await.unwrap());
        assert!(!store.exists("a/b/missing").await.unwrap());
        let url = store.url_of("a/b/c.json");
        assert_eq!(read_url(&url).await.unwrap(), b"{}");
        let err = store.get("nope").await.unwrap_err().to_string();
        assert!(err.contains("read") && err.contains("/base/nope"), "{err}");
        let err = Store::open("ftp://x/y").unwrap_err().to_string();
        assert!(err.contains("ftp://x/y") && err.contains("s3://"), "{err}");
        assert_eq!(
            digest(b"abc"),
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        std::fs::remove_dir_all(dir).ok();
    }
}
