#!/usr/bin/env python3
"""The API server's CPU per write, by kind of write: server-side apply against a JSON merge
patch of the same Model status, beside creates and a ConfigMap patch for scale.

Starts its own control plane (etcd and kube-apiserver, `tests/cluster/up.sh --minimal`),
applies Leitwerk's CRDs, creates N Models and then writes each one's status in rounds,
alternating the patch type; every round changes every status (a new message), as the
operator's writes do. Four client threads keep the API server busy. The figure is the API
server's CPU time (user + system, from /proc) over the round, divided by the writes.

Usage: python3 benches/control-plane/status_writes.py [N] [--crd shipped|no-cel|open]
  N      Models (default 1000)
  --crd  the Model CRD as shipped (default); without its CEL rules (x-kubernetes-validations
         removed, the OpenAPI schema kept); or open (spec and status kept whole, no schema)
It needs the cached Kubernetes binaries (`tests/cluster/build.sh`) and, for the variants,
PyYAML.
"""

import http.client
import json
import os
import ssl
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
THREADS = 4
ROUNDS = 3
BASE = "/apis/leitwerk.dev/v1alpha1/namespaces/default/models"
CONFIGMAPS = "/api/v1/namespaces/default/configmaps"


class Cluster:
    def __init__(self, directory):
        self.dir = directory
        subprocess.run(
            ["bash", f"{ROOT}/tests/cluster/up.sh", "--dir", directory, "--minimal"],
            check=True, capture_output=True, text=True,
        )
        env = dict(line.split("=", 1) for line in open(f"{directory}/env").read().split())
        self.env = {**os.environ, **env}
        kubeconfig = open(env["KUBECONFIG"]).read()
        self.port = int(kubeconfig.split("https://127.0.0.1:")[1].split()[0])
        self.pid = next(int(line.split()[1]) for line in open(f"{directory}/pids") if line.startswith("kube-apiserver "))
        self.ssl = ssl.create_default_context(cafile=f"{directory}/pki/ca.crt")
        self.ssl.load_cert_chain(f"{directory}/pki/admin.crt", f"{directory}/pki/admin.key")
        self.ssl.check_hostname = False

    def kubectl(self, *args):
        subprocess.run([f"{self.env['LEITWERK_K8S_BIN']}/kubectl", *args], check=True, env=self.env, capture_output=True)

    def cpu_seconds(self):
        fields = open(f"/proc/{self.pid}/stat").read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def connection(self):
        return http.client.HTTPSConnection("127.0.0.1", self.port, context=self.ssl)

    def down(self):
        subprocess.run(["bash", f"{ROOT}/tests/cluster/down.sh", self.dir], check=False)


def send(conn, method, path, body, content_type):
    conn.request(method, path, body=json.dumps(body), headers={"Content-Type": content_type, "Accept": "application/json"})
    response = conn.getresponse()
    data = response.read()
    if response.status >= 300:
        raise RuntimeError(f"{method} {path}: {response.status} {data[:300]!r}")


def status(i, round_):
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    conditions = [
        {"type": t, "status": s, "reason": f"Round{round_}", "message": f"round {round_} of m-{i:05}",
         "lastTransitionTime": now, "observedGeneration": 1}
        for t, s in [("Ready", "True"), ("Serving", "True"), ("Reconciling", "False"), ("Stalled", "False")]
    ]
    return {"phase": "Serving", "observedGeneration": 1, "conditions": conditions}


def requests_for(kind, i, round_):
    name = f"m-{i:05}"
    if kind == "create Model":
        return "POST", BASE, "application/json", {
            "apiVersion": "leitwerk.dev/v1alpha1", "kind": "Model", "metadata": {"name": name},
            "spec": {"task": "BinaryClassification", "onnx": {"url": f"file:///models/{name}.onnx"}, "serving": {"replicas": 1}},
        }
    if kind == "status, server-side apply":
        return "PATCH", f"{BASE}/{name}/status?fieldManager=leitwerk-operator&force=true", "application/apply-patch+yaml", {
            "apiVersion": "leitwerk.dev/v1alpha1", "kind": "Model", "metadata": {"name": name}, "status": status(i, round_),
        }
    if kind == "status, merge patch":
        return "PATCH", f"{BASE}/{name}/status?fieldManager=leitwerk-operator", "application/merge-patch+json", {"status": status(i, round_)}
    if kind == "create ConfigMap":
        return "POST", CONFIGMAPS, "application/json", {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"round": "0"}}
    if kind == "ConfigMap, merge patch":
        return "PATCH", f"{CONFIGMAPS}/{name}?fieldManager=leitwerk-operator", "application/merge-patch+json", {"data": {"round": str(round_), "message": f"round {round_} of {name}"}}
    raise ValueError(kind)


def measure(cluster, n, kind, round_):
    errors = []

    def worker(first):
        conn = cluster.connection()
        try:
            for i in range(first, n, THREADS):
                method, path, content_type, body = requests_for(kind, i, round_)
                send(conn, method, path, body, content_type)
        except Exception as e:  # noqa: BLE001 - reported below, the figure is void
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(j,)) for j in range(THREADS)]
    start, cpu = time.time(), cluster.cpu_seconds()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall, used = time.time() - start, cluster.cpu_seconds() - cpu
    if errors:
        raise SystemExit(f"{kind}: {errors[0]}")
    print(f"| {kind} | {round_} | {n} | {wall:.1f} s | {used:.1f} s | {1000 * used / n:.2f} ms |", flush=True)


def without_cel(node):
    if isinstance(node, dict):
        return {k: without_cel(v) for k, v in node.items() if k != "x-kubernetes-validations"}
    if isinstance(node, list):
        return [without_cel(v) for v in node]
    return node


def crds(variant):
    """The CRD file to apply: as shipped, or with the Model CRD changed as `variant` says."""
    path = f"{ROOT}/charts/leitwerk/crds/leitwerk.dev_crds.yaml"
    if variant == "shipped":
        return path
    import yaml  # only the variants need it

    documents = list(yaml.safe_load_all(open(path)))
    for doc in documents:
        if doc and doc["metadata"]["name"] == "models.leitwerk.dev":
            for version in doc["spec"]["versions"]:
                schema = version["schema"]["openAPIV3Schema"]
                if variant == "no-cel":
                    version["schema"]["openAPIV3Schema"] = without_cel(schema)
                elif variant == "open":
                    open_object = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
                    schema["properties"]["spec"] = dict(open_object)
                    schema["properties"]["status"] = dict(open_object)
                else:
                    raise SystemExit(f"--crd {variant}: expected shipped, no-cel or open")
    out = tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False)
    yaml.safe_dump_all(documents, out)
    out.close()
    return out.name


def main():
    args = sys.argv[1:]
    variant = "shipped"
    if "--crd" in args:
        at = args.index("--crd")
        variant = args[at + 1]
        del args[at : at + 2]
    n = int(args[0]) if args else 1000
    crd_file = crds(variant)
    cluster = Cluster(tempfile.mkdtemp(prefix="leitwerk-status-writes-"))
    try:
        cluster.kubectl("apply", "--server-side", "-f", crd_file)
        cluster.kubectl("wait", "--for=condition=Established", "crd/models.leitwerk.dev", "--timeout=60s")
        time.sleep(2)
        print(f"Model CRD: {variant}")
        print("| write | round | writes | wall | API server CPU | per write |\n|---|---|---|---|---|---|")
        measure(cluster, n, "create Model", 0)
        measure(cluster, n, "create ConfigMap", 0)
        for round_ in range(1, ROUNDS + 1):
            for kind in ("status, server-side apply", "status, merge patch", "ConfigMap, merge patch"):
                measure(cluster, n, kind, 2 * round_ - (kind == "status, server-side apply"))
    finally:
        cluster.down()


if __name__ == "__main__":
    main()
