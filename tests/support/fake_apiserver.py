#!/usr/bin/env python3
"""A fake Kubernetes API server for promfed's tests and demo.

It behaves like the real one wherever promfed or Prometheus can tell: HTTPS
with a test CA, bearer tokens (a JWT past its `exp` gets 401) and client
certificates, 401 and 403 with Status bodies that name the missing
permission, lists and watches of nodes/endpointslices/endpoints/pods/
services, SelfSubjectReview and SelfSubjectAccessReview, and the proxy
paths — node-exporter's forwarded to a real prometheus-node-exporter.

    fake_apiserver.py pki DIR              make ca.crt, server.*, client.*, other-ca.crt
    fake_apiserver.py serve --pki DIR --state STATE.json --port-file FILE [--port N]

The state file is re-read whenever it changes, so tests steer the cluster by
rewriting it (atomically):

    {"tokens": {"<token>": {"user": "...", "deny": ["list nodes", "get nodes/proxy", "get /metrics"]}},
     "client_users": {"<certificate CN>": {"deny": []}},
     "nodes": ["node-a", "node-b"],
     "unreachable_nodes": ["node-b"],          # its proxy answers 503
     "oversized_cadvisor": {"nodes": ["node-b"], "megabytes": 40},  # that node's cAdvisor answer, padded to 40 MiB
     "failing_pods": ["node-exporter-b"],      # node-exporter pods whose proxy answers 500
     "silent_watches": ["nodes"],              # watches that stay open and send nothing, bookmarks included
     "bare_nodes": ["node-b"],                 # just registered: no addresses or conditions
     "reviews": ["authentication.k8s.io/v1", "authorization.k8s.io/v1"],  # served versions
     "node_exporter": {"namespace": "monitoring", "service": "prometheus-node-exporter",
                       "port": 9100, "port_name": "http-metrics", "upstream": "127.0.0.1:9100",
                       "pods": [{"name": "ne-a", "node": "node-a", "ready": true}]},
     "exporters": [{"namespace": "kube-system", "service": "kube-dns", "labels": {"k8s-app": "kube-dns"},
                    "ports": [{"name": "metrics", "port": 9153}], "upstream": "127.0.0.1:9153",
                    "auth": null | "kube-rbac-proxy",   # answers 401 to the proxy, which strips Authorization
                    "args": ["--total-shards=2"],       # the pods' container args (GET pod)
                    "pods": [{"name": "coredns-a", "node": "node-a", "ready": true}]}],
     "monitors": {"servicemonitors": [{"metadata": {...}, "spec": {...}}], "podmonitors": []},
                                               # absent (or a kind left out): no such CRD, a 404
     "fail": null | 500 | "hang",
     "latest_token_file": PATH,                # "TOKEN EXPIRY_UNIX" written by a test's exec
                                               # plugin: that token alone is accepted, until then
     "token_request_lifetime": 4,              # seconds a minted token lasts (else as asked)
     "shape": null | "null" | "omit"}         # how empty fields are sent, below

A token entry's "mint": ["NS/NAME"] lets it create tokens for those
service accounts (`POST /api/v1/namespaces/NS/serviceaccounts/NAME/token`,
a TokenRequest): others get 403 naming `create serviceaccounts/token`, an
`expirationSeconds` under 600 gets 422 as on a real server. A minted token
is accepted until it expires, and only the latest of its account.

A "deny" entry refuses that request with 403 and answers `allowed: false`
to the SelfSubjectAccessReview that asks for it.

Lists carry a resourceVersion; `?watch=true` on a list path streams
ADDED/MODIFIED/DELETED events (and BOOKMARKs when asked) as the state file
changes, until timeoutSeconds; a resourceVersion older than the fake's
history gets 410 Gone, as on a real server. `sendInitialEvents=true` (a
streaming list, which Prometheus 3's client-go sends instead of a list)
streams every current object as ADDED, then a BOOKMARK annotated
`k8s.io/initial-events-end`, then the changes, as Kubernetes 1.32+ does.

Byte-level faults, `"raw": {"case": NAME, "on": "list" | "watch",
"resource": "nodes"}` (resource defaults to nodes): the resource's list
(`on: list`, no watch=true) or its watch (`on: watch`) is answered, after
the usual auth check (a wrong token still gets 401), by raw bytes written
to the TLS socket instead of BaseHTTPRequestHandler's helpers. Open normal
watches of that resource end when an `on: watch` fault appears, so that
clients reopen them into the fault. Every case stops by itself (at most
120 s a connection) and returns when the client closes the socket; each
is counted as `raw_<case>` in /_fake/requests.

    status_non_ascii    `HTTP/1.1 abc xxx…éé…`: a two-byte UTF-8 character
                        straddles byte 100 of the status line; then close
    status_overlong     a status line of 100 KiB, then close
    endless_trailers    a chunked 200 NodeList, the last chunk `0`, then
                        `X-T: aaaa` trailer lines for ever (the 120 s cap),
                        never the empty line that ends them
    huge_trailers       the same with 20,000 trailer lines, then the end
    giant_line          (watch) a chunked 200 whose body is one 100 MB line
                        without a line break, in 64 KiB chunks
    flood               (watch) valid MODIFIED events of node e-1 (whole
                        objects, growing resourceVersions), as fast as the
                        fake can, for 60 s
    drip_head           the head of a chunked 200 one byte every 0.5 s,
                        then the normal body (list or watch)
    immediate_end       `200` with `Content-Length: 0`, then close: a watch
                        that ends at once
    continue_1xx        `100 Continue` and `103 Early Hints`, then the
                        normal answer (a client must skip 1xx responses)
    no_content_204      `204 No Content`, then silence on the open
    not_modified_304    connection for 60 s (resp. 304): no body follows
    conflicting_length  a list with `Content-Length: 10` and
                        `Content-Length: <real length>`
    te_substring        `Transfer-Encoding: notchunked` and a
                        Content-Length body (`chunked` is only a substring)
    echo_string         a list (or a watch event) whose node `metadata` is
                        the request's Authorization header, a string
    echo_array          … whose `metadata.name` is `["Bearer <token>"]`
    echo_object         … whose `metadata.name` is `{"x": "Bearer <token>"}`
    echo_number         … whose `metadata` is `{"name": 12345, "labels":
                        "Bearer <token>"}`
                        (each a wrong type carrying the token, that a JSON
                        decoder's error message would quote)


Real API servers send Go-marshalled objects: a list or map field without
`omitempty` arrives as `null` when it is empty, and an optional one may be
absent. "shape" copies that for every object served (lists, single GETs and
watch events): "null" sends every empty list and map as null (list `items`
included), and first fills the optional fields a real server may send as
null (metadata.labels/annotations, a node's status.addresses/conditions, a
pod's status.conditions/containerStatuses, Endpoints subsets and their
addresses/notReadyAddresses/ports, an EndpointSlice's endpoints/ports and an
endpoint's addresses, a Service's spec.ports); "omit" leaves every empty list
and map out. Absent: as the fake always did. A service whose node-exporter
pods are all gone keeps one placeholder EndpointSlice, as the EndpointSlice
controller does (`"endpoints": null, "ports": null` on a real server).

GET /_fake/requests (no auth) answers the request counts by path kind:
`list_<resource>` and `watch_<resource>` apart (a watch is not a list).
The behaviour it copies is described in the README's section on the tests.
"""

import argparse
import base64
import json
import os
import re
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit, parse_qs

EXPOSITION = "text/plain; version=0.0.4; charset=utf-8"


def make_pki(directory):
    os.makedirs(directory, exist_ok=True)

    def openssl(*args):
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=directory)

    for ca in ("ca", "other-ca"):
        openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                "-keyout", f"{ca}.key", "-out", f"{ca}.crt", "-days", "3650", "-subj", f"/CN=fake-{ca}")
    ext = os.path.join(directory, "server.ext")
    with open(ext, "w") as f:
        f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n")
    with open(os.path.join(directory, "client.ext"), "w") as f:
        f.write("extendedKeyUsage=clientAuth\n")
    for name, subject in (("server", "/CN=kube-apiserver"), ("client", "/CN=promfed-client")):
        openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", subject)
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                "-CAcreateserial", "-out", f"{name}.crt", "-days", "365", "-extfile", f"{name}.ext")
    for name in os.listdir(directory):
        if name.endswith(".key"):
            os.chmod(os.path.join(directory, name), 0o600)


HISTORY = int(os.environ.get("FAKE_APISERVER_HISTORY", "1000"))  # events kept; older versions get 410


class State:
    """The cluster as the test wants it; re-read when the file changes.
    Every change gets a new resourceVersion and the events it implies."""

    def __init__(self, path):
        self.path = path
        self.mtime = None
        self.data = {}
        self.lock = threading.Lock()
        # Notified on every re-read of the state: watches sleep on it
        # instead of polling, so that thousands of them cost nothing.
        self.changed = threading.Condition(self.lock)
        self.counts = {}
        self.version = 1
        self.events = []  # (resourceVersion, resource, type, object)
        self.objects = {}  # resource -> {name: object}

    def get(self):
        with self.lock:
            try:
                mtime = os.stat(self.path).st_mtime_ns
                if mtime != self.mtime:
                    with open(self.path) as f:
                        data = json.load(f)
                    self.mtime = mtime
                    self.data = data
                    self.record_changes()
                    self.changed.notify_all()
            except (OSError, ValueError):
                pass  # keep the last good state while a test rewrites it
            return self.data

    def record_changes(self):
        """Diffs the objects of the new state against the last ones."""
        new = objects_of(self.data)
        for resource, items in new.items():
            old = self.objects.get(resource, {})
            for name, obj in items.items():
                if name not in old:
                    self.event(resource, "ADDED", obj)
                elif strip_version(old[name]) != strip_version(obj):
                    self.event(resource, "MODIFIED", obj)
            for name, obj in old.items():
                if name not in items:
                    self.event(resource, "DELETED", obj)
        self.objects = {r: {n: o for n, o in items.items()} for r, items in new.items()}
        del self.events[:-HISTORY]

    def event(self, resource, kind, obj):
        self.version += 1
        obj = json.loads(json.dumps(obj))
        obj["metadata"]["resourceVersion"] = str(self.version)
        self.events.append((self.version, resource, kind, obj))

    def since(self, resource, version):
        """Events after `version`, or None when it is older than the history."""
        with self.lock:
            oldest = self.events[0][0] if self.events else self.version + 1
            if version < oldest - 1 and version < self.version:
                return None
            return [(v, t, o) for v, r, t, o in self.events if r == resource and v > version]

    def current_version(self):
        with self.lock:
            return self.version

    def wait_change(self, version, timeout):
        """Returns when the state moved past `version` (or was re-read), or
        after `timeout` seconds."""
        with self.lock:
            if self.version <= version:
                self.changed.wait(max(timeout, 0))

    def follow_file(self):
        """Re-reads the state file every 50 ms, for the watches."""
        while True:
            self.get()
            time.sleep(0.05)

    def add(self, kind, n):
        with self.lock:
            self.counts[kind] = self.counts.get(kind, 0) + n

    def count(self, kind):
        with self.lock:
            self.counts[kind] = self.counts.get(kind, 0) + 1


def jwt_expired(token):
    """A JWT whose `exp` has passed (the signature is the fake's to trust)."""
    parts = token.split(".")
    if len(parts) != 3:
        return False
    try:
        payload = parts[1] + "=" * (-len(parts[1]) % 4)
        exp = json.loads(base64.urlsafe_b64decode(payload)).get("exp")
    except ValueError:
        return False
    return isinstance(exp, (int, float)) and exp < time.time()


def status(code, reason, message):
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code}


def node_object(name, data=None):
    """A node; one of the state's "bare_nodes" has just registered: no
    addresses and no conditions yet."""
    bare = name in (data or {}).get("bare_nodes", [])
    return {
        "kind": "Node", "apiVersion": "v1",
        "metadata": {"name": name, "resourceVersion": "1", "labels": {"kubernetes.io/hostname": name}},
        "status": {
            "addresses": [] if bare else [
                {"type": "InternalIP", "address": "10.0.0.%d" % (sum(map(ord, name)) % 250 + 1)},
                {"type": "Hostname", "address": name}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "conditions": [] if bare else [{"type": "Ready", "status": "True"}],
        },
    }


def pod_ip(pod):
    return "10.244.0.%d" % (sum(map(ord, pod["name"])) % 250 + 1)


def endpoints_object(ne):
    ready = [p for p in ne.get("pods", []) if p.get("ready", True)]
    not_ready = [p for p in ne.get("pods", []) if not p.get("ready", True)]

    def address(p):
        return {"ip": pod_ip(p), "nodeName": p["node"],
                "targetRef": {"kind": "Pod", "name": p["name"], "namespace": ne["namespace"]}}

    subset = {"ports": [{"name": ne.get("port_name", "http-metrics"), "port": ne.get("port", 9100), "protocol": "TCP"}]}
    if ready:
        subset["addresses"] = [address(p) for p in ready]
    if not_ready:
        subset["notReadyAddresses"] = [address(p) for p in not_ready]
    return {"kind": "Endpoints", "apiVersion": "v1",
            "metadata": {"name": ne["service"], "namespace": ne["namespace"], "resourceVersion": "1"},
            "subsets": [subset] if ne.get("pods") else []}


def endpoint_slices(ne):
    """The service's EndpointSlices, as the EndpointSlice controller writes
    them: at most two pods per slice here, so that a service has several.
    Without pods, one placeholder slice with no endpoints and no ports (the
    controller keeps it; `shape` makes them null or absent)."""
    pods = ne.get("pods", [])
    slices = []
    for i in range(0, max(len(pods), 1), 2):
        chunk = pods[i:i + 2]
        slices.append({
            "kind": "EndpointSlice", "apiVersion": "discovery.k8s.io/v1",
            "metadata": {"name": f"{ne['service']}-{i // 2:05d}", "namespace": ne["namespace"],
                         "labels": {"kubernetes.io/service-name": ne["service"]}, "resourceVersion": "1"},
            "addressType": "IPv4",
            "endpoints": [{"addresses": [pod_ip(p)], "conditions": {"ready": p.get("ready", True)},
                           "nodeName": p["node"],
                           "targetRef": {"kind": "Pod", "name": p["name"], "namespace": ne["namespace"]}}
                          for p in chunk],
            "ports": [{"name": ne.get("port_name", "http-metrics"), "port": ne.get("port", 9100), "protocol": "TCP"}]
            if chunk else [],
        })
    return slices


def pod_object(ne, p):
    return {"kind": "Pod", "apiVersion": "v1",
            "metadata": {"name": p["name"], "namespace": ne["namespace"], "resourceVersion": "1",
                         "labels": {"app.kubernetes.io/name": "prometheus-node-exporter"}},
            "spec": {"nodeName": p["node"],
                     "containers": [{"name": "node-exporter",
                                     "ports": [{"name": ne.get("port_name", "http-metrics"),
                                                "containerPort": ne.get("port", 9100)}]}]},
            "status": {"podIP": pod_ip(p), "phase": "Running",
                       "conditions": [{"type": "Ready", "status": "True" if p.get("ready", True) else "False"}]}}


def app_pod_object(p):
    """One of the state's "pods": an application pod with annotations
    (Istio's sidecars set prometheus.io/*), labels, a phase and readiness."""
    return {"kind": "Pod", "apiVersion": "v1",
            "metadata": {"name": p["name"], "namespace": p["namespace"], "resourceVersion": "1",
                         "annotations": p.get("annotations", {}), "labels": p.get("labels", {})},
            "spec": {"nodeName": p.get("node", "node-a"),
                     "containers": [{"name": "app", "ports": [{"containerPort": port} for port in p.get("ports", [])]}]},
            "status": {"podIP": "10.244.9.9", "phase": p.get("phase", "Running"),
                       "conditions": [{"type": "Ready", "status": "True" if p.get("ready", True) else "False"}]}}


def objects_of(data):
    """Every object of the state, by resource and name (pods by namespace/name)."""
    ne = data.get("node_exporter") or {}
    objs = {"nodes": {n: node_object(n, data) for n in data.get("nodes", [])}, "endpoints": {}, "pods": {}, "services": {},
            "endpointslices": {}}
    if ne:
        objs["endpoints"][ne["service"]] = endpoints_object(ne)
        objs["endpointslices"] = {f'{ne["namespace"]}/{sl["metadata"]["name"]}': sl for sl in endpoint_slices(ne)}
        objs["pods"] = {f'{ne["namespace"]}/{p["name"]}': pod_object(ne, p) for p in ne.get("pods", [])}
        objs["services"][f'{ne["namespace"]}/{ne["service"]}'] = service_object(ne)
    for p in data.get("pods", []):
        objs["pods"][f'{p["namespace"]}/{p["name"]}'] = app_pod_object(p)
    for resource, kind in MONITOR_KINDS.items():
        objs[resource] = {}
        for m in (data.get("monitors") or {}).get(resource) or []:
            o = dict(m, kind=kind, apiVersion="monitoring.coreos.com/v1")
            o["metadata"] = dict(m["metadata"], resourceVersion="1")
            objs[resource][f'{m["metadata"].get("namespace")}/{m["metadata"].get("name")}'] = o
    for ex in data.get("exporters", []):
        for sl in exporter_slices(ex):
            objs["endpointslices"][f'{ex["namespace"]}/{sl["metadata"]["name"]}'] = sl
        objs["services"][f'{ex["namespace"]}/{ex["service"]}'] = exporter_service(ex)
        for p in ex.get("pods", []):
            objs["pods"][f'{ex["namespace"]}/{p["name"]}'] = exporter_pod(ex, p)
    return objs


def exporter_slices(ex):
    """An exporter Service's EndpointSlices: the node-exporter rules, and
    the Service's labels copied onto each, as the controller does."""
    ne = {"namespace": ex["namespace"], "service": ex["service"], "pods": ex.get("pods", [])}
    slices = endpoint_slices(ne)
    for sl in slices:
        sl["metadata"]["labels"] = dict(ex.get("labels", {}), **{"kubernetes.io/service-name": ex["service"]})
        sl["ports"] = [dict(p, protocol="TCP") for p in ex.get("ports", [])] if sl["endpoints"] else []
        for ep in sl["endpoints"]:
            ep["targetRef"]["uid"] = "uid-" + ep["targetRef"]["name"]
    return slices


def exporter_service(ex):
    return {"kind": "Service", "apiVersion": "v1",
            "metadata": {"name": ex["service"], "namespace": ex["namespace"], "resourceVersion": "1",
                         "labels": ex.get("labels", {})},
            "spec": {"ports": [{"name": p.get("name", ""), "port": p["port"], "targetPort": p["port"]}
                               for p in ex.get("ports", [])]}}


def exporter_pod(ex, p):
    return {"kind": "Pod", "apiVersion": "v1",
            "metadata": {"name": p["name"], "namespace": ex["namespace"], "resourceVersion": "1",
                         "uid": "uid-" + p["name"], "labels": ex.get("labels", {})},
            "spec": {"nodeName": p.get("node"),
                     "containers": [{"name": "exporter", "args": ex.get("args", []),
                                     "ports": [{"name": q.get("name", ""), "containerPort": q["port"]}
                                               for q in ex.get("ports", [])]}]},
            "status": {"podIP": pod_ip(p), "phase": "Running",
                       "conditions": [{"type": "Ready", "status": "True" if p.get("ready", True) else "False"}]}}


def selected(labels, selector):
    """Whether `labels` match a labelSelector of `k=v`, `k==v` and
    `k in (a,b)` terms (what promfed and Prometheus send)."""
    terms, depth, term = [], 0, ""
    for c in selector or "":
        depth += (c == "(") - (c == ")")
        if c == "," and depth == 0:
            terms.append(term)
            term = ""
        else:
            term += c
    terms.append(term)
    for t in (t.strip() for t in terms):
        if not t:
            continue
        m = re.match(r"^(\S+)\s+in\s+\((.*)\)$", t)
        if m:
            if labels.get(m.group(1)) not in [v.strip() for v in m.group(2).split(",")]:
                return False
            continue
        key, _, value = t.replace("==", "=").partition("=")
        if labels.get(key.strip()) != value.strip():
            return False
    return True


# Fields a real server may send as null (Go slices and maps without
# `omitempty`, or optional ones), by kind: "null" fills them when the fake
# leaves them out, so that they arrive as null. Paths: "a.b" is a key
# inside a key, "a[].b" a key of every element of list a.
NULLABLE = {
    "*": ["metadata.labels", "metadata.annotations"],
    "Node": ["status.addresses", "status.conditions"],
    "Pod": ["status.conditions", "status.containerStatuses"],
    "Endpoints": ["subsets", "subsets[].addresses", "subsets[].notReadyAddresses", "subsets[].ports"],
    "EndpointSlice": ["endpoints", "ports", "endpoints[].addresses"],
    "Service": ["spec.ports"],
    "ServiceMonitor": ["spec.endpoints", "spec.endpoints[].relabelings", "spec.endpoints[].metricRelabelings",
                       "spec.endpoints[].params"],
    "PodMonitor": ["spec.podMetricsEndpoints", "spec.podMetricsEndpoints[].relabelings",
                   "spec.podMetricsEndpoints[].metricRelabelings"],
}


def fill(obj, path):
    """Puts an empty value at `path` of `obj` where there is none."""
    head, _, rest = path.partition(".")
    if head.endswith("[]"):
        for item in obj.get(head[:-2]) or []:
            if isinstance(item, dict) and rest:
                fill(item, rest)
        return
    if not rest:
        leaf = head.split(".")[-1]
        obj.setdefault(leaf, {} if leaf in ("labels", "annotations") else [])
        return
    inner = obj.get(head)
    if isinstance(inner, dict):
        fill(inner, rest)


def emptied(value, mode):
    """`value` with every empty list and map, at any depth, made null
    ("null") or left out ("omit")."""
    if isinstance(value, dict):
        out = {}
        for key, v in value.items():
            v = emptied(v, mode)
            if isinstance(v, (list, dict)) and not v:
                if mode == "null":
                    out[key] = None
                continue  # "omit"
            out[key] = v
        return out
    if isinstance(value, list):
        return [emptied(v, mode) for v in value]
    return value


def shaped(obj, data):
    """`obj` as a Go-marshalling server sends it, in the state's "shape"
    mode; itself when there is none. One transform for every object served."""
    mode = data.get("shape")
    if mode not in ("null", "omit"):
        return obj
    obj = json.loads(json.dumps(obj))
    objects = obj["items"] if isinstance(obj.get("items"), list) else [obj]
    if mode == "null":
        for o in objects:
            if isinstance(o, dict):
                for path in NULLABLE["*"] + NULLABLE.get(o.get("kind", ""), []):
                    fill(o, path)
    return emptied(obj, mode)


def strip_version(obj):
    o = json.loads(json.dumps(obj))
    o["metadata"].pop("resourceVersion", None)
    return o


def service_object(ne):
    return {"kind": "Service", "apiVersion": "v1",
            "metadata": {"name": ne["service"], "namespace": ne["namespace"], "resourceVersion": "1"},
            "spec": {"ports": [{"name": ne.get("port_name", "http-metrics"), "port": ne.get("port", 9100)}]}}


def kubelet_metrics(node):
    return (
        "# HELP kubelet_running_pods Number of pods that have a running pod sandbox\n"
        "# TYPE kubelet_running_pods gauge\n"
        "kubelet_running_pods 7\n"
        "# HELP kubelet_node_name The node's name.\n"
        "# TYPE kubelet_node_name gauge\n"
        f'kubelet_node_name{{node="{node}"}} 1\n'
        "# TYPE kubelet_pod_worker_latency_microseconds gauge\n"
        "kubelet_pod_worker_latency_microseconds 12\n"
    )


def cadvisor_metrics(node):
    ts = int(time.time() * 1000) - 2000  # cAdvisor stamps its samples
    pod = f"app-{node}"
    labels = f'container="app",id="/kubepods/burstable/pod-{node}/c1",image="registry/app:1",name="c1",namespace="default",pod="{pod}"'
    return (
        "# TYPE container_cpu_usage_seconds_total counter\n"
        f"container_cpu_usage_seconds_total{{{labels}}} 12.5 {ts}\n"
        'container_cpu_usage_seconds_total{container="",id="/system.slice/kubelet.service",image="",name="",namespace="",pod=""} 99 ' + str(ts) + "\n"
        "# TYPE container_spec_memory_limit_bytes gauge\n"
        f"container_spec_memory_limit_bytes{{{labels}}} 0 {ts}\n"
        "# TYPE container_memory_working_set_bytes gauge\n"
        f"container_memory_working_set_bytes{{{labels}}} 1.048576e+07 {ts}\n"
    )


APISERVER_METRICS = (
    "# TYPE apiserver_request_total counter\n"
    'apiserver_request_total{code="200",resource="nodes",verb="LIST"} 42\n'
    "# TYPE etcd_disk_backend_commit_duration_seconds gauge\n"
    "etcd_disk_backend_commit_duration_seconds 0.01\n"
)

PROXY_NODE = re.compile(r"^/api/v1/nodes/([^/]+)/proxy(/.*)?$")
PROXY_POD = re.compile(r"^/api/v1/namespaces/([^/]+)/pods/(?:(https?):)?([^/:]+):([^/]+)/proxy(/.*)?$")
PROXY_SERVICE = re.compile(r"^/api/v1/namespaces/([^/]+)/services/(?:https?:)?([^/:]+):([^/]+)/proxy(/.*)?$")
ENDPOINTS_ONE = re.compile(r"^/api/v1/namespaces/([^/]+)/endpoints/([^/]+)$")
POD_ONE = re.compile(r"^/api/v1/namespaces/([^/]+)/pods/([^/:]+)$")
NAMESPACED_LIST = re.compile(r"^/api/v1/namespaces/([^/]+)/(endpoints|pods|services)$")
CLUSTER_LIST = re.compile(r"^/api/v1/(nodes|endpoints|pods|services)$")
TOKEN_REQUEST = re.compile(r"^/api/v1/namespaces/([a-z0-9-]+)/serviceaccounts/([a-z0-9.-]+)/token$")
MINTED = {}  # token -> (user, expiry); the latest per user only
MINTED_LOCK = threading.Lock()
MINT_COUNTER = [0]

REVIEWS = re.compile(r"^/apis/(authentication\.k8s\.io|authorization\.k8s\.io)/(v1|v1beta1|v1alpha1)/(selfsubjectreviews|selfsubjectaccessreviews)$")
SLICES = re.compile(r"^/apis/discovery\.k8s\.io/v1(?:/namespaces/([^/]+))?/endpointslices$")
MONITORS = re.compile(r"^/apis/monitoring\.coreos\.com/v1(?:/namespaces/([^/]+))?/(servicemonitors|podmonitors)$")
MONITOR_KINDS = {"servicemonitors": "ServiceMonitor", "podmonitors": "PodMonitor"}

RAW_CAP = 120  # seconds a raw answer may last, at most
CHUNKED_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"


def raw_fault(data, resource, watching):
    """Whether the state's byte-level fault applies to this list or watch."""
    raw = data.get("raw")
    if not isinstance(raw, dict) or not raw.get("case"):
        return False
    return raw.get("resource", "nodes") == resource and (raw.get("on", "list") == "watch") == watching


def chunked(data):
    return b"%x\r\n%s\r\n" % (len(data), data)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fake-kube-apiserver"

    def log_message(self, fmt, *args):
        if os.environ.get("FAKE_APISERVER_LOG"):
            sys.stderr.write("fake-apiserver: " + fmt % args + "\n")

    # -- answers --------------------------------------------------------
    def send(self, code, body, content_type="application/json"):
        data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        self.count_bytes(len(data))
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def forbidden(self, user, verb, resource, scope):
        self.send(403, status(403, "Forbidden",
                              f'{resource} is forbidden: User "{user}" cannot {verb} resource "{resource}" '
                              f'in API group "" {scope}' + self.echo()))

    # -- faults, for hostile-server tests (state "faults") -----------------
    def echo(self):
        """A compromised server's habit: the request's credentials echoed."""
        if not self.server.state.get().get("faults", {}).get("echo_auth"):
            return ""
        return f' (request: Authorization: {self.headers.get("Authorization", "")})'

    def send_huge(self, megabytes):
        """A node list of `megabytes` MiB, streamed, not built in memory."""
        head = b'{"kind":"NodeList","apiVersion":"v1","metadata":{},"items":[],"padding":"'
        tail = b'"}'
        chunk = b"x" * (1 << 20)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(head) + megabytes * len(chunk) + len(tail)))
        self.end_headers()
        try:
            self.wfile.write(head)
            for _ in range(megabytes):
                self.wfile.write(chunk)
            self.wfile.write(tail)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client stopped reading, as it should

    def send_big_exposition(self, text, megabytes):
        """`text`, then comment lines up to `megabytes` MiB: valid exposition
        text, as large as a busy node's cAdvisor can get, streamed."""
        line = b"# " + b"p" * 1021 + b"\n"  # 1 KiB
        head = text.encode()
        lines = megabytes * 1024
        self.count_bytes(len(head) + lines * len(line))
        self.send_response(200)
        self.send_header("Content-Type", EXPOSITION)
        self.send_header("Content-Length", str(len(head) + lines * len(line)))
        self.end_headers()
        try:
            self.wfile.write(head)
            block = line * 1024
            for _ in range(megabytes):
                self.wfile.write(block)
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            pass  # the client stopped reading at its limit, as it should

    # -- byte-level faults (state "raw"), written past the helpers ----------
    def raw(self, case, resource, query, watching):
        """Answers with the raw bytes of `case` (see the module's doc)."""
        state = self.server.state
        state.count(f"raw_{case}")
        self.close_connection = True
        self.raw_deadline = time.time() + RAW_CAP
        handler = getattr(self, "raw_" + case, None)
        if handler is None:
            return self.send(500, status(500, "InternalError", f"the fake has no raw case {case!r}"))
        try:
            handler(resource, query, watching)
        except (OSError, ValueError):  # BrokenPipe, ConnectionReset, ssl errors, a closed file
            state.count("raw_gone")  # the client went away

    def put(self, data):
        self.wfile.write(data)
        self.wfile.flush()

    def token_header(self):
        return self.headers.get("Authorization", "")

    def list_bytes(self, resource):
        return json.dumps(self.list_of(resource, self.server.state.get(), None)).encode()

    def normal_body(self, resource, query, watching):
        """The correct body after a chunked 200 head: a list, or the watch."""
        if watching:
            return self.watch(resource, query, head=False)
        self.put(chunked(self.list_bytes(resource)) + b"0\r\n\r\n")

    def hold(self, seconds):
        """Keeps the connection open and silent for `seconds` (within the
        cap), reading and dropping what the client sends; returns when it
        closes."""
        end = min(time.time() + seconds, self.raw_deadline)
        self.connection.settimeout(0.5)
        while time.time() < end:
            try:
                if not self.connection.recv(65536):
                    return
            except (socket.timeout, ssl.SSLWantReadError):
                continue
            except (OSError, ValueError):
                return

    def raw_status_non_ascii(self, resource, query, watching):
        # "HTTP/1.1 abc " is 13 bytes: with 86 x's an "é" takes bytes 99 and 100.
        line = b"HTTP/1.1 abc " + b"x" * 86 + "é".encode() * 20
        self.put(line + b"\r\n\r\n")

    def raw_status_overlong(self, resource, query, watching):
        self.put(b"HTTP/1.1 200 ")
        for _ in range(100):
            self.put(b"x" * 1024)
        self.put(b"\r\n\r\n")

    def trailers_after_list(self, resource, lines):
        """A chunked 200 list, its last chunk, then `lines` trailer lines
        (None: for ever, within the cap), and the empty line only after a
        bounded number."""
        self.put(CHUNKED_HEAD + chunked(self.list_bytes(resource)) + b"0\r\n")
        batch = b"X-T: aaaa\r\n" * 1000
        sent = 0
        while lines is None or sent < lines:
            if time.time() > self.raw_deadline:
                return  # the cap: close, never having ended the trailers
            n = 1000 if lines is None else min(1000, lines - sent)
            self.put(batch if n == 1000 else b"X-T: aaaa\r\n" * n)
            sent += n
        self.put(b"\r\n")

    def raw_endless_trailers(self, resource, query, watching):
        self.trailers_after_list(resource, None)

    def raw_huge_trailers(self, resource, query, watching):
        self.trailers_after_list(resource, 20000)

    def raw_giant_line(self, resource, query, watching):
        self.put(CHUNKED_HEAD)
        piece = chunked(b"x" * (64 << 10))
        for _ in range((100 * 1000 * 1000) // (64 << 10) + 1):
            if time.time() > self.raw_deadline:
                return
            self.wfile.write(piece)
        self.put(b"0\r\n\r\n")

    def raw_flood(self, resource, query, watching):
        self.put(CHUNKED_HEAD)
        node = node_object("e-1")
        node["metadata"]["resourceVersion"] = "@RV@"
        template = json.dumps({"type": "MODIFIED", "object": node}).encode() + b"\n"
        before, after = template.split(b"@RV@")
        version = self.server.state.current_version() + 1
        end = min(time.time() + 60, self.raw_deadline)
        while time.time() < end:
            batch = b"".join(before + str(version + i).encode() + after for i in range(50))
            version += 50
            self.put(chunked(batch))
        self.put(b"0\r\n\r\n")

    def raw_drip_head(self, resource, query, watching):
        for i in range(len(CHUNKED_HEAD)):
            if time.time() > self.raw_deadline:
                return
            self.put(CHUNKED_HEAD[i:i + 1])
            time.sleep(0.5)
        self.normal_body(resource, query, watching)

    def raw_immediate_end(self, resource, query, watching):
        self.put(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 0\r\n\r\n")

    def raw_continue_1xx(self, resource, query, watching):
        self.put(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\n")
        self.put(CHUNKED_HEAD)
        self.normal_body(resource, query, watching)

    def raw_no_content_204(self, resource, query, watching):
        self.put(b"HTTP/1.1 204 No Content\r\n\r\n")
        self.hold(60)

    def raw_not_modified_304(self, resource, query, watching):
        self.put(b"HTTP/1.1 304 Not Modified\r\n\r\n")
        self.hold(60)

    def raw_conflicting_length(self, resource, query, watching):
        body = self.list_bytes(resource)
        self.put(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 10\r\n"
                 b"Content-Length: %d\r\n\r\n%s" % (len(body), body))

    def raw_te_substring(self, resource, query, watching):
        body = self.list_bytes(resource)
        self.put(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: notchunked\r\n"
                 b"Content-Length: %d\r\n\r\n%s" % (len(body), body))

    def echo_as(self, resource, watching, metadata):
        """A correct-looking list, or watch event, whose node metadata is
        `metadata(real)`: a wrong type that carries the token."""
        state = self.server.state
        if not watching:
            listed = self.list_of(resource, state.get(), None)
            for item in listed["items"]:
                item["metadata"] = metadata(item["metadata"])
            body = json.dumps(listed).encode()
            return self.put(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                            % (len(body), body))
        node = node_object("e-1")
        node["metadata"]["resourceVersion"] = str(state.current_version() + 1)
        node["metadata"] = metadata(node["metadata"])
        self.put(CHUNKED_HEAD + chunked(json.dumps({"type": "MODIFIED", "object": node}).encode() + b"\n"))
        self.hold(60)
        self.put(b"0\r\n\r\n")

    def raw_echo_string(self, resource, query, watching):
        self.echo_as(resource, watching, lambda m: self.token_header())

    def raw_echo_array(self, resource, query, watching):
        self.echo_as(resource, watching, lambda m: dict(m, name=[self.token_header()]))

    def raw_echo_object(self, resource, query, watching):
        self.echo_as(resource, watching, lambda m: dict(m, name={"x": self.token_header()}))

    def raw_echo_number(self, resource, query, watching):
        self.echo_as(resource, watching, lambda m: dict(m, name=12345, labels=self.token_header()))

    # -- auth -----------------------------------------------------------
    def identity(self, state):
        """The user and its denied permissions, or None (401)."""
        header = self.headers.get("Authorization", "")
        if header.startswith("Bearer "):
            token = header[len("Bearer "):].strip()
            if jwt_expired(token):
                return None  # as a real server: an expired token is no one
            latest = state.get("latest_token_file")
            if latest:
                try:
                    with open(latest) as f:
                        current, expiry = f.read().split()
                    if token == current and time.time() < float(expiry):
                        return ("system:serviceaccount:monitoring:prometheus", set())
                except (OSError, ValueError):
                    pass
            with MINTED_LOCK:
                minted = MINTED.get(token)
            if minted:
                return (minted[0], set()) if time.time() < minted[1] else None
            entry = state.get("tokens", {}).get(token)
            return (entry["user"], set(entry.get("deny", []))) if entry else None
        cert = self.connection.getpeercert() if hasattr(self.connection, "getpeercert") else None
        if cert:
            cn = dict(x[0] for x in cert.get("subject", ())).get("commonName")
            entry = state.get("client_users", {}).get(cn)
            if entry is not None:
                return (cn, set(entry.get("deny", [])))
        return None

    def do_POST(self):
        """The two reviews `promfed doctor` asks: who am I, and may I."""
        path = urlsplit(self.path).path
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}") if length <= 1 << 20 else {}
        state = self.server.state
        data = state.get()
        who = self.identity(data)
        if who is None:
            state.count("unauthorized")
            return self.send(401, status(401, "Unauthorized", "Unauthorized"))
        user, deny = who
        t = TOKEN_REQUEST.match(path)
        if t:
            return self.token_request(t.group(1), t.group(2), body, data)
        m = REVIEWS.match(path)
        if not m:
            return self.send(404, status(404, "NotFound", "the server could not find the requested resource"))
        group, version, kind = m.groups()
        # "reviews": ["authentication.k8s.io/v1"]: the versions this server
        # serves (a 1.27 server has only v1beta1 of SelfSubjectReview).
        served = data.get("reviews", ["authentication.k8s.io/v1", "authorization.k8s.io/v1"])
        if f"{group}/{version}" not in served:
            return self.send(404, status(404, "NotFound", "the server could not find the requested resource"))
        state.count(f"create_{kind}")
        if kind == "selfsubjectreviews":
            groups = ["system:serviceaccounts", "system:authenticated"] if user.startswith("system:serviceaccount:") else ["system:authenticated"]
            return self.send(201, {"kind": "SelfSubjectReview", "apiVersion": f"{group}/{version}",
                                   "status": {"userInfo": {"username": user, "groups": groups}}})
        spec = body.get("spec", {})
        if "nonResourceAttributes" in spec:
            attrs = spec["nonResourceAttributes"]
            asked = f'{attrs.get("verb")} {attrs.get("path")}'
        else:
            attrs = spec.get("resourceAttributes", {})
            sub = attrs.get("subresource") or ""
            asked = f'{attrs.get("verb")} {attrs.get("resource")}' + (f"/{sub}" if sub else "")
        namespace = attrs.get("namespace") or ""
        state.count(f"review {asked}" + (f" in {namespace}" if namespace else ""))
        allowed = asked not in deny
        answer = dict(body, status={"allowed": allowed})
        if not allowed:
            answer["status"]["reason"] = "no RBAC policy matched"
        return self.send(201, answer)

    def token_request(self, namespace, name, body, data):
        """A TokenRequest: only a caller allowed to mint for this account."""
        header = self.headers.get("Authorization", "")
        caller = header[len("Bearer "):].strip() if header.startswith("Bearer ") else ""
        entry = data.get("tokens", {}).get(caller, {})
        self.server.state.count("token_request")
        if f"{namespace}/{name}" not in entry.get("mint", []):
            self.server.state.count("token_request_forbidden")
            return self.send(403, status(403, "Forbidden",
                f'serviceaccounts "{name}" is forbidden: User "{entry.get("user", "unknown")}" cannot create resource '
                f'"serviceaccounts/token" in API group "" in the namespace "{namespace}"'))
        seconds = (body.get("spec") or {}).get("expirationSeconds", 3600)
        if not isinstance(seconds, int) or seconds < 600:
            return self.send(422, status(422, "Invalid", "spec.expirationSeconds: Invalid value: may not specify a duration less than 10 minutes"))
        lifetime = data.get("token_request_lifetime", seconds)
        user = f"system:serviceaccount:{namespace}:{name}"
        with MINTED_LOCK:
            MINT_COUNTER[0] += 1
            token = f"minted-{name}-{MINT_COUNTER[0]}"
            for old in [t for t, (u, _) in MINTED.items() if u == user]:
                del MINTED[old]
            MINTED[token] = (user, time.time() + lifetime)
        expires = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + lifetime))
        return self.send(201, {"kind": "TokenRequest", "apiVersion": "authentication.k8s.io/v1",
                               "metadata": {"name": name, "namespace": namespace},
                               "spec": body.get("spec", {}),
                               "status": {"token": token, "expirationTimestamp": expires}})

    def do_GET(self):
        url = urlsplit(self.path)
        path, query = url.path, parse_qs(url.query)
        state = self.server.state
        if path == "/_fake/requests":
            return self.send(200, state.counts)
        data = state.get()
        fail = data.get("fail")
        if fail == "hang":
            time.sleep(60)
            return
        if isinstance(fail, int):
            state.count("failed")
            return self.send(fail, status(fail, "InternalError", "fake failure" + self.echo()))
        faults = data.get("faults", {})
        if faults.get("redirect") and path.startswith("/api/"):
            state.count("redirected")
            self.send_response(302)
            self.send_header("Location", faults["redirect"] + path)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        who = self.identity(data)
        if who is None:
            state.count("unauthorized")
            return self.send(401, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                                   "message": "Unauthorized", "reason": "Unauthorized", "code": 401})
        user, deny = who
        self.route(path, query, data, user, deny)

    def route(self, path, query, data, user, deny):
        state = self.server.state
        ne = data.get("node_exporter") or {}
        nodes = data.get("nodes", [])

        if path == "/version":
            return self.send(200, {"major": "1", "minor": "31", "gitVersion": "v1.31.2", "platform": "linux/amd64"})
        if path == "/metrics":
            state.count("scrape_apiserver")
            if "get /metrics" in deny:
                return self.send(403, status(403, "Forbidden", f'forbidden: User "{user}" cannot get path "/metrics"'))
            return self.send(200, APISERVER_METRICS, EXPOSITION)

        m = CLUSTER_LIST.match(path)
        if m:
            resource = m.group(1)
            watching = query.get("watch", [""])[0] in ("true", "1")
            verb = "watch" if watching else "list"
            state.count(f"{verb}_{resource}")
            if f"{verb} {resource}" in deny:
                return self.forbidden(user, verb, resource, "at the cluster scope")
            if raw_fault(data, resource, watching):
                return self.raw(data["raw"]["case"], resource, query, watching)
            if watching:
                return self.watch(resource, query)
            faults = data.get("faults", {})
            if faults.get("huge_list_mb") and resource == "nodes":
                return self.send_huge(faults["huge_list_mb"])
            listed = self.list_of(resource, data, None)
            if faults.get("endless_continue"):
                listed["metadata"]["continue"] = "more-" + str(state.counts.get(f"{verb}_{resource}", 0))
            return self.send(200, shaped(listed, data))

        m = NAMESPACED_LIST.match(path)
        if m:
            namespace, resource = m.groups()
            verb = "watch" if query.get("watch", [""])[0] in ("true", "1") else "list"
            state.count(f"{verb}_{resource}")
            if f"{verb} {resource}" in deny:
                return self.forbidden(user, verb, resource, f'in the namespace "{namespace}"')
            if verb == "watch":
                return self.watch(resource, query, namespace)
            return self.send(200, shaped(self.list_of(resource, data, namespace), data))

        m = SLICES.match(path)
        if m:
            namespace = m.group(1)
            if data.get("no_endpointslices"):  # a server without discovery.k8s.io/v1
                state.count("list_endpointslices")
                return self.send(404, status(404, "NotFound", "the server could not find the requested resource"))
            scope = f'in the namespace "{namespace}"' if namespace else "at the cluster scope"
            if "list endpointslices" in deny:
                state.count("list_endpointslices")
                return self.forbidden(user, "list", "endpointslices", scope)
            wanted = query.get("labelSelector", [""])[0]
            # No selector lists every slice of the namespace (Prometheus's
            # endpointslice role); promfed selects its services'.
            if query.get("watch", [""])[0] in ("true", "1"):
                state.count("watch_endpointslices")
                state.count(f"watch_endpointslices {namespace}")
                if "watch endpointslices" in deny:
                    return self.forbidden(user, "watch", "endpointslices", scope)
                return self.watch("endpointslices", query, namespace, selector=wanted)
            state.count("list_endpointslices")
            state.count(f"list_endpointslices {namespace}")
            items = [sl for sl in state.objects.get("endpointslices", {}).values()
                     if namespace in (None, sl["metadata"].get("namespace"))
                     and selected(sl["metadata"].get("labels") or {}, wanted)]
            return self.send(200, shaped({"kind": "EndpointSliceList", "apiVersion": "discovery.k8s.io/v1",
                                          "metadata": {"resourceVersion": str(state.current_version())}, "items": items},
                                         data))

        m = MONITORS.match(path)
        if m:
            return self.monitors(m.group(1), m.group(2), query, data, user, deny)

        m = POD_ONE.match(path)
        if m:
            namespace, name = m.groups()
            state.count("get_pod")
            if "get pods" in deny:
                return self.forbidden(user, "get", "pods", f'in the namespace "{namespace}"')
            pod = objects_of(data)["pods"].get(f"{namespace}/{name}")
            if pod:
                return self.send(200, shaped(pod, data))
            return self.send(404, status(404, "NotFound", f'pods "{name}" not found'))

        m = ENDPOINTS_ONE.match(path)
        if m:
            namespace, name = m.groups()
            state.count("get_endpoints")
            if "get endpoints" in deny:
                return self.forbidden(user, "get", "endpoints", f'in the namespace "{namespace}"')
            if ne and ne.get("namespace") == namespace and ne.get("service") == name:
                return self.send(200, shaped(endpoints_object(ne), data))
            return self.send(404, status(404, "NotFound", f'endpoints "{name}" not found'))

        m = PROXY_NODE.match(path)
        if m:
            node, rest = m.group(1), m.group(2) or "/"
            state.count("proxy_node")
            if "get nodes/proxy" in deny:
                return self.forbidden(user, "get", "nodes/proxy", "at the cluster scope")
            if node not in nodes:
                return self.send(404, status(404, "NotFound", f'nodes "{node}" not found'))
            if node in data.get("unreachable_nodes", []):
                return self.send(503, status(503, "ServiceUnavailable",
                                             f"error trying to reach service: dial tcp 10.0.0.{nodes.index(node) + 10}:10250: i/o timeout"))
            if rest == "/metrics":
                return self.send(200, kubelet_metrics(node), EXPOSITION)
            if rest == "/metrics/cadvisor":
                big = data.get("oversized_cadvisor") or {}
                if node in big.get("nodes", []):
                    return self.send_big_exposition(cadvisor_metrics(node), big.get("megabytes", 40))
                return self.send(200, cadvisor_metrics(node), EXPOSITION)
            return self.send(404, "404 page not found\n", "text/plain")

        m = PROXY_POD.match(path)
        if m:
            namespace, scheme, pod, port, rest = m.group(1), m.group(2), m.group(3), m.group(4), m.group(5) or "/"
            state.count("proxy_pod")
            if "get pods/proxy" in deny:
                return self.forbidden(user, "get", "pods/proxy", f'in the namespace "{namespace}"')
            app = [p for p in data.get("pods", []) if p["namespace"] == namespace and p["name"] == pod]
            if app:
                # The scheme the path asked for, counted: an https pod is
                # reached through the `https:` form.
                state.count(f"proxy_pod {scheme or 'http'} {namespace}/{pod}{rest}")
                if str(port) not in [str(x) for x in app[0].get("ports", [])] + [app[0].get("annotations", {}).get("prometheus.io/port")]:
                    return self.send(503, status(503, "ServiceUnavailable", f"dial tcp 10.244.9.9:{port}: connect: connection refused"))
                return self.forward(app[0]["upstream"], rest)
            for ex in data.get("exporters", []):
                if ex["namespace"] == namespace and any(p["name"] == pod for p in ex.get("pods", [])):
                    state.count(f"proxy_pod {scheme or 'http'} {namespace}/{pod}{rest}")
                    return self.exporter_answer(ex, port, rest)
            pods = [p for p in ne.get("pods", []) if p["name"] == pod] if ne.get("namespace") == namespace else []
            if not pods:
                return self.send(404, status(404, "NotFound", f'pods "{pod}" not found'))
            if pod in data.get("failing_pods", []):
                state.count("proxy_pod_failed")
                return self.send(500, status(500, "InternalError", f'the fake fails pod "{pod}"'))
            if port not in (str(ne.get("port", 9100)), ne.get("port_name")):
                return self.send(503, status(503, "ServiceUnavailable",
                                             f'error trying to reach service: dial tcp {pod_ip(pods[0])}:{port}: connect: connection refused'))
            return self.forward(ne["upstream"], rest)

        m = PROXY_SERVICE.match(path)
        if m:
            namespace, service, port, rest = m.group(1), m.group(2), m.group(3), m.group(4) or "/"
            state.count("proxy_service")
            if "get services/proxy" in deny:
                return self.forbidden(user, "get", "services/proxy", f'in the namespace "{namespace}"')
            # "services": {"ns/name": {"upstream": "host:port", "ports": ["9090", "web"]}}:
            # a Service of its own (an in-cluster Prometheus); else node-exporter's.
            svc = data.get("services", {}).get(f"{namespace}/{service}")
            for ex in data.get("exporters", []):
                if ex["namespace"] == namespace and ex["service"] == service:
                    state.count(f"proxy_service {namespace}/{service}")
                    if not [p for p in ex.get("pods", []) if p.get("ready", True)]:
                        return self.send(503, status(503, "ServiceUnavailable",
                                                     f'no endpoints available for service "{service}"'))
                    return self.exporter_answer(ex, port, rest)
            if svc is None:
                return self.forward(ne["upstream"], rest)
            state.count(f"proxy_service {namespace}/{service}")
            if port not in svc.get("ports", []):
                return self.send(503, status(503, "ServiceUnavailable",
                                             f'no endpoints available for service "{service}:{port}"'))
            query = urlsplit(self.path).query
            return self.forward(svc["upstream"], rest + (f"?{query}" if query else ""))

        return self.send(404, status(404, "NotFound", "the server could not find the requested resource"))

    def monitors(self, namespace, resource, query, data, user, deny):
        """ServiceMonitors and PodMonitors: "monitors": {"servicemonitors":
        [...], "podmonitors": [...]}; a kind left out is a CRD not installed
        (404, as a server without monitoring.coreos.com/v1 answers)."""
        state = self.server.state
        watching = query.get("watch", [""])[0] in ("true", "1")
        verb = "watch" if watching else "list"
        state.count(f"{verb}_{resource}")
        if resource not in (data.get("monitors") or {}):
            return self.send(404, status(404, "NotFound", "the server could not find the requested resource"))
        scope = f'in the namespace "{namespace}"' if namespace else "at the cluster scope"
        if f"{verb} {resource}" in deny:
            return self.forbidden(user, verb, f"{resource}.monitoring.coreos.com", scope)
        wanted = query.get("labelSelector", [""])[0]
        if watching:
            return self.watch(resource, query, namespace, selector=wanted)
        items = [o for o in state.objects.get(resource, {}).values()
                 if namespace in (None, o["metadata"].get("namespace"))
                 and selected(o["metadata"].get("labels") or {}, wanted)]
        return self.send(200, shaped({"kind": MONITOR_KINDS[resource] + "List", "apiVersion": "monitoring.coreos.com/v1",
                                      "metadata": {"resourceVersion": str(state.current_version())}, "items": items},
                                     data))

    def exporter_answer(self, ex, port, rest):
        """An exporter behind the proxy: its port by name or number, and
        (auth "kube-rbac-proxy") the 401 that kube-rbac-proxy answers a
        request without a bearer token, which the API server's proxy
        always is: it strips Authorization."""
        if port not in [str(p["port"]) for p in ex.get("ports", [])] + [p.get("name") for p in ex.get("ports", [])]:
            return self.send(503, status(503, "ServiceUnavailable", f"dial tcp 10.244.7.7:{port}: connect: connection refused"))
        if ex.get("auth") == "kube-rbac-proxy":
            self.server.state.count("exporter_unauthorized")
            return self.send(401, "Unauthorized\n", "text/plain; charset=utf-8")
        query = urlsplit(self.path).query
        return self.forward(ex["upstream"], rest + (f"?{query}" if query else ""))

    def list_of(self, resource, data, namespace):
        ne = data.get("node_exporter") or {}
        kinds = {"nodes": "NodeList", "endpoints": "EndpointsList", "pods": "PodList", "services": "ServiceList"}
        items = []
        in_namespace = namespace in (None, ne.get("namespace"))
        if resource == "nodes":
            items = [node_object(n, data) for n in data.get("nodes", [])]
        elif ne and in_namespace and resource == "endpoints":
            items = [endpoints_object(ne)]
        elif resource == "pods":
            items = [pod_object(ne, p) for p in ne.get("pods", [])] if ne and in_namespace else []
            items += [app_pod_object(p) for p in data.get("pods", []) if namespace in (None, p["namespace"])]
        elif resource == "services":
            items = [service_object(ne)] if ne and in_namespace else []
        if resource in ("pods", "services"):
            make = exporter_pod if resource == "pods" else None
            for ex in data.get("exporters", []):
                if namespace in (None, ex["namespace"]):
                    items += [make(ex, p) for p in ex.get("pods", [])] if make else [exporter_service(ex)]
        version = str(self.server.state.current_version())
        return {"kind": kinds[resource], "apiVersion": "v1", "metadata": {"resourceVersion": version}, "items": items}

    def watch(self, resource, query, namespace=None, head=True, selector=""):
        """A chunked stream of events until timeoutSeconds; 410 for a
        resourceVersion older than the history. `namespace` limits it to
        that namespace's objects. `head=False`: the head was sent already
        (a raw fault's)."""
        def ours(obj):
            return ((namespace is None or obj["metadata"].get("namespace") == namespace)
                    and selected(obj["metadata"].get("labels") or {}, selector))
        state = self.server.state
        try:
            version = int(query.get("resourceVersion", ["0"])[0] or 0)
        except ValueError:
            return self.send(400, status(400, "BadRequest", "invalid resourceVersion"))
        timeout = min(int(query.get("timeoutSeconds", ["300"])[0]), 3600)
        bookmarks = query.get("allowWatchBookmarks", [""])[0] == "true"
        initial = query.get("sendInitialEvents", [""])[0] == "true"
        if initial:
            state.count(f"watch_list_{resource}")
            version = 0
        if state.since(resource, version) is None and head and not initial:
            return self.send(410, status(410, "Expired", f"too old resource version: {version}"))
        if head:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
        if state.get().get("faults", {}).get("expire_watches"):
            # What a real server says when its watch cache has moved on.
            state.count("watch_expired")
            self.chunk(json.dumps({"type": "ERROR", "object": status(410, "Expired", "too old resource version")}) + "\n")
            self.wfile.write(b"0\r\n\r\n")
            return
        deadline, last_bookmark = time.time() + timeout, time.time()
        if resource in state.get().get("silent_watches", []):
            # Open, and not a byte more: no event, no bookmark.
            state.count(f"watch_silent_{resource}")
            self.raw_deadline = deadline
            self.close_connection = True
            self.hold(timeout)
            return
        # Real servers send a bookmark about once a minute; tests want them sooner.
        bookmark_every = state.get().get("bookmark_seconds", 1)
        kinds = dict({"nodes": "Node", "endpoints": "Endpoints", "pods": "Pod", "services": "Service",
                      "endpointslices": "EndpointSlice"}, **MONITOR_KINDS)
        group = {"endpointslices": "discovery.k8s.io/v1", "servicemonitors": "monitoring.coreos.com/v1",
                 "podmonitors": "monitoring.coreos.com/v1"}
        try:
            if version == 0:  # "any version": the current objects, as ADDED
                state.get()
                version = state.current_version()
                for obj in objects_of(state.get())[resource].values():
                    if not ours(obj):
                        continue
                    obj["metadata"]["resourceVersion"] = str(version)
                    self.chunk(json.dumps({"type": "ADDED", "object": shaped(obj, state.get())}) + "\n")
                if initial:
                    self.chunk(json.dumps({"type": "BOOKMARK", "object": {
                        "kind": kinds[resource],
                        "apiVersion": group.get(resource, "v1"),
                        "metadata": {"resourceVersion": str(version),
                                     "annotations": {"k8s.io/initial-events-end": "true"}}}}) + "\n")
            while time.time() < deadline:
                if head and raw_fault(state.get(), resource, True) and namespace is None:
                    break  # ended, so that the client reopens it into the fault
                if state.get().get("faults", {}).get("fail_watches"):
                    self.chunk(json.dumps({"type": "ERROR", "object": status(500, "InternalError", "watch failed" + self.echo())}) + "\n")
                    break
                if state.get().get("faults", {}).get("expire_watches"):
                    state.count("watch_expired")
                    self.chunk(json.dumps({"type": "ERROR", "object": status(410, "Expired", "too old resource version")}) + "\n")
                    break
                seen = state.current_version()
                events = state.since(resource, version) or []
                for v, kind, obj in events:
                    if ours(obj):
                        self.chunk(json.dumps({"type": kind, "object": shaped(obj, state.get())}) + "\n")
                    version = v
                if bookmarks and time.time() - last_bookmark >= bookmark_every:
                    version = max(version, state.current_version())
                    self.chunk(json.dumps({"type": "BOOKMARK", "object": {
                        "kind": kinds[resource],
                        "apiVersion": group.get(resource, "v1"),
                        "metadata": {"resourceVersion": str(version)}}}) + "\n")
                    last_bookmark = time.time()
                next_bookmark = last_bookmark + bookmark_every if bookmarks else deadline
                state.wait_change(seen, min(next_bookmark, deadline) - time.time())
            self.wfile.write(b"0\r\n\r\n")
        except OSError:
            state.count("watch_gone")  # the client went away

    def count_bytes(self, n):
        """Bytes of discovery answers (lists and watches, not scrapes)."""
        if "/proxy/" not in self.path and not self.path.startswith(("/metrics", "/_fake")):
            self.server.state.add("discovery_bytes", n)

    def chunk(self, text):
        data = text.encode()
        self.count_bytes(len(data))
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def forward(self, upstream, path):
        try:
            with urllib.request.urlopen(f"http://{upstream}{path}", timeout=10) as r:
                return self.send(r.status, r.read().decode(), r.headers.get("Content-Type", EXPOSITION))
        except OSError as e:
            return self.send(503, status(503, "ServiceUnavailable", f"error trying to reach service: {e}"))


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 4096  # a thousand clusters connect at once

    def __init__(self, address, state, context):
        self.state = state
        self.context = context
        super().__init__(address, Handler)

    def get_request(self):
        sock, addr = super().get_request()
        # The handshake runs in the handler's thread, not in accept().
        return self.context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), addr

    def finish_request(self, request, client_address):
        try:
            request.do_handshake()
        except (ssl.SSLError, OSError):
            return  # a client that does not trust us, or went away
        super().finish_request(request, client_address)


def serve(args):
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(os.path.join(args.pki, "server.crt"), os.path.join(args.pki, "server.key"))
    context.load_verify_locations(os.path.join(args.pki, "ca.crt"))
    context.verify_mode = ssl.CERT_OPTIONAL  # tokens or client certificates
    if os.environ.get("FAKE_APISERVER_TLS_MAX") == "1.2":  # an older API server or proxy
        context.maximum_version = ssl.TLSVersion.TLSv1_2
    state = State(args.state)
    threading.Thread(target=state.follow_file, daemon=True).start()
    server = Server(("127.0.0.1", args.port), state, context)
    port = server.server_address[1]
    tmp = args.port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write(str(port))
    os.rename(tmp, args.port_file)
    server.serve_forever()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    pki = sub.add_parser("pki")
    pki.add_argument("dir")
    s = sub.add_parser("serve")
    s.add_argument("--pki", required=True)
    s.add_argument("--state", required=True)
    s.add_argument("--port-file", required=True)
    s.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    if args.command == "pki":
        make_pki(args.dir)
    else:
        serve(args)


if __name__ == "__main__":
    main()
