"""Serving against the peers, on one machine, with one external load generator.

The same 10-feature scikit-learn logistic regression is served by:
- leitwerk-inference-server (its ONNX export by skl2onnx, ten [N, 1] inputs),
- KServe's Python ModelServer (PyPI kserve 0.21, a custom model running onnxruntime on the
  same ONNX file), and
- MLServer (PyPI mlserver 1.7.1 with mlserver-sklearn, the joblib model, predict_proba).

Each server is pinned to CPU 1 and the load generator to CPU 0: wrk (Debian) over REST and
ghz over gRPC (OIP v2 infer, `inference.GRPCInferenceService/ModelInfer`), single-row
requests, 1 and 16 connections, 10 s each after a 2 s warm-up. Every server's score of the
test row is checked over both protocols before it is measured.

Two floors are measured the same way, to show what any request costs on this machine with
these clients: Leitwerk's own health check (REST `GET /v2/health/ready`, gRPC `ServerLive`),
which runs no model, and nginx returning a fixed answer to the same POST (REST; when nginx is
installed).

Beside throughput and latency, each leg reports the server's CPU time per request (user and
system time of its processes over the measured 10 s, divided by the requests): the server's
own cost, which the client and the loopback do not blur.

Prints a Markdown table and writes results.json and serving_peers.png into the output
directory.

Usage (benches/serving_peers.sh sets it all up):
  python serving_peers.py --out DIR --leitwerk PATH --onnxruntime LIB \
      --mlserver-venv DIR --ghz PATH
"""

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROTO = os.path.join(ROOT, "inference-server", "proto", "inference.proto")

FEATURES = 10
DURATION = 10
WARM_UP = 2
CONNECTIONS = [1, 16]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def build_models(out):
    from sklearn.datasets import make_classification
    from sklearn.linear_model import LogisticRegression
    import joblib
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType

    x, y = make_classification(n_samples=5000, n_features=FEATURES, random_state=7)
    model = LogisticRegression(max_iter=500).fit(x, y)
    joblib.dump(model, os.path.join(out, "model.joblib"))
    # One matrix input for KServe's onnxruntime model ...
    matrix = convert_sklearn(
        model,
        initial_types=[("input", FloatTensorType([None, FEATURES]))],
        options={id(model): {"zipmap": False}},
    )
    with open(os.path.join(out, "matrix.onnx"), "wb") as f:
        f.write(matrix.SerializeToString())
    # ... and the same graph behind one [N, 1] input per feature for Leitwerk's server: a
    # Concat of the columns feeds the original input.
    import onnx
    from onnx import TensorProto, helper

    columns = onnx.load_from_string(matrix.SerializeToString())
    graph = columns.graph
    del graph.input[:]
    graph.input.extend(
        helper.make_tensor_value_info(f"f{i}", TensorProto.FLOAT, [None, 1])
        for i in range(FEATURES)
    )
    graph.node.insert(
        0, helper.make_node("Concat", [f"f{i}" for i in range(FEATURES)], ["input"], axis=1)
    )
    onnx.checker.check_model(columns)
    with open(os.path.join(out, "columns.onnx"), "wb") as f:
        f.write(columns.SerializeToString())
    row = [round(float(v), 4) for v in x[0]]
    return row, float(model.predict_proba(x[:1])[0, 1])


KSERVE_MODEL = '''
import sys
import numpy as np
import onnxruntime as ort
import kserve
from kserve import InferOutput, InferResponse


class LR(kserve.Model):
    def __init__(self, name, path):
        super().__init__(name)
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        self.session = ort.InferenceSession(path, options)
        self.ready = True

    async def predict(self, payload, headers=None, response_headers=None):
        x = payload.inputs[0].as_numpy().astype(np.float32)
        probabilities = self.session.run(["probabilities"], {"input": x})[0]
        out = InferOutput(name="probabilities", shape=list(probabilities.shape), datatype="FP32")
        out.set_data_from_numpy(probabilities)
        return InferResponse(
            model_name=self.name, infer_outputs=[out], response_id=payload.id or "0"
        )


if __name__ == "__main__":
    http, grpc, path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    kserve.ModelServer(http_port=http, grpc_port=grpc, workers=1).start([LR("lr", path)])
'''


def wait_ready(url, process, name, timeout=90):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return
        except Exception:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"{name} not ready at {url}")


def check(url, body, name):
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=5) as r:
        answer = json.load(r)
    data = answer["outputs"][0]["data"]
    # [p0, p1] for a [1, 2] output, or the one score.
    return float(data[-1]), name


def session_cpu(sid):
    """CPU seconds (user + system) of every live process in session `sid`: a server and any
    workers it started."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid:
            total += int(fields[11]) + int(fields[12])
    return total / tick


def grpc_request(body):
    """The REST body as a gRPC ModelInferRequest in ghz's JSON form (typed contents)."""
    inputs = [
        {"name": i["name"], "datatype": i["datatype"], "shape": i["shape"],
         "contents": {"fp32_contents": i["data"]}}
        for i in body["inputs"]
    ]
    request = {"model_name": "lr", "inputs": inputs}
    if "outputs" in body:
        request["outputs"] = body["outputs"]
    return request


def check_grpc(target, request):
    """One ModelInfer over gRPC, through KServe's generated stubs; the row's score."""
    import grpc
    from google.protobuf import json_format
    from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb, grpc_predict_v2_pb2_grpc as stubs

    with grpc.insecure_channel(target) as channel:
        message = json_format.ParseDict(request, pb.ModelInferRequest())
        answer = stubs.GRPCInferenceServiceStub(channel).ModelInfer(message, timeout=5)
    out = answer.outputs[0]
    if answer.raw_output_contents:
        dtype = {"FP32": "<f4", "FP64": "<f8"}[out.datatype]
        values = np.frombuffer(answer.raw_output_contents[0], dtype=dtype)
    else:
        values = list(out.contents.fp32_contents) or list(out.contents.fp64_contents)
    return float(values[-1])


def ghz(binary, target, call, request, connections, sid):
    """requests/s, p50 and p99 (µs) of `call` at `connections` connections, one worker each,
    and the server's CPU µs per request (session `sid`)."""
    base = ["taskset", "-c", "0", binary, "--insecure", "--proto", PROTO, "--call", call,
            "-c", str(connections), "--connections", str(connections), "--cpus", "1",
            "--duration-stop", "wait", "-d", json.dumps(request), "--format", "json", target]
    subprocess.run(base + ["-z", f"{WARM_UP}s"], capture_output=True, check=True)
    cpu = session_cpu(sid)
    out = subprocess.run(base + ["-z", f"{DURATION}s"], capture_output=True, check=True, text=True)
    cpu = session_cpu(sid) - cpu
    report = json.loads(out.stdout)
    codes = report.get("statusCodeDistribution", {})
    failed = sum(n for code, n in codes.items() if code != "OK")
    if failed:
        raise RuntimeError(f"{failed} failed gRPC requests: {codes} {report.get('errorDistribution')}")
    latency = {p["percentage"]: p["latency"] / 1e3 for p in report["latencyDistribution"]}
    return report["rps"], latency[50], latency[99], 1e6 * cpu / report["count"]


NGINX_CONF = """
worker_processes 1;
daemon off;
pid {work}/nginx.pid;
error_log {work}/nginx-error.log;
events {{ worker_connections 64; }}
http {{
  access_log off;
  client_body_temp_path {work}/nginx-body;
  server {{
    listen 127.0.0.1:{port};
    location = /ready {{ return 200 "ok"; }}
    location = /infer {{ default_type application/json; return 200 '{answer}'; }}
  }}
}}
"""


def wrk(url, body, connections, log, sid):
    """requests/s, p50 and p99 (µs): a POST of `body`, or a GET where it is None; and the
    server's CPU µs per request (session `sid`)."""
    base = ["taskset", "-c", "0", "wrk", "-t1", f"-c{connections}", "--latency"]
    if body is not None:
        script = os.path.join(log, "post.lua")
        with open(script, "w") as f:
            f.write('wrk.method = "POST"\n')
            f.write('wrk.headers["Content-Type"] = "application/json"\n')
            f.write(f"wrk.body = {json.dumps(json.dumps(body))}\n")
        base += ["-s", script]
    subprocess.run(base + [f"-d{WARM_UP}s", url], capture_output=True, check=True)
    cpu = session_cpu(sid)
    out = subprocess.run(
        base + [f"-d{DURATION}s", url], capture_output=True, check=True, text=True
    ).stdout
    cpu = session_cpu(sid) - cpu
    count = int(re.search(r"(\d+) requests in", out).group(1))
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors:
        raise RuntimeError(f"{errors.group(1)} failed requests:\n{out}")

    def quantile(q):
        m = re.search(rf"\s{q}%\s+([\d.]+)(us|ms|s)", out)
        value, unit = float(m.group(1)), m.group(2)
        return value * {"us": 1.0, "ms": 1e3, "s": 1e6}[unit]

    return rps, quantile(50), quantile(99), 1e6 * cpu / count


def in_process_p50(work, row):
    """The model's own cost: ONNX Runtime on the same row in-process (Python binding, one
    thread), for the servers' overhead per request (p50 at 1 connection minus this)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(os.path.join(work, "columns.onnx"), options)
    feed = {f"f{i}": np.array([[v]], dtype=np.float32) for i, v in enumerate(row)}
    for _ in range(500):
        session.run(["probabilities"], feed)
    samples = []
    for _ in range(5000):
        t = time.perf_counter()
        session.run(["probabilities"], feed)
        samples.append((time.perf_counter() - t) * 1e6)
    return float(np.median(samples))


def stop(process):
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)


def chart(results, out):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is missing: no chart")
        return
    legs = [(protocol, c) for protocol in ("REST", "gRPC") for c in CONNECTIONS]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    # The servers first, then the floors (what a request costs here without a model).
    names = sorted(results, key=lambda n: n.startswith("floor"))
    for ax, (metric, index, label) in zip(
        axes, [("throughput", 0, "requests/s (log)"), ("p99", 2, "p99 latency (µs, log)")]
    ):
        width = 0.8 / len(legs)
        for k, (protocol, c) in enumerate(legs):
            values = [results[n].get(protocol, {}).get(c, (0, 0, 0, 0))[index] for n in names]
            ax.bar(np.arange(len(names)) + k * width, values, width,
                   label=f"{protocol}, {c} connection{'s' if c > 1 else ''}")
        ax.set_xticks(np.arange(len(names)) + 0.4 - width / 2, names, fontsize=7, rotation=15)
        ax.set_ylabel(label)
        ax.set_yscale("log")
        ax.legend(fontsize=7)
    fig.suptitle("Same logistic regression, server on 1 CPU, wrk (REST) or ghz (gRPC) on another")
    fig.tight_layout()
    fig.savefig(os.path.join(out, "serving_peers.png"), dpi=100)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--out", required=True)
    p.add_argument("--leitwerk", required=True)
    p.add_argument("--onnxruntime", required=True)
    p.add_argument("--mlserver-venv", required=True)
    p.add_argument("--ghz", required=True, help="the ghz binary (tests/ghz.sh builds it)")
    p.add_argument("--nginx", default=shutil.which("nginx") or "/usr/sbin/nginx",
                   help="nginx, for the REST floor (left out when missing)")
    p.add_argument("--leitwerk-baseline", help="a second build of the server (e.g. the commit "
                   "before a change), measured in the same run as 'leitwerk (baseline)'")
    p.add_argument("--only-leitwerk", action="store_true",
                   help="measure the Leitwerk builds only (no peers, no ratio to them)")
    args = p.parse_args()
    out = os.path.abspath(args.out)
    work = os.path.join(out, "work")
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    row, expected = build_models(work)
    matrix_body = {"inputs": [{"name": "input", "shape": [1, FEATURES], "datatype": "FP32", "data": row}]}
    infer = "inference.GRPCInferenceService/ModelInfer"

    # Each server: command, REST base URL, readiness path, REST infer path and body, gRPC
    # target; the gRPC request is the REST body's.
    def leitwerk(binary=None):
        http, grpc = free_port(), free_port()
        cmd = ["taskset", "-c", "1", binary or args.leitwerk,
               "--model", f"lr=v1=file://{work}/columns.onnx",
               "--http-addr", f"127.0.0.1:{http}", "--grpc-addr", f"127.0.0.1:{grpc}",
               "--onnxruntime", args.onnxruntime, "--drain-seconds", "0"]
        body = {"inputs": [{"name": f"f{i}", "shape": [1, 1], "datatype": "FP32", "data": [v]}
                           for i, v in enumerate(row)]}
        return cmd, f"http://127.0.0.1:{http}", "/v2/health/ready", "/v2/models/lr/infer", body, f"127.0.0.1:{grpc}"

    def kserve():
        http, grpc = free_port(), free_port()
        script = os.path.join(work, "kserve_model.py")
        with open(script, "w") as f:
            f.write(KSERVE_MODEL)
        cmd = ["taskset", "-c", "1", sys.executable, script, str(http), str(grpc),
               os.path.join(work, "matrix.onnx")]
        return cmd, f"http://127.0.0.1:{http}", "/v2/health/ready", "/v2/models/lr/infer", matrix_body, f"127.0.0.1:{grpc}"

    def mlserver():
        http, grpc, metrics = free_port(), free_port(), free_port()
        repo = os.path.join(work, "mlserver")
        os.makedirs(os.path.join(repo, "lr"), exist_ok=True)
        shutil.copy(os.path.join(work, "model.joblib"), os.path.join(repo, "lr", "model.joblib"))
        with open(os.path.join(repo, "settings.json"), "w") as f:
            # parallel_workers 0: inference in the server process. MLServer 1.7.1's worker
            # processes do not start with the uvloop it installs today ("There is no current
            # event loop"), and a pool on one pinned CPU would only add a hop.
            json.dump({"http_port": http, "grpc_port": grpc, "metrics_port": metrics,
                       "host": "127.0.0.1", "parallel_workers": 0}, f)
        with open(os.path.join(repo, "lr", "model-settings.json"), "w") as f:
            json.dump({"name": "lr", "implementation": "mlserver_sklearn.SKLearnModel",
                       "parameters": {"uri": "./model.joblib"}}, f)
        body = dict(matrix_body, outputs=[{"name": "predict_proba"}])
        cmd = ["taskset", "-c", "1", os.path.join(args.mlserver_venv, "bin", "mlserver"),
               "start", repo]
        return cmd, f"http://127.0.0.1:{http}", "/v2/health/ready", "/v2/models/lr/infer", body, f"127.0.0.1:{grpc}"

    raw_p50 = in_process_p50(work, row)
    results = {}
    servers = [("leitwerk-inference-server", leitwerk)]
    if args.leitwerk_baseline:
        servers.append(("leitwerk (baseline)", lambda: leitwerk(args.leitwerk_baseline)))
    if not args.only_leitwerk:
        servers += [("KServe 0.21", kserve), ("MLServer 1.7.1", mlserver)]
    for name, make in servers:
        cmd, base, ready, path, body, target = make()
        log = open(os.path.join(work, f"{name.split()[0]}.log"), "w")
        process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            wait_ready(base + ready, process, name)
            score, _ = check(base + path, body, name)
            grpc_score = check_grpc(target, grpc_request(body))
            for protocol, got in (("REST", score), ("gRPC", grpc_score)):
                if abs(got - expected) > 1e-4:
                    raise RuntimeError(f"{name} scored {got} over {protocol}, scikit-learn {expected}")
            results[name] = {
                "REST": {c: wrk(base + path, body, c, work, process.pid) for c in CONNECTIONS},
                "gRPC": {c: ghz(args.ghz, target, infer, grpc_request(body), c, process.pid) for c in CONNECTIONS},
            }
            if name == "leitwerk-inference-server":
                # The first floor: the same server and clients, no model.
                results["floor: Leitwerk health check"] = {
                    "REST": {c: wrk(base + ready, None, c, work, process.pid) for c in CONNECTIONS},
                    "gRPC": {c: ghz(args.ghz, target, "inference.GRPCInferenceService/ServerLive", {}, c, process.pid)
                             for c in CONNECTIONS},
                }
        finally:
            stop(process)
    if os.path.exists(args.nginx):
        # The second floor: nginx answering the same POST with a fixed body, no model.
        port = free_port()
        answer = json.dumps({"model_name": "lr", "outputs": [{"name": "probabilities", "shape": [1, 2],
                                                               "datatype": "FP32", "data": [0.5, 0.5]}]})
        conf = os.path.join(work, "nginx.conf")
        with open(conf, "w") as f:
            f.write(NGINX_CONF.format(work=work, port=port, answer=answer))
        log = open(os.path.join(work, "nginx.log"), "w")
        process = subprocess.Popen(["taskset", "-c", "1", args.nginx, "-c", conf], stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True)
        try:
            wait_ready(f"http://127.0.0.1:{port}/ready", process, "nginx")
            results["floor: nginx, fixed answer"] = {
                "REST": {c: wrk(f"http://127.0.0.1:{port}/infer", matrix_body, c, work, process.pid) for c in CONNECTIONS},
            }
        finally:
            stop(process)
    else:
        print(f"nginx not found at {args.nginx}: no REST floor from it")

    versus = "the baseline" if args.only_leitwerk else "best Python peer"
    print(f"| server | protocol | connections | req/s | p50 µs | p99 µs | server CPU µs per request | req/s vs {versus} |")
    print("|---|---|---|---|---|---|---|---|")
    served = [n for n in results if not n.startswith("floor")]
    peers = [n for n in served if not n.startswith("leitwerk")] or ["leitwerk (baseline)"]
    peers = [n for n in peers if n in results] or served[:1]
    for protocol in ("REST", "gRPC"):
        for c in CONNECTIONS:
            best = max(results[n][protocol][c][0] for n in peers)
            for name, r in results.items():
                if protocol not in r:
                    continue
                rps, p50, p99, cpu = r[protocol][c]
                print(f"| {name} | {protocol} | {c} | {rps:,.0f} | {p50:,.0f} | {p99:,.0f} | {cpu:,.0f} | {rps / best:.1f}× |")
    print(f"\nONNX Runtime in-process on the same row (Python, 1 thread): p50 {raw_p50:.1f} µs")
    for name in served:
        for protocol in ("REST", "gRPC"):
            p50 = results[name][protocol][1][1]
            cpu = results[name][protocol][16][3]
            print(f"{name}, {protocol}: overhead per request ≈ {p50 - raw_p50:,.0f} µs at 1 connection "
                  f"(p50 − model), {cpu - raw_p50:,.0f} µs of server CPU at 16 (CPU per request − model)")
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump({n: {protocol: {str(c): dict(zip(["rps", "p50_us", "p99_us", "server_cpu_us"], v)) for c, v in legs.items()}
                       for protocol, legs in r.items()}
                   for n, r in results.items()} | {"in_process_p50_us": raw_p50}, f, indent=1)
    chart(results, out)


if __name__ == "__main__":
    main()
