#!/usr/bin/env python3
"""Shows `gateway admin status` of a degraded cluster: counts, reasons, T_FD / T_FR / T_RT, P_FT.

    scripts/status-demo.py 6 64   # 6 nodes, RS(4,2): one killed, nothing to rebuild onto
    scripts/status-demo.py 7 1    # 7 nodes: before, during and after the rebuild (1 MiB/s)

Starts a local cluster (deploy/local-cluster.sh, repair delay 5 s), writes 12 objects of 1 MiB
with boto3, kill -9s the last node, prints the status at each stage, and stops the cluster.
Needs the release binaries (cargo build --release --workspace --bins) and boto3.
"""
import json, os, signal, subprocess, sys, tempfile, time
import boto3
repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
def sh(*a, **k):
    return subprocess.run(a, check=True, capture_output=True, text=True, **k).stdout
def admin(d, *args):
    info = json.load(open(f"{d}/cluster.json"))
    gw = [p for p in info["processes"] if p["role"] == "gateway"][0]
    return sh(f"{repo}/target/release/gateway", "admin", *args, "--config", gw["config"])
def status(d):
    return json.loads(admin(d, "status", "--json"))
def wait(pred, secs, what):
    end = time.time() + secs
    while time.time() < end:
        if pred(): return
        time.sleep(0.3)
    raise SystemExit(f"timeout waiting for {what}")
def run(n, rate):
    d = os.path.join(tempfile.gettempdir(), f"dmpstore-status-demo-{n}")
    subprocess.run(["rm", "-rf", d])
    sh(f"{repo}/deploy/local-cluster.sh", "up", d, "--nodes", str(n), "--gateways", "1",
       "--repair-delay", "5", "--repair-rate", str(rate))
    try:
        info = json.load(open(f"{d}/cluster.json"))
        s3 = boto3.client("s3", endpoint_url=info["s3_endpoints"][0], region_name=info["region"],
                          aws_access_key_id=info["access_key"], aws_secret_access_key=info["secret_key"])
        s3.create_bucket(Bucket="demo")
        for i in range(12):
            s3.put_object(Bucket="demo", Key=f"segment-{i:02}.parquet", Body=os.urandom(1 << 20))
        print(f"===== {n} nodes, 12 objects of 1 MiB, before the failure =====")
        print(admin(d, "status"))
        victim = [p for p in info["processes"] if p["role"] == "storage-node"][-1]
        os.kill(victim["pid"], signal.SIGKILL)
        t0 = time.time()
        if n == 6:
            wait(lambda: status(d)["degraded"]["versions"] == 12 and "spare" in json.dumps(status(d)["degraded"]["by_reason"]), 90, "census")
            print(f"===== 6 nodes, {victim['id']} killed {time.time()-t0:.0f} s ago =====")
            print(admin(d, "status"))
        else:
            wait(lambda: status(d)["repair_queued"] > 0 or status(d)["degraded"]["versions"] > 0 and status(d)["repair_rate_bytes_per_s"] > 0, 90, "rebuild start")
            print(f"===== 7 nodes, {victim['id']} killed, during the rebuild ({time.time()-t0:.0f} s) =====")
            print(admin(d, "status"))
            wait(lambda: status(d)["degraded"]["versions"] == 0 and status(d)["last_t_fr_ms"] is not None, 120, "rebuilt")
            print(f"===== 7 nodes, after the rebuild ({time.time()-t0:.0f} s) =====")
            print(admin(d, "status"))
    finally:
        subprocess.run([f"{repo}/deploy/local-cluster.sh", "down", d], capture_output=True)
run(int(sys.argv[1]), int(sys.argv[2]))
