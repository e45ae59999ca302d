//! The operator's settings: one YAML file mounted from the chart's values.

use std::path::Path;

use serde::{Deserialize, Serialize};

/// Settings of the operator. Every field has a default, so an empty file is valid.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OperatorConfig {
    /// Image of the trainer Jobs (`leitwerk-trainer`).
    #[serde(default = "default_trainer_image")]
    pub trainer_image: String,
    /// Image of the serving Deployments (`leitwerk-inference-server`).
    #[serde(default = "default_server_image")]
    pub inference_server_image: String,
    /// Artifact store URL used when a resource names none.
    #[serde(default = "default_artifact_store")]
    pub artifact_store: String,
    /// PersistentVolumeClaim that holds a `file://` artifact store; Jobs mount it read-write
    /// and serving pods read-only at the store's path.
    #[serde(default = "default_artifact_claim")]
    pub artifact_claim_name: String,
    /// Prometheus URL used when an Experiment names none.
    #[serde(default = "default_prometheus")]
    pub prometheus_url: String,
    /// Service account of workloads when a resource names none.
    #[serde(default = "default_workload_sa")]
    pub workload_service_account: String,
    /// Secret (in each workload's namespace) whose keys become the environment of every Job
    /// and serving pod: the credentials and endpoint of an object-store `artifactStore`
    /// (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_ENDPOINT`, …). None by default
    /// (a `file://` store, or credentials from the node's identity).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_store_secret: Option<String>,
    /// Namespaces (besides each workload's own) whose pods may connect to the serving pods,
    /// through the NetworkPolicies the operator keeps in every namespace it works in
    /// (`network_policy.rs`): Prometheus's, and the Gateway's. `null` turns the
    /// NetworkPolicies off.
    #[serde(default = "default_ingress_namespaces")]
    pub network_policy_ingress_namespaces: Option<Vec<String>>,
    /// Reconciles each controller runs at once. Each one in flight holds its own API
    /// connection and buffers: without a bound, thousands of objects created together opened
    /// as many connections (see `benches/README.md`, the operator at scale).
    #[serde(default = "default_reconcile_concurrency")]
    pub reconcile_concurrency: u16,
}

fn default_reconcile_concurrency() -> u16 {
    16
}

fn default_ingress_namespaces() -> Option<Vec<String>> {
    Some(vec!["monitoring".to_string()])
}

fn default_trainer_image() -> String {
    "ghcr.io/leitwerk-dev/leitwerk-trainer:0.1.0".to_string()
}

fn default_server_image() -> String {
    "ghcr.io/leitwerk-dev/leitwerk-inference-server:0.1.0".to_string()
}

fn default_artifact_store() -> String {
    "file:///var/lib/leitwerk/artifacts".to_string()
}

fn default_artifact_claim() -> String {
    "leitwerk-artifacts".to_string()
}

fn default_prometheus() -> String {
    "http://prometheus-operated.monitoring:9090".to_string()
}

fn default_workload_sa() -> String {
    "leitwerk-workload".to_string()
}

impl Default for OperatorConfig {
    fn default() -> Self {
        Self {
            trainer_image: default_trainer_image(),
            inference_server_image: default_server_image(),
            artifact_store: default_artifact_store(),
            artifact_claim_name: default_artifact_claim(),
            prometheus_url: default_prometheus(),
            workload_service_account: default_workload_sa(),
            artifact_store_secret: None,
            network_policy_ingress_namespaces: default_ingress_namespaces(),
            reconcile_concurrency: default_reconcile_concurrency(),
        }
    }
}

/// Errors of loading the configuration file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("failed to read operator config {path}")]
    Read {
        /// The path.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid YAML for the settings.
    #[error(
        "failed to parse operator config {path} (fields: trainerImage, inferenceServerImage, artifactStore, artifactClaimName, prometheusUrl, workloadServiceAccount)"
    )]
    Parse {
        /// The path.
        path: String,
        /// The parser's error, which names the line and field.
        #[source]
        source: yaml_serde::Error,
    },
    /// A field has a value the operator cannot use.
    #[error("invalid operator config {path}: {field}: {problem}")]
    Invalid {
        /// The path.
        path: String,
        /// The field.
        field: &'static str,
        /// What is wrong and how to fix it.
        problem: String,
    },
}

impl OperatorConfig {
    /// Loads the settings from a YAML file; an empty file gives the defaults.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let display = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: display.clone(),
            source,
        })?;
        Self::parse(&text, &display)
    }

    /// Parses and checks the settings.
    pub fn parse(text: &str, origin: &str) -> Result<Self, ConfigError> {
        let config: Self = if text.trim().is_empty() {
            Self::default()
        } else {
            yaml_serde::from_str(text).map_err(|source| ConfigError::Parse {
                path: origin.to_string(),
                source,
            })?
        };
        let invalid = |field, problem: &str| ConfigError::Invalid {
            path: origin.to_string(),
            field,
            problem: problem.to_string(),
        };
        let store_schemes = ["file://", "s3://", "gs://", "az://"];
        if !store_schemes
            .iter()
            .any(|s| config.artifact_store.starts_with(s))
        {
            return Err(invalid(
                "artifactStore",
                "must start with file://, s3://, gs:// or az://",
            ));
        }
        if !(config.prometheus_url.starts_with("http://")
            || config.prometheus_url.starts_with("https://"))
        {
            return Err(invalid(
                "prometheusUrl",
                "must be an http:// or https:// URL",
            ));
        }
        if config.trainer_image.trim().is_empty() {
            return Err(invalid("trainerImage", "must name an image"));
        }
        if config.inference_server_image.trim().is_empty() {
            return Err(invalid("inferenceServerImage", "must name an image"));
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_gives_the_defaults() {
        assert_eq!(
            OperatorConfig::parse("", "x").ok(),
            Some(OperatorConfig::default())
        );
    }

    #[test]
    fn unknown_field_is_rejected_with_its_name() {
        let err = OperatorConfig::parse("artifactStor: file:///x\n", "cfg.yaml")
            .err()
            .map(|e| {
                format!(
                    "{e}: {:?}",
                    std::error::Error::source(&e).map(|s| s.to_string())
                )
            });
        let err = err.unwrap_or_default();
        assert!(err.contains("artifactStor"), "{err}");
        assert!(err.contains("cfg.yaml"), "{err}");
    }

    #[test]
    fn artifact_store_without_scheme_is_rejected_naming_the_field() {
        let err = OperatorConfig::parse("artifactStore: /var/lib/x\n", "cfg.yaml")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.contains("artifactStore") && err.contains("file://"),
            "{err}"
        );
    }
}
