//! The values inside the command lines (`NAME=PATH`, `NAME=VERSION=URL`, `NAME=URL`,
//! `KEY=VALUE`, `qdrant+URL/COLLECTION`): each parses what its `Display` writes.

use std::fmt;
use std::str::FromStr;

/// A RagIndex source as the indexing Job sees it: its name and where it is mounted (a
/// directory holding a ConfigMap's keys, or a glob of files).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceMount {
    /// The source's name in the spec.
    pub name: String,
    /// A directory or a glob.
    pub path: String,
}

impl FromStr for SourceMount {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (name, path) = s
            .split_once('=')
            .filter(|(n, p)| !n.is_empty() && !p.is_empty())
            .ok_or_else(|| format!("--source {s:?}: expected NAME=PATH"))?;
        Ok(SourceMount {
            name: name.to_string(),
            path: path.to_string(),
        })
    }
}

impl fmt::Display for SourceMount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.name, self.path)
    }
}

/// A model version the inference server serves: `NAME=VERSION=URL[#sha256:HEX]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelArg {
    /// Model name.
    pub name: String,
    /// Version.
    pub version: String,
    /// URL of the ONNX file.
    pub url: String,
    /// Expected digest (hex, without `sha256:`), if given.
    pub sha256: Option<String>,
}

impl FromStr for ModelArg {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut parts = s.splitn(3, '=');
        let (Some(name), Some(version), Some(rest)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(format!(
                "--model {s:?} is not NAME=VERSION=URL (e.g. lead-scoring=v3=file:///models/model.onnx)"
            ));
        };
        if name.is_empty() || version.is_empty() || rest.is_empty() {
            return Err(format!("--model {s:?} has an empty name, version or URL"));
        }
        let (url, sha256) = match rest.split_once("#sha256:") {
            Some((url, hex)) => (url.to_string(), Some(hex.to_ascii_lowercase())),
            None => (rest.to_string(), None),
        };
        Ok(ModelArg {
            name: name.into(),
            version: version.into(),
            url,
            sha256,
        })
    }
}

impl fmt::Display for ModelArg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}={}", self.name, self.version, self.url)?;
        match &self.sha256 {
            Some(hex) => write!(f, "#sha256:{hex}"),
            None => Ok(()),
        }
    }
}

/// A RagIndex version the inference server serves: `NAME=URL` of its index file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexArg {
    /// The RagIndex's name, as queried.
    pub name: String,
    /// URL of the index file.
    pub url: String,
}

impl FromStr for IndexArg {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once('=') {
            Some((name, url)) if !name.is_empty() && url.contains("://") => Ok(IndexArg {
                name: name.into(),
                url: url.into(),
            }),
            _ => Err(format!(
                "--index {s:?} is not NAME=URL (e.g. product-docs=file:///indexes/ab12.lwrag)"
            )),
        }
    }
}

impl fmt::Display for IndexArg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.name, self.url)
    }
}

/// Labels the inference server sets on its own metrics; a constant label may not reuse them.
pub const RESERVED_METRIC_LABELS: [&str; 8] = [
    "model", "version", "feature", "bucket", "kind", "outcome", "code", "protocol",
];

/// A constant metric label, `KEY=VALUE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricLabel(pub String, pub String);

impl FromStr for MetricLabel {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (k, v) = text
            .split_once('=')
            .ok_or_else(|| format!("--metric-label {text:?} is not KEY=VALUE"))?;
        let valid = !k.is_empty()
            && !k.starts_with(|c: char| c.is_ascii_digit())
            && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid || k.starts_with("__") {
            return Err(format!(
                "--metric-label key {k:?} is not a Prometheus label name: use letters, digits and _, e.g. variant=canary"
            ));
        }
        if RESERVED_METRIC_LABELS.contains(&k) {
            return Err(format!(
                "--metric-label key {k:?} is a label the server sets itself; pick another"
            ));
        }
        Ok(MetricLabel(k.into(), v.into()))
    }
}

impl fmt::Display for MetricLabel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.0, self.1)
    }
}

/// Where a RagIndex's vectors live on a Qdrant server: its gRPC URL and the collection name
/// (the alias that serves; each version's collection is `<collection>-<version>`). Written
/// `qdrant+http://qdrant.vectors:6334/product-docs`, the form `--qdrant` of the indexing Job
/// and the URL of `--index` of the retrieval server both take. The API key travels apart, in
/// the environment ([`crate::contract::QDRANT_API_KEY_ENV`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QdrantTarget {
    /// gRPC URL, e.g. `http://qdrant.vectors:6334`.
    pub url: String,
    /// Collection name: the alias of the serving version.
    pub collection: String,
}

impl QdrantTarget {
    /// The scheme prefix that marks a Qdrant location among index URLs.
    pub const SCHEME: &'static str = "qdrant+";

    /// The collection of index version `version`.
    pub fn version_collection(&self, version: &str) -> String {
        format!("{}-{version}", self.collection)
    }

    /// The version whose collection `name` is, if it is one of this target's: the
    /// collection name, a dash and a version of 12 hexadecimal digits.
    pub fn version_of(&self, name: &str) -> Option<String> {
        let version = name
            .strip_prefix(self.collection.as_str())?
            .strip_prefix('-')?;
        (version.len() == 12 && version.chars().all(|c| c.is_ascii_hexdigit()))
            .then(|| version.to_string())
    }
}

impl FromStr for QdrantTarget {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wrong = || {
            format!(
                "{s:?} is not qdrant+URL/COLLECTION (e.g. qdrant+http://qdrant.vectors:6334/product-docs)"
            )
        };
        let rest = s.strip_prefix(Self::SCHEME).ok_or_else(wrong)?;
        let (url, collection) = rest.rsplit_once('/').ok_or_else(wrong)?;
        let host = url.split_once("://").map(|(_, h)| h).unwrap_or_default();
        if host.is_empty() || host.contains('/') || collection.is_empty() {
            return Err(wrong());
        }
        Ok(QdrantTarget {
            url: url.into(),
            collection: collection.into(),
        })
    }
}

impl fmt::Display for QdrantTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}/{}", Self::SCHEME, self.url, self.collection)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_qdrant_target_parses_what_it_writes_and_knows_its_versions() {
        let t: QdrantTarget = "qdrant+http://qdrant.vectors:6334/product-docs"
            .parse()
            .unwrap();
        assert_eq!(t.url, "http://qdrant.vectors:6334");
        assert_eq!(t.collection, "product-docs");
        assert_eq!(t.to_string().parse::<QdrantTarget>().unwrap(), t);
        let c = t.version_collection("0123456789ab");
        assert_eq!(c, "product-docs-0123456789ab");
        assert_eq!(t.version_of(&c).as_deref(), Some("0123456789ab"));
        // Another index's collection that shares the prefix is not one of its versions.
        assert_eq!(t.version_of("product-docs-v2-0123456789ab"), None);
        assert_eq!(t.version_of("product-docs"), None);
        for wrong in [
            "http://qdrant:6334/x",
            "qdrant+http://qdrant:6334",
            "qdrant+http://qdrant:6334/",
            "qdrant+nothing/x",
        ] {
            let e = wrong.parse::<QdrantTarget>().unwrap_err();
            assert!(e.contains("qdrant+URL/COLLECTION"), "{wrong}: {e}");
        }
    }
}
