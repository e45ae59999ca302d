//! Types shared by several resources: references, resources, durations and status plumbing.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Toleration;
pub use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::KubeSchema;
use serde::{Deserialize, Serialize};

/// Pattern for durations such as `30s`, `5m`, `12h` or `7d`.
pub const DURATION_PATTERN: &str = r"^[0-9]{1,6}(s|m|h|d)$";

/// A reference to another Leitwerk object in the same namespace.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct LocalObjectReference {
    /// Name of the referenced object, in the same namespace as this one.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// A reference to one key of a Secret in the same namespace.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyReference {
    /// Name of the Secret, in the same namespace as this object.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Key inside the Secret.
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

/// A reference to a Secret whose keys are all used (for example object-store credentials:
/// `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SecretReference {
    /// Name of the Secret, in the same namespace as this object.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// File formats that Leitwerk reads tables from.
#[derive(
    schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq,
)]
pub enum TableFormat {
    /// Comma-separated values with a header row.
    #[default]
    Csv,
    /// Apache Parquet.
    Parquet,
}

/// GPUs for a workload.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct GpuResources {
    /// Number of GPUs (requested and limited).
    #[schemars(range(min = 1, max = 16))]
    pub count: i32,
    /// Extended resource name that the cluster's device plugin advertises.
    #[serde(default = "default_gpu_resource")]
    #[schemars(length(min = 3, max = 253))]
    #[x_kube(validation = Rule::new("self.contains('/')").message("gpu.resourceName must be an extended resource name such as nvidia.com/gpu"))]
    pub resource_name: String,
}

fn default_gpu_resource() -> String {
    "nvidia.com/gpu".to_string()
}

/// Compute resources of a workload (a Job or a Deployment).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadResources {
    /// CPU request and limit as a Kubernetes quantity, e.g. `500m` or `2`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32), regex(pattern = r"^[0-9]+(\.[0-9]+)?m?$"))]
    pub cpu: Option<String>,
    /// Memory request and limit as a Kubernetes quantity, e.g. `512Mi` or `4Gi`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(max = 32),
        regex(pattern = r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|k|M|G|T)?$")
    )]
    pub memory: Option<String>,
    /// GPUs. Leave out for CPU-only workloads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu: Option<GpuResources>,
}

/// Where and how a workload is scheduled.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Scheduling {
    /// Node labels the pods must match, e.g. `{"nvidia.com/gpu.product": "A100"}`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 16, "additionalProperties" = {"type": "string", "maxLength": 63}))]
    pub node_selector: BTreeMap<String, String>,
    /// Tolerations for tainted (for example GPU) nodes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub tolerations: Vec<Toleration>,
    /// Service account the pods run as; the operator's default when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub service_account_name: Option<String>,
}

/// Declares a closed set of names serialised as strings (a phase, a version state, a
/// decision): the enum with its schema (the CRD lists every value), `as_str`, `Display`,
/// `FromStr` and `ALL`. A value is named after its variant unless `= "name"` follows it. Put
/// `#[derive(Default)]` and `#[default]` on the invocation when the set has a default.
macro_rules! named_enum {
    (@name $variant:ident) => { stringify!($variant) };
    (@name $variant:ident $name:literal) => { $name };
    ($(#[$meta:meta])* pub enum $name:ident {
        $($(#[$vmeta:meta])* $variant:ident $(= $text:literal)?,)+
    }) => {
        $(#[$meta])*
        #[derive(
            schemars::JsonSchema,
            serde::Serialize,
            serde::Deserialize,
            Clone,
            Copy,
            Debug,
            PartialEq,
            Eq,
            Hash,
        )]
        pub enum $name {
            $($(#[$vmeta])* $(#[serde(rename = $text)])? $variant,)+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            /// The name as it appears in status, Events and metrics.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $crate::common::named_enum!(@name $variant $($text)?),)+
                }
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl ::std::str::FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                $name::ALL.iter().copied().find(|v| v.as_str() == s).ok_or_else(|| {
                    let all: Vec<&str> = $name::ALL.iter().map(|v| v.as_str()).collect();
                    format!("{s:?} is not one of {}", all.join(", "))
                })
            }
        }
    };
}
pub(crate) use named_enum;

/// The phase of one kind: the short word of `kubectl get`, from a closed set that the CRD
/// schema lists. Every kind can wait for a reference and refuse an invalid spec.
pub trait Phase:
    Copy + std::fmt::Debug + PartialEq + Eq + Serialize + Send + Sync + 'static
{
    /// Waiting for something it references.
    const PENDING: Self;
    /// The spec cannot be acted on; waits for a change.
    const INVALID: Self;
    /// The name as it appears in status.
    fn name(self) -> &'static str;
}

/// Implements [`Phase`] for a [`named_enum!`] with `Pending` and `Invalid` values.
macro_rules! impl_phase {
    ($t:ty) => {
        impl $crate::common::Phase for $t {
            const PENDING: Self = <$t>::Pending;
            const INVALID: Self = <$t>::Invalid;
            fn name(self) -> &'static str {
                self.as_str()
            }
        }
    };
}
pub(crate) use impl_phase;

/// Accessors that every Leitwerk status offers, so the operator handles conditions once.
pub trait ResourceStatus: Default + Clone + PartialEq {
    /// The kind's phases.
    type Phase: Phase;
    /// The generation this status describes.
    fn observed_generation(&self) -> Option<i64>;
    /// Sets the generation this status describes.
    fn set_observed_generation(&mut self, generation: Option<i64>);
    /// The short phase shown in printer columns.
    fn phase(&self) -> Option<Self::Phase>;
    /// Sets the phase.
    fn set_phase(&mut self, phase: Option<Self::Phase>);
    /// The standard conditions.
    fn conditions(&self) -> &[Condition];
    /// The standard conditions, mutable.
    fn conditions_mut(&mut self) -> &mut Vec<Condition>;
}

/// Implements [`ResourceStatus`] for a status struct with the three standard fields, the
/// phase typed as `$phase`.
macro_rules! impl_resource_status {
    ($t:ty, $phase:ty) => {
        $crate::common::impl_phase!($phase);
        impl $crate::common::ResourceStatus for $t {
            type Phase = $phase;
            fn observed_generation(&self) -> Option<i64> {
                self.observed_generation
            }
            fn set_observed_generation(&mut self, generation: Option<i64>) {
                self.observed_generation = generation;
            }
            fn phase(&self) -> Option<$phase> {
                self.phase
            }
            fn set_phase(&mut self, phase: Option<$phase>) {
                self.phase = phase;
            }
            fn conditions(&self) -> &[$crate::common::Condition] {
                &self.conditions
            }
            fn conditions_mut(&mut self) -> &mut Vec<$crate::common::Condition> {
                &mut self.conditions
            }
        }
    };
}
pub(crate) use impl_resource_status;

/// Parses durations such as `30s`, `5m`, `12h`, `7d`.
pub fn parse_duration(text: &str) -> Option<std::time::Duration> {
    let unit = text.chars().last()?;
    let number: u64 = text.get(..text.len() - unit.len_utf8())?.parse().ok()?;
    let secs = match unit {
        's' => number,
        'm' => number.checked_mul(60)?,
        'h' => number.checked_mul(3600)?,
        'd' => number.checked_mul(86_400)?,
        _ => return None,
    };
    Some(std::time::Duration::from_secs(secs))
}
