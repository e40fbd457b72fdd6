#!/usr/bin/env python3
"""Structural checks of the deployment artifacts that no registry tool makes; run by
scripts/check-deploy.sh (with the venv's python, which has PyYAML).

  checks.py dashboard DASHBOARD.json EXPRS_OUT   JSON shape; writes every PromQL query
  checks.py metric-names NAMES_FILE SRC.rs...    every name is registered in the sources
  checks.py k8s-refs MANIFEST.yaml...            ConfigMaps, Secrets and keys that pods use exist
  checks.py compose-mounts RESOLVED.yaml         bind-mount sources of `compose config` exist
  checks.py toml FILE [NODE_ID]                  parses; no @PLACEHOLDER@ left; node_id
  checks.py docs README.md FILE...               the README names every artifact (by its
                                                 path relative to the README)
"""
import json
import os
import re
import sys
import tomllib

import yaml

failures = []


def fail(msg):
    failures.append(msg)
    print(f"  FAIL: {msg}", file=sys.stderr)


def dashboard(path, exprs_out):
    with open(path) as f:
        d = json.load(f)
    for key in ("uid", "title", "panels", "schemaVersion"):
        if key not in d:
            fail(f"{path}: no '{key}'")
    ids, exprs = set(), []

    def walk(panels):
        for p in panels:
            if p.get("id") in ids:
                fail(f"{path}: panel id {p.get('id')} used twice")
            ids.add(p.get("id"))
            gp = p.get("gridPos", {})
            if not all(isinstance(gp.get(k), int) for k in ("x", "y", "w", "h")):
                fail(f"{path}: panel '{p.get('title')}' has no complete gridPos")
            elif gp["x"] + gp["w"] > 24:
                fail(f"{path}: panel '{p.get('title')}' is wider than the 24-column grid")
            if p.get("type") != "row":
                targets = p.get("targets") or []
                if not targets:
                    fail(f"{path}: panel '{p.get('title')}' has no queries")
                for t in targets:
                    if not t.get("expr"):
                        fail(f"{path}: panel '{p.get('title')}' target {t.get('refId')} has no expr")
                    else:
                        exprs.append(t["expr"])
            walk(p.get("panels") or [])

    walk(d.get("panels", []))
    with open(exprs_out, "w") as f:
        for e in exprs:
            f.write(e.replace("\n", " ") + "\n")
    print(f"  {path}: {len(ids)} panels, {len(exprs)} queries")


def metric_names(names_file, sources):
    registered = set()
    for src in sources:
        with open(src) as f:
            registered |= set(re.findall(r'"(dmpstore_[a-z0-9_]+)"', f.read()))
    # Histograms expose NAME_bucket, NAME_sum and NAME_count.
    exposed = set(registered)
    for n in registered:
        exposed |= {n + "_bucket", n + "_sum", n + "_count"}
    builtin = {"up", "scrape_duration_seconds", "scrape_samples_scraped"}
    with open(names_file) as f:
        used = [line.strip() for line in f if line.strip()]
    for n in used:
        if n not in exposed and n not in builtin:
            fail(f"metric {n} is used but registered in none of {', '.join(sources)}")
    if not failures:
        print(f"  {len(used)} metric names used, all registered in the sources")


def name_of(m):
    return m.get("metadata", {}).get("name")


def k8s_refs(paths):
    docs = []
    for p in paths:
        with open(p) as f:
            docs += [d for d in yaml.safe_load_all(f) if d]
    cms = {name_of(d): d for d in docs if d.get("kind") == "ConfigMap"}
    secrets = {name_of(d): d for d in docs if d.get("kind") == "Secret"}
    services = {name_of(d): d for d in docs if d.get("kind") == "Service"}

    def keys(obj):
        return set((obj.get("data") or {}).keys()) | set((obj.get("stringData") or {}).keys())

    for d in docs:
        if d.get("kind") not in ("StatefulSet", "Deployment"):
            continue
        name = f"{d['kind']}/{name_of(d)}"
        spec = d["spec"]["template"]["spec"]
        labels = d["spec"]["template"]["metadata"]["labels"]
        if d["spec"]["selector"]["matchLabels"].items() - labels.items():
            fail(f"{name}: selector does not match the pod labels")
        if d["kind"] == "StatefulSet":
            svc = services.get(d["spec"]["serviceName"])
            if not svc or svc["spec"].get("clusterIP") != "None":
                fail(f"{name}: serviceName {d['spec']['serviceName']} is no headless Service")
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        claims = {c["metadata"]["name"] for c in d["spec"].get("volumeClaimTemplates", [])}
        for c in spec["containers"]:
            ports = {p["name"] for p in c.get("ports", [])}
            for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
                port = (c.get(probe) or {}).get("httpGet", {}).get("port")
                if isinstance(port, str) and port not in ports:
                    fail(f"{name}: {probe} port {port} is not a container port")
            if not c.get("readinessProbe") or not c.get("livenessProbe"):
                fail(f"{name}: container {c['name']} lacks a liveness or readiness probe")
            mounts = {}
            for m in c.get("volumeMounts", []):
                if m["name"] not in volumes and m["name"] not in claims:
                    fail(f"{name}: volumeMount {m['name']} has no volume")
                mounts[m["name"]] = m["mountPath"]
            files = set()
            for vname, v in volumes.items():
                src = v.get("configMap") or v.get("secret")
                if not src:
                    continue
                kind, store = ("configMap", cms) if "configMap" in v else ("secret", secrets)
                ref = src.get("name") or src.get("secretName")
                obj = store.get(ref)
                if obj is None:
                    fail(f"{name}: volume {vname} uses {kind} {ref}, which is not defined")
                    continue
                items = src.get("items")
                for it in items or []:
                    if it["key"] not in keys(obj):
                        fail(f"{name}: volume {vname}: {kind} {ref} has no key {it['key']}")
                names = [it["path"] for it in items] if items else keys(obj)
                if vname in mounts:
                    files |= {f"{mounts[vname]}/{n}" for n in names}
            for e in c.get("env", []):
                if e["name"].endswith("_FILE") or e["name"] == "DMPSTORE_CONFIG_TEMPLATE":
                    if e.get("value") not in files:
                        fail(f"{name}: {e['name']}={e.get('value')} is no file of a mounted ConfigMap or Secret")
    for d in docs:
        if d.get("kind") == "PodDisruptionBudget":
            sel = d["spec"]["selector"]["matchLabels"].items()
            if not any(sel <= w["spec"]["template"]["metadata"]["labels"].items()
                       for w in docs if w.get("kind") in ("StatefulSet", "Deployment")):
                fail(f"PodDisruptionBudget/{name_of(d)} selects no workload")
    for d in services.values():
        sel = (d["spec"].get("selector") or {}).items()
        if not any(sel <= w["spec"]["template"]["metadata"]["labels"].items()
                   for w in docs if w.get("kind") in ("StatefulSet", "Deployment")):
            fail(f"Service/{name_of(d)} selects no workload")
        for port in d["spec"].get("ports", []):
            target = port.get("targetPort")
            if isinstance(target, str) and not any(
                    target in {p.get("name") for c in w["spec"]["template"]["spec"]["containers"]
                               for p in c.get("ports", [])}
                    for w in docs if w.get("kind") in ("StatefulSet", "Deployment")
                    and sel <= w["spec"]["template"]["metadata"]["labels"].items()):
                fail(f"Service/{name_of(d)}: targetPort {target} is no container port")
    print(f"  {len(docs)} objects cross-checked")


def compose_mounts(path):
    with open(path) as f:
        project = yaml.safe_load(f)
    n = 0
    for sname, s in project["services"].items():
        for v in s.get("volumes", []):
            if v.get("type") == "bind":
                n += 1
                if not os.path.exists(v["source"]):
                    fail(f"compose service {sname}: bind source {v['source']} does not exist")
    print(f"  {n} bind mounts exist")


def toml_file(path, node_id=None):
    with open(path) as f:
        text = f.read()
    left = re.findall(r"@[A-Z][A-Z0-9_]*@", text)
    if left:
        fail(f"{path}: placeholders left: {left}")
    try:
        cfg = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        fail(f"{path}: {e}")
        return
    if node_id is not None and cfg.get("node_id") != int(node_id):
        fail(f"{path}: node_id {cfg.get('node_id')}, expected {node_id}")


def docs(readme, files):
    with open(readme) as f:
        text = f.read()
    base = os.path.dirname(readme)
    for p in files:
        if os.path.relpath(p, base) not in text:
            fail(f"{readme} does not mention {p}")


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    {
        "dashboard": lambda: dashboard(*args),
        "metric-names": lambda: metric_names(args[0], args[1:]),
        "k8s-refs": lambda: k8s_refs(args),
        "compose-mounts": lambda: compose_mounts(*args),
        "toml": lambda: toml_file(*args),
        "docs": lambda: docs(args[0], args[1:]),
    }[cmd]()
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
