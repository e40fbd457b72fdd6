#!/usr/bin/env python3
"""Client matrix: drives a running dmpstore cluster with real S3 clients.

Usage: matrix.py CLUSTER_JSON [client ...]   (clients: awscli boto3 rclone s3cmd; default all)

Each client uploads (single and multipart), downloads (whole and ranged where the client can),
lists, copies and deletes, and every byte is compared. Prints one line per client and exits
non-zero if any client failed. Run by tests/tests/clients.rs, over HTTPS: every client trusts
only the cluster's test CA (`ca_bundle` in cluster.json); plain HTTP works the same way when
cluster.json has no `ca_bundle`.
"""
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import traceback

MIB = 1024 * 1024
TIMEOUT = 300


def data(seed, size):
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(f"{seed}-{counter}".encode()).digest() * 128
        counter += 1
    return bytes(out[:size])


def run(cmd, env=None, input=None):
    res = subprocess.run(cmd, env=env, input=input, capture_output=True, timeout=TIMEOUT)
    if res.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({res.returncode}):\n{res.stdout.decode()[-2000:]}\n{res.stderr.decode()[-2000:]}")
    return res.stdout


def write(path, payload):
    with open(path, "wb") as f:
        f.write(payload)
    return path


def read(path):
    with open(path, "rb") as f:
        return f.read()


def expect(cond, what):
    if not cond:
        raise AssertionError(what)


class Cluster:
    def __init__(self, path):
        info = json.load(open(path))
        self.endpoint = info["s3_endpoints"][0]
        self.endpoints = info["s3_endpoints"]
        self.access_key = info["access_key"]
        self.secret_key = info["secret_key"]
        self.region = info["region"]
        # The test CA when the gateways serve HTTPS (deploy/local-cluster.sh --tls), else None.
        self.ca_bundle = info.get("ca_bundle")
        self.https = self.endpoint.startswith("https://")

    def boto3(self, endpoint=None):
        import boto3
        from botocore.config import Config
        return boto3.client(
            "s3", endpoint_url=endpoint or self.endpoint, aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key, region_name=self.region, verify=self.verify(),
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 2}))

    def verify(self):
        """boto3's `verify`: the test CA's path, or the default."""
        return self.ca_bundle if self.ca_bundle else None

    def boto3_resource(self):
        import boto3
        from botocore.config import Config
        return boto3.resource(
            "s3", endpoint_url=self.endpoint, aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key, region_name=self.region, verify=self.verify(),
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 2}))


def check_awscli(c, tmp):
    cfg = write(os.path.join(tmp, "aws.cfg"),
                f"[default]\nregion = {c.region}\ns3 =\n  multipart_threshold = 5MB\n  multipart_chunksize = 5MB\n  addressing_style = path\n".encode())
    env = dict(os.environ, AWS_ACCESS_KEY_ID=c.access_key, AWS_SECRET_ACCESS_KEY=c.secret_key,
               AWS_CONFIG_FILE=cfg, AWS_SHARED_CREDENTIALS_FILE=os.path.join(tmp, "none"))
    aws = ["aws", "--endpoint-url", c.endpoint] + (["--ca-bundle", c.ca_bundle] if c.ca_bundle else [])
    small, big = data(1, 1000), data(2, 12 * MIB + 3)
    run(aws + ["s3", "mb", "s3://cli"], env)
    run(aws + ["s3", "cp", write(os.path.join(tmp, "small"), small), "s3://cli/dir/small"], env)
    run(aws + ["s3", "cp", write(os.path.join(tmp, "big"), big), "s3://cli/dir/big"], env)
    head = json.loads(run(aws + ["s3api", "head-object", "--bucket", "cli", "--key", "dir/big"], env))
    expect(head["ETag"].strip('"').endswith("-3"), f"12 MiB upload was not multipart: {head['ETag']}")
    run(aws + ["s3", "cp", "s3://cli/dir/big", os.path.join(tmp, "big.back")], env)
    expect(read(os.path.join(tmp, "big.back")) == big, "aws s3 cp download differs")
    run(aws + ["s3api", "get-object", "--bucket", "cli", "--key", "dir/big", "--range", "bytes=5242870-5242889", os.path.join(tmp, "range")], env)
    expect(read(os.path.join(tmp, "range")) == big[5242870:5242890], "ranged get-object differs")
    listing = run(aws + ["s3", "ls", "s3://cli/dir/"], env).decode()
    expect("small" in listing and "big" in listing, f"aws s3 ls: {listing}")
    run(aws + ["s3", "cp", "s3://cli/dir/big", "s3://cli/copy/big"], env)
    copied = json.loads(run(aws + ["s3api", "head-object", "--bucket", "cli", "--key", "copy/big"], env))
    expect(copied["ETag"] == head["ETag"], "copy changed the ETag")
    # sync twice: the second run must find nothing to do.
    src = os.path.join(tmp, "syncdir")
    os.makedirs(os.path.join(src, "sub"))
    for i in range(5):
        write(os.path.join(src, "sub" if i % 2 else "", f"f{i}"), data(10 + i, 3000 * (i + 1)))
    write(os.path.join(src, "large"), data(20, 6 * MIB))
    run(aws + ["s3", "sync", src, "s3://cli/sync"], env)
    again = run(aws + ["s3", "sync", src, "s3://cli/sync"], env).decode()
    expect(again.strip() == "", f"second sync uploaded again: {again}")
    run(aws + ["s3", "rm", "--recursive", "s3://cli/dir"], env)
    left = json.loads(run(aws + ["s3api", "list-objects-v2", "--bucket", "cli", "--prefix", "dir/"], env) or b"{}")
    expect(left.get("KeyCount", 0) == 0, f"objects left after rm: {left}")
    return "cp (single, multipart), ranged get-object, ls, copy (same ETag), sync x2 (idempotent), rm"


def check_boto3(c, tmp):
    from boto3.s3.transfer import TransferConfig
    s3 = c.boto3()
    other = c.boto3(c.endpoints[-1])
    s3.create_bucket(Bucket="boto")
    small, big = data(3, 5000), data(4, 11 * MIB)
    s3.put_object(Bucket="boto", Key="small", Body=small, ContentType="text/plain")
    cfg = TransferConfig(multipart_threshold=5 * MIB, multipart_chunksize=5 * MIB)
    s3.upload_file(write(os.path.join(tmp, "b"), big), "boto", "big", Config=cfg)
    etag = other.head_object(Bucket="boto", Key="big")["ETag"]
    expect(etag.strip('"').endswith("-3"), f"upload_file was not multipart: {etag}")
    expect(other.get_object(Bucket="boto", Key="big")["Body"].read() == big, "get_object differs")
    rng = other.get_object(Bucket="boto", Key="big", Range="bytes=100-199")
    expect(rng["ContentRange"] == f"bytes 100-199/{len(big)}" and rng["Body"].read() == big[100:200], "ranged get differs")
    s3.download_file("boto", "big", os.path.join(tmp, "b.back"), Config=cfg)
    expect(read(os.path.join(tmp, "b.back")) == big, "download_file differs")
    keys = [o["Key"] for p in s3.get_paginator("list_objects_v2").paginate(Bucket="boto", PaginationConfig={"PageSize": 1}) for o in p.get("Contents", [])]
    expect(keys == ["big", "small"], f"paginated list: {keys}")
    s3.copy_object(Bucket="boto", Key="small-copy", CopySource={"Bucket": "boto", "Key": "small"})
    s3.copy({"Bucket": "boto", "Key": "big"}, "boto", "big-copy", Config=cfg)
    expect(s3.get_object(Bucket="boto", Key="big-copy")["Body"].read() == big, "managed copy differs")
    out = s3.delete_objects(Bucket="boto", Delete={"Objects": [{"Key": k} for k in ["small", "small-copy", "big", "big-copy"]]})
    expect(len(out.get("Deleted", [])) == 4, f"delete_objects: {out}")
    expect(s3.list_objects_v2(Bucket="boto")["KeyCount"] == 0, "objects left")
    s3.delete_bucket(Bucket="boto")

    # Versioning: the calls boto3 users make, and bucket.object_versions.delete() emptying it.
    s3.create_bucket(Bucket="boto-ver")
    s3.put_bucket_versioning(Bucket="boto-ver", VersioningConfiguration={"Status": "Enabled"})
    expect(other.get_bucket_versioning(Bucket="boto-ver").get("Status") == "Enabled", "versioning status")
    v1 = s3.put_object(Bucket="boto-ver", Key="seg", Body=small)["VersionId"]
    v2 = other.put_object(Bucket="boto-ver", Key="seg", Body=big[:100_000])["VersionId"]
    expect(s3.get_object(Bucket="boto-ver", Key="seg", VersionId=v1)["Body"].read() == small, "get by VersionId")
    marker = s3.delete_object(Bucket="boto-ver", Key="seg")
    expect(marker.get("DeleteMarker") is True, f"delete marker: {marker}")
    pages = s3.get_paginator("list_object_versions").paginate(Bucket="boto-ver", PaginationConfig={"PageSize": 1})
    listed = [(v["VersionId"], v["IsLatest"]) for p in pages for v in p.get("Versions", []) + p.get("DeleteMarkers", [])]
    expect(sorted(listed) == sorted([(v1, False), (v2, False), (marker["VersionId"], True)]), f"versions: {listed}")
    c.boto3_resource().Bucket("boto-ver").object_versions.delete()
    s3.delete_bucket(Bucket="boto-ver")
    return ("put_object, upload_file (multipart), get (whole, ranged), download_file, paginate, copy_object, managed copy, "
            "delete_objects, delete_bucket, versioning (enable, get by VersionId, delete marker, paginated "
            "list_object_versions, object_versions.delete)")


def check_rclone(c, tmp):
    # rclone refuses a custom CA bundle on plain HTTP; drop one inherited from the environment
    # and pass the cluster's own (--ca-cert) over HTTPS.
    base = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}
    env = dict(base, RCLONE_CONFIG=os.path.join(tmp, "rclone.conf"),
               RCLONE_CONFIG_DMP_TYPE="s3", RCLONE_CONFIG_DMP_PROVIDER="Other",
               RCLONE_CONFIG_DMP_ENDPOINT=c.endpoint, RCLONE_CONFIG_DMP_ACCESS_KEY_ID=c.access_key,
               RCLONE_CONFIG_DMP_SECRET_ACCESS_KEY=c.secret_key, RCLONE_CONFIG_DMP_REGION=c.region,
               RCLONE_CONFIG_DMP_FORCE_PATH_STYLE="true")
    rc = ["rclone", "--s3-upload-cutoff", "5M", "--s3-chunk-size", "5M", "--retries", "1"]
    if c.ca_bundle:
        rc += ["--ca-cert", c.ca_bundle]
    src = os.path.join(tmp, "rsrc")
    os.makedirs(os.path.join(src, "d"))
    for i in range(4):
        write(os.path.join(src, "d" if i % 2 else "", f"f{i}"), data(30 + i, 700 * (i + 1)))
    big = write(os.path.join(src, "big"), data(40, 12 * MIB))
    run(rc + ["mkdir", "dmp:rclone"], env)
    run(rc + ["copy", src, "dmp:rclone/data"], env)
    run(rc + ["check", src, "dmp:rclone/data"], env)
    write(os.path.join(src, "f0"), data(50, 900))  # change one file, then sync
    os.remove(os.path.join(src, "d", "f1"))
    run(rc + ["sync", src, "dmp:rclone/data"], env)
    run(rc + ["check", src, "dmp:rclone/data"], env)
    part = run(rc + ["cat", "--offset", "5242870", "--count", "20", "dmp:rclone/data/big"], env)
    expect(part == read(big)[5242870:5242890], "rclone cat range differs")
    files = sorted(run(rc + ["lsf", "-R", "dmp:rclone/data"], env).decode().split())
    expect(files == ["big", "d/", "d/f3", "f0", "f2"], f"rclone lsf: {files}")
    run(rc + ["copyto", "dmp:rclone/data/big", "dmp:rclone/copy/big"], env)
    run(rc + ["check", "--one-way", os.path.join(src, "big"), "dmp:rclone/copy/"], env)
    run(rc + ["delete", "dmp:rclone/data"], env)
    expect(run(rc + ["lsf", "-R", "dmp:rclone/data"], env).strip() == b"", "files left after delete")
    return "copy (single, multipart), check, sync (change+delete), cat with offset, lsf, server-side copyto, delete"


def check_s3cmd(c, tmp):
    host = c.endpoint.split("://", 1)[1]
    tls = f"use_https = True\nca_certs_file = {c.ca_bundle}\ncheck_ssl_certificate = True\n" if c.https else "use_https = False\n"
    cfg = write(os.path.join(tmp, "s3cmd.cfg"), (
        f"[default]\naccess_key = {c.access_key}\nsecret_key = {c.secret_key}\nhost_base = {host}\n"
        f"host_bucket = {host}\n{tls}bucket_location = {c.region}\nsignature_v2 = False\n"
        "multipart_chunk_size_mb = 5\n").encode())
    s = ["s3cmd", "-c", cfg]
    small, big = data(60, 2000), data(61, 11 * MIB)
    run(s + ["mb", "s3://s3cmd"])
    run(s + ["put", write(os.path.join(tmp, "s"), small), "s3://s3cmd/small"])
    run(s + ["put", write(os.path.join(tmp, "b"), big), "s3://s3cmd/big"])
    etag = c.boto3().head_object(Bucket="s3cmd", Key="big")["ETag"]
    expect(etag.strip('"').endswith("-3"), f"11 MiB put was not multipart: {etag}")
    run(s + ["get", "--force", "s3://s3cmd/big", os.path.join(tmp, "b.back")])
    expect(read(os.path.join(tmp, "b.back")) == big, "s3cmd get differs")
    info = run(s + ["info", "s3://s3cmd/big"]).decode()
    expect("File size: 11534336" in info, f"s3cmd info: {info}")
    listing = run(s + ["ls", "s3://s3cmd/"]).decode()
    expect("s3://s3cmd/small" in listing and "s3://s3cmd/big" in listing, listing)
    run(s + ["cp", "s3://s3cmd/small", "s3://s3cmd/small-copy"])
    run(s + ["get", "--force", "s3://s3cmd/small-copy", os.path.join(tmp, "s.back")])
    expect(read(os.path.join(tmp, "s.back")) == small, "s3cmd copy differs")
    run(s + ["del", "s3://s3cmd/small", "s3://s3cmd/small-copy", "s3://s3cmd/big"])
    expect(run(s + ["ls", "s3://s3cmd/"]).strip() == b"", "objects left")
    run(s + ["rb", "s3://s3cmd"])
    return "put (single, multipart), get, info, ls, cp, del, rb (s3cmd has no ranged get)"


def check_virtual_host(c, tmp):
    """A SigV4 request signed for vhost.localhost:PORT, sent to 127.0.0.1 with that Host header
    (no DNS needed), must address bucket `vhost`; path-style keeps working beside it."""
    import http.client
    import ssl
    import urllib.parse
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials
    port = urllib.parse.urlparse(c.endpoint).port
    s3 = c.boto3()
    s3.create_bucket(Bucket="vhost")
    expect(s3.get_bucket_location(Bucket="vhost").get("LocationConstraint") in (None, ""), "GetBucketLocation for us-east-1")
    creds = Credentials(c.access_key, c.secret_key)

    def send(method, path, payload=b""):
        scheme = "https" if c.https else "http"
        req = AWSRequest(method=method, url=f"{scheme}://vhost.localhost:{port}{path}", data=payload,
                         headers={"x-amz-content-sha256": hashlib.sha256(payload).hexdigest()})
        SigV4Auth(creds, "s3", c.region).add_auth(req)
        if c.https:
            # Verified against the test CA; the certificate names 127.0.0.1 and *.localhost.
            ctx = ssl.create_default_context(cafile=c.ca_bundle)
            conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=30, context=ctx)
        else:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request(method, path, body=payload, headers={"Host": f"vhost.localhost:{port}", **dict(req.headers.items())})
        r = conn.getresponse()
        return r.status, r.read()

    body = data(70, 3000)
    status, out = send("PUT", "/dir/obj", body)
    expect(status == 200, f"virtual-hosted PUT: {status} {out[:300]}")
    status, got = send("GET", "/dir/obj")
    expect(status == 200 and got == body, f"virtual-hosted GET: {status}")
    expect(s3.get_object(Bucket="vhost", Key="dir/obj")["Body"].read() == body, "path-style read of a virtual-hosted write")
    status, listing = send("GET", "/?list-type=2&prefix=dir%2F")
    expect(status == 200 and b"<Key>dir/obj</Key>" in listing, f"virtual-hosted list: {status} {listing[:300]}")
    return "PUT, GET, ListObjectsV2 as BUCKET.localhost beside path-style; GetBucketLocation"


CHECKS = {"awscli": check_awscli, "boto3": check_boto3, "rclone": check_rclone, "s3cmd": check_s3cmd,
          "virtual-host": check_virtual_host}


def main():
    cluster = Cluster(sys.argv[1])
    names = sys.argv[2:] or list(CHECKS)
    failed = 0
    for name in names:
        with tempfile.TemporaryDirectory() as tmp:
            try:
                what = CHECKS[name](cluster, tmp)
                print(f"PASS {name}: {what}", flush=True)
            except Exception:
                failed += 1
                print(f"FAIL {name}:\n{traceback.format_exc()}", flush=True)
    print(f"client matrix: {len(names) - failed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
