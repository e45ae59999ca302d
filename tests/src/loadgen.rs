//! A load generator that stands in for the marketing site and its users: it sends scoring
//! requests the way a Gateway would route them (by the weights of the Experiment's HTTPRoute,
//! or across the ready pods of the Experiment's Service without one), and reports whether each
//! scored lead converted, drawn from a true conversion rate per variant. Where the route's
//! rule has a `RequestMirror` filter it also sends a copy of each request to the mirror's
//! Service, as a Gateway does, and drops the answer: callers (and their conversions) only ever
//! see the routed variant's. The inference servers
//! it talks to are the real binaries, run by the node stand-in (reached on loopback ports) or
//! by a real kubelet (reached at their pod addresses).
//!
//! Every loop is bounded: it stops at `max_requests` or when stopped.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, Secret, Service};
use kube::api::{DynamicObject, GroupVersionKind, ListParams};
use kube::{Api, Client, ResourceExt};
use rand::{RngExt, SeedableRng, rngs::StdRng};

use crate::node::NodeStandIn;

/// Where a serving pod answers REST requests from this machine, given the pod.
pub type Ports = Arc<dyn Fn(&Pod) -> Option<SocketAddr> + Send + Sync>;

/// The loopback ports of the pods a node stand-in in this process runs.
pub fn ports_of(node: Arc<NodeStandIn>) -> Ports {
    Arc::new(move |pod: &Pod| {
        let (http, _) = node.ports(&pod.namespace()?, &pod.name_any())?;
        Some(SocketAddr::from(([127, 0, 0, 1], http)))
    })
}

/// The loopback ports in a file a node stand-in in another process keeps up to date
/// (`leitwerk-dev --ports-file`: `{"namespace/pod": [rest, grpc]}`), read on each lookup.
pub fn ports_in_file(path: std::path::PathBuf) -> Ports {
    Arc::new(move |pod: &Pod| {
        let text = std::fs::read_to_string(&path).ok()?;
        let ports: HashMap<String, (u16, u16)> = serde_json::from_str(&text).ok()?;
        let key = format!("{}/{}", pod.namespace()?, pod.name_any());
        let (http, _) = ports.get(&key).copied()?;
        Some(SocketAddr::from(([127, 0, 0, 1], http)))
    })
}

/// A pod network, as a real node gives: the pod's own address and its container port named
/// `http`.
pub fn pod_network() -> Ports {
    Arc::new(|pod: &Pod| {
        let ip: std::net::IpAddr = pod.status.as_ref()?.pod_ip.as_ref()?.parse().ok()?;
        let port = pod
            .spec
            .as_ref()?
            .containers
            .iter()
            .flat_map(|c| c.ports.iter().flatten())
            .find(|p| p.name.as_deref() == Some("http"))?
            .container_port;
        Some(SocketAddr::new(ip, u16::try_from(port).ok()?))
    })
}

/// What the generator sends and simulates.
#[derive(Debug, Clone)]
pub struct Load {
    /// Namespace of the Experiment.
    pub namespace: String,
    /// The Experiment (its HTTPRoute and Service carry its name), or any Service to send to.
    pub experiment: String,
    /// Model name in the inference request path.
    pub model: String,
    /// Request bodies (OIP v2 infer requests), sent in turn.
    pub requests: Vec<serde_json::Value>,
    /// Requests sent to variants listed in `drifted` instead.
    pub drifted_requests: Vec<serde_json::Value>,
    /// Variants whose callers send `drifted_requests`.
    pub drifted: Vec<String>,
    /// True conversion rate per variant.
    pub truth: BTreeMap<String, f64>,
    /// Requests per second.
    pub rate: u32,
    /// Hard bound on requests.
    pub max_requests: u64,
    /// Seed of the routing and conversion draws.
    pub seed: u64,
}

/// Per variant: requests scored, conversions reported.
pub type Tally = BTreeMap<String, (u64, u64)>;

/// Per variant: when its first request was scored.
pub type FirstServed = BTreeMap<String, std::time::SystemTime>;

/// A running generator.
#[derive(Debug)]
pub struct LoadGenerator {
    stop: Arc<AtomicBool>,
    tally: Arc<Mutex<Tally>>,
    first: Arc<Mutex<FirstServed>>,
    errors: Arc<Mutex<Vec<String>>>,
    mirrored: Arc<std::sync::atomic::AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for LoadGenerator {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.task.abort();
    }
}

impl LoadGenerator {
    /// Starts sending on the current runtime.
    pub fn start(client: Client, node: Ports, load: Load) -> LoadGenerator {
        let stop = Arc::new(AtomicBool::new(false));
        let tally = Arc::new(Mutex::new(Tally::new()));
        let first = Arc::new(Mutex::new(FirstServed::new()));
        let errors = Arc::new(Mutex::new(Vec::new()));
        let mirrored = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let task = tokio::spawn(run(
            client,
            node,
            load,
            stop.clone(),
            (tally.clone(), first.clone(), mirrored.clone()),
            errors.clone(),
        ));
        LoadGenerator {
            stop,
            tally,
            first,
            errors,
            mirrored,
            task,
        }
    }

    /// Requests and conversions so far, per variant.
    pub fn tally(&self) -> Tally {
        self.tally.lock().map(|t| t.clone()).unwrap_or_default()
    }

    /// When `variant` first had a request scored.
    pub fn first_served(&self, variant: &str) -> Option<std::time::SystemTime> {
        self.first.lock().ok()?.get(variant).copied()
    }

    /// Copies of requests a `RequestMirror` filter's Service answered.
    pub fn mirrored(&self) -> u64 {
        self.mirrored.load(Ordering::Relaxed)
    }

    /// The last errors (bounded).
    pub fn errors(&self) -> Vec<String> {
        self.errors.lock().map(|e| e.clone()).unwrap_or_default()
    }

    /// Changes nothing but stops sending.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Where traffic goes now: (variant, weight, REST addresses of its ready pods with the
/// feedback token each one takes).
type Routes = Vec<(String, u32, Vec<Backend>)>;

/// Where a `RequestMirror` filter sends copies: the REST addresses of its Service's ready pods.
type Mirrors = Vec<SocketAddr>;

/// A serving pod's REST address and the feedback token it takes.
type Backend = (SocketAddr, Option<String>);

/// The feedback token a serving pod takes: the value of the Secret key its
/// `LEITWERK_FEEDBACK_TOKEN` comes from, as a caller given that Secret would send it.
async fn feedback_token(
    client: &Client,
    pod: &Pod,
    known: &mut HashMap<String, String>,
) -> Option<String> {
    let from = pod
        .spec
        .as_ref()?
        .containers
        .iter()
        .flat_map(|c| c.env.iter().flatten())
        .find(|e| e.name == "LEITWERK_FEEDBACK_TOKEN")?
        .value_from
        .as_ref()?
        .secret_key_ref
        .clone()?;
    if let Some(token) = known.get(&from.name) {
        return Some(token.clone());
    }
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &pod.namespace()?);
    let secret = secrets.get_opt(&from.name).await.ok().flatten()?;
    let token = String::from_utf8(secret.data?.get(&from.key)?.0.clone()).ok()?;
    known.insert(from.name, token.clone());
    Some(token)
}

async fn routes(
    client: &Client,
    node: &Ports,
    load: &Load,
    tokens: &mut HashMap<String, String>,
) -> (Routes, Mirrors) {
    let ns = &load.namespace;
    let gvk = GroupVersionKind::gvk("gateway.networking.k8s.io", "v1", "HTTPRoute");
    let route = match kube::discovery::pinned_kind(client, &gvk).await {
        Ok((ar, _)) => {
            let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &ar);
            api.get_opt(&load.experiment).await.ok().flatten()
        }
        Err(_) => None,
    };
    let services: Api<Service> = Api::namespaced(client.clone(), ns);
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    // (service, weight); without an HTTPRoute the Experiment's one Service takes everything.
    let backends: Vec<(String, u32)> = match &route {
        Some(r) => r.data["spec"]["rules"][0]["backendRefs"]
            .as_array()
            .map(|b| {
                b.iter()
                    .map(|x| {
                        (
                            x["name"].as_str().unwrap_or_default().to_string(),
                            x["weight"].as_u64().unwrap_or(1) as u32,
                        )
                    })
                    .collect()
            })
            .unwrap_or_default(),
        None => vec![(load.experiment.clone(), 1)],
    };
    // The Services a RequestMirror filter of the rule copies every request to.
    let mirror_services: Vec<String> = route
        .as_ref()
        .and_then(|r| r.data["spec"]["rules"][0]["filters"].as_array().cloned())
        .unwrap_or_default()
        .iter()
        .filter(|f| f["type"] == "RequestMirror")
        .filter_map(|f| {
            f["requestMirror"]["backendRef"]["name"]
                .as_str()
                .map(String::from)
        })
        .collect();
    let mut mirrors = Mirrors::new();
    for service in mirror_services {
        for p in ready_pods(&services, &pods, &service).await {
            mirrors.extend(node(&p));
        }
    }
    let mut out: HashMap<String, (u32, Vec<Backend>)> = HashMap::new();
    for (service, weight) in backends {
        let mut ready: Vec<(String, Backend)> = Vec::new();
        for p in ready_pods(&services, &pods, &service).await.iter() {
            // A Model's own serving pods carry no variant: they count as "model".
            let variant = p
                .labels()
                .get(leitwerk_crds::labels::VARIANT)
                .cloned()
                .unwrap_or_else(|| "model".into());
            let Some(address) = node(p) else {
                continue;
            };
            ready.push((variant, (address, feedback_token(client, p, tokens).await)));
        }
        // With one Service over every variant, each pod is one share of the traffic.
        let per_pod = route.is_none();
        for (variant, address) in ready {
            let entry = out.entry(variant).or_insert((0, Vec::new()));
            entry.0 = if per_pod { entry.0 + 1 } else { weight };
            entry.1.push(address);
        }
    }
    let mut routes: Routes = out.into_iter().map(|(v, (w, p))| (v, w, p)).collect();
    routes.sort();
    (routes, mirrors)
}

/// The ready pods behind a Service (none when it is missing).
async fn ready_pods(services: &Api<Service>, pods: &Api<Pod>, service: &str) -> Vec<Pod> {
    let Ok(Some(svc)) = services.get_opt(service).await else {
        return Vec::new();
    };
    let selector = svc
        .spec
        .and_then(|s| s.selector)
        .unwrap_or_default()
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",");
    let Ok(list) = pods.list(&ListParams::default().labels(&selector)).await else {
        return Vec::new();
    };
    list.items
        .into_iter()
        .filter(|p| {
            p.metadata.deletion_timestamp.is_none()
                && p.status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        })
        .collect()
}

/// The load loop: send, read the variant that answered, report the outcome. Bounded by the
/// caller's stop signal and request budget.
async fn run(
    client: Client,
    node: Ports,
    load: Load,
    stop: Arc<AtomicBool>,
    (tally, first, mirrored): (
        Arc<Mutex<Tally>>,
        Arc<Mutex<FirstServed>>,
        Arc<std::sync::atomic::AtomicU64>,
    ),
    errors: Arc<Mutex<Vec<String>>>,
) {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap_or_default();
    let mut rng = StdRng::seed_from_u64(load.seed);
    let mut outcome_rngs: BTreeMap<String, StdRng> = BTreeMap::new();
    let pause = Duration::from_secs_f64(1.0 / f64::from(load.rate.max(1)));
    let mut table: Routes = Vec::new();
    let mut mirrors: Mirrors = Vec::new();
    // Copies in flight at once, as a Gateway bounds its mirror connections.
    let copies = Arc::new(tokio::sync::Semaphore::new(32));
    let mut refreshed = tokio::time::Instant::now() - Duration::from_secs(10);
    let mut tokens: HashMap<String, String> = HashMap::new();
    let note = |e: String| {
        if let Ok(mut list) = errors.lock() {
            list.push(e);
            let excess = list.len().saturating_sub(20);
            list.drain(..excess);
        }
    };
    for n in 0..load.max_requests {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        tokio::time::sleep(pause).await;
        if refreshed.elapsed() > Duration::from_millis(500) {
            (table, mirrors) = routes(&client, &node, &load, &mut tokens).await;
            refreshed = tokio::time::Instant::now();
        }
        let total: u32 = table.iter().map(|(_, w, _)| *w).sum();
        if total == 0 {
            continue;
        }
        let mut pick = rng.random_range(0..total);
        let Some((variant, _, addresses)) = table.iter().find(|(_, w, _)| {
            if pick < *w {
                true
            } else {
                pick -= *w;
                false
            }
        }) else {
            continue;
        };
        if addresses.is_empty() {
            continue;
        }
        let (address, token) = addresses[(n as usize) % addresses.len()].clone();
        let pool = if load.drifted.contains(variant) && !load.drifted_requests.is_empty() {
            &load.drifted_requests
        } else {
            &load.requests
        };
        let body = &pool[(n as usize) % pool.len()];
        if !mirrors.is_empty()
            && let Ok(slot) = copies.clone().try_acquire_owned()
        {
            let copy = http
                .post(format!(
                    "http://{}/v2/models/{}/infer",
                    mirrors[(n as usize) % mirrors.len()],
                    load.model
                ))
                .json(body);
            let mirrored = mirrored.clone();
            tokio::spawn(async move {
                let _slot = slot;
                if copy.send().await.is_ok_and(|r| r.status().is_success()) {
                    mirrored.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        let response = http
            .post(format!("http://{address}/v2/models/{}/infer", load.model))
            .json(body)
            .send()
            .await;
        let ids: Vec<String> = match response {
            Ok(r) if r.status().is_success() => r
                .json::<serde_json::Value>()
                .await
                .ok()
                .and_then(|v| {
                    v["parameters"]["prediction_ids"].as_array().map(|a| {
                        a.iter()
                            .filter_map(|x| x.as_str().map(String::from))
                            .collect()
                    })
                })
                .unwrap_or_default(),
            Ok(r) => {
                note(format!("{variant}: infer answered {}", r.status()));
                continue;
            }
            Err(e) => {
                note(format!("{variant}: infer failed: {e}"));
                continue;
            }
        };
        if let Ok(mut f) = first.lock() {
            f.entry(variant.clone())
                .or_insert_with(std::time::SystemTime::now);
        }
        let truth = load.truth.get(variant).copied().unwrap_or(0.0);
        let draws = outcome_rngs
            .entry(variant.clone())
            .or_insert_with(|| StdRng::seed_from_u64(load.seed ^ hash(variant)));
        for id in ids {
            let converted = draws.random_bool(truth.clamp(0.0, 1.0));
            let mut request = http
                .post(format!("http://{address}/v2/feedback"))
                .json(&serde_json::json!({"prediction_id": id, "converted": converted}));
            if let Some(token) = &token {
                request = request.bearer_auth(token);
            }
            match request.send().await {
                Ok(r) if r.status().is_success() => {}
                Ok(r) => {
                    note(format!("{variant}: feedback answered {}", r.status()));
                    continue;
                }
                Err(e) => {
                    note(format!("{variant}: feedback failed: {e}"));
                    continue;
                }
            }
            if let Ok(mut t) = tally.lock() {
                let e = t.entry(variant.clone()).or_default();
                e.0 += 1;
                e.1 += u64::from(converted);
            }
        }
    }
}

fn hash(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}
