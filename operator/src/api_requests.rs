//! Every request the operator sends to the API server, counted by verb and resource
//! (`leitwerk_api_requests_total`): what a reconcile costs the API server, and the proof that a
//! settled operator sends nothing but its lease renewals.

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family},
};

/// Labels of the API request counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ApiRequestLabels {
    /// Kubernetes verb: `get`, `list`, `watch`, `create`, `update`, `patch`, `delete`,
    /// `deletecollection`.
    pub verb: String,
    /// Resource, with its subresource (`models/status`); `discovery` for the API's own paths.
    pub resource: String,
}

/// The verb and resource of a request, as the API server's audit log would name them.
pub fn classify(method: &::http::Method, uri: &::http::Uri) -> ApiRequestLabels {
    let segments: Vec<&str> = uri.path().split('/').filter(|s| !s.is_empty()).collect();
    let rest = match segments.first() {
        Some(&"api") => segments.get(2..),
        Some(&"apis") => segments.get(3..),
        _ => None,
    }
    .unwrap_or_default();
    let (resource, name, sub) = match rest {
        ["namespaces", _, resource, tail @ ..] => (*resource, tail.first(), tail.get(1)),
        [resource, tail @ ..] => (*resource, tail.first(), tail.get(1)),
        [] => ("discovery", None, None),
    };
    let watch = uri
        .query()
        .unwrap_or_default()
        .split('&')
        .any(|kv| kv == "watch=true" || kv == "watch=1");
    let verb = match *method {
        ::http::Method::GET if watch => "watch",
        ::http::Method::GET if name.is_some() => "get",
        ::http::Method::GET => "list",
        ::http::Method::POST => "create",
        ::http::Method::PUT => "update",
        ::http::Method::PATCH => "patch",
        ::http::Method::DELETE if name.is_some() => "delete",
        ::http::Method::DELETE => "deletecollection",
        _ => "other",
    };
    ApiRequestLabels {
        verb: verb.to_string(),
        resource: match sub {
            Some(sub) => format!("{resource}/{sub}"),
            None => resource.to_string(),
        },
    }
}

/// A client for `config` that counts each request it sends in `counter`.
pub fn counting_client(
    config: kube::Config,
    counter: Family<ApiRequestLabels, Counter>,
) -> kube::Result<kube::Client> {
    let layer =
        tower::util::MapRequestLayer::new(move |request: ::http::Request<kube::client::Body>| {
            counter
                .get_or_create(&classify(request.method(), request.uri()))
                .inc();
            request
        });
    Ok(kube::client::ClientBuilder::try_from(config)?
        .with_layer(&layer)
        .build())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(method: ::http::Method, uri: &str) -> (String, String) {
        let uri: ::http::Uri = uri.parse().unwrap_or_default();
        let l = classify(&method, &uri);
        (l.verb, l.resource)
    }

    fn pair(verb: &str, resource: &str) -> (String, String) {
        (verb.to_string(), resource.to_string())
    }

    #[test]
    fn requests_are_named_as_the_audit_log_names_them() {
        use ::http::Method;
        let cases = [
            (
                Method::GET,
                "/apis/leitwerk.dev/v1alpha1/namespaces/a/models?&watch=true&resourceVersion=5",
                pair("watch", "models"),
            ),
            (
                Method::GET,
                "/apis/leitwerk.dev/v1alpha1/namespaces/a/models?limit=500",
                pair("list", "models"),
            ),
            (
                Method::GET,
                "/apis/leitwerk.dev/v1alpha1/models",
                pair("list", "models"),
            ),
            (
                Method::GET,
                "/api/v1/namespaces/a/secrets/token",
                pair("get", "secrets"),
            ),
            (
                Method::PATCH,
                "/apis/leitwerk.dev/v1alpha1/namespaces/a/models/m/status?fieldManager=x",
                pair("patch", "models/status"),
            ),
            (
                Method::POST,
                "/apis/apps/v1/namespaces/a/deployments",
                pair("create", "deployments"),
            ),
            (
                Method::PUT,
                "/apis/coordination.k8s.io/v1/namespaces/a/leases/l",
                pair("update", "leases"),
            ),
            (
                Method::DELETE,
                "/apis/batch/v1/namespaces/a/jobs/j",
                pair("delete", "jobs"),
            ),
            (
                Method::DELETE,
                "/apis/batch/v1/namespaces/a/jobs",
                pair("deletecollection", "jobs"),
            ),
            (
                Method::GET,
                "/api/v1/namespaces/a",
                pair("get", "namespaces"),
            ),
            (Method::GET, "/apis/apps/v1", pair("list", "discovery")),
            (Method::GET, "/version", pair("list", "discovery")),
        ];
        for (method, uri, want) in cases {
            assert_eq!(of(method, uri), want, "{uri}");
        }
    }
}
