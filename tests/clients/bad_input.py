#!/usr/bin/env python3
"""Bad input against a running dmpstore gateway, over raw sockets: each case must get a clear
error (or a closed connection) and lose nothing, and the gateway must keep serving.

Usage: bad_input.py CLUSTER_JSON. Prints one line per case; exits non-zero on any failure.
Run by tests/tests/bad_input.rs.
"""
import hashlib
import json
import socket
import sys
import urllib.parse

import boto3
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials


def main():
    c = json.load(open(sys.argv[1]))
    endpoint = c["s3_endpoints"][0]
    host, port = urllib.parse.urlparse(endpoint).hostname, urllib.parse.urlparse(endpoint).port
    creds = Credentials(c["access_key"], c["secret_key"])
    s3 = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=c["access_key"],
                      aws_secret_access_key=c["secret_key"], region_name=c["region"],
                      config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}))

    def signed(method, path, body=b"", extra=None, declared_length=None):
        headers = {"x-amz-content-sha256": hashlib.sha256(body).hexdigest(), **(extra or {})}
        req = AWSRequest(method=method, url=f"{endpoint}{path}", data=body, headers=headers)
        SigV4Auth(creds, "s3", c["region"]).add_auth(req)
        length = len(body) if declared_length is None else declared_length
        head = f"{method} {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Length: {length}\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in req.headers.items() if k.lower() != "host")
        return head.encode() + b"\r\n"

    def exchange(raw, body=b"", close_after_send=False):
        s = socket.create_connection((host, port), timeout=30)
        s.sendall(raw + body)
        if close_after_send:
            s.shutdown(socket.SHUT_WR)
        out = b""
        try:
            while chunk := s.recv(65536):
                out += chunk
                if b"\r\n\r\n" in out and (b"</Error>" in out or b"Content-Length: 0" in out):
                    break
        except (ConnectionResetError, socket.timeout):
            pass
        s.close()
        return out

    def status(resp):
        try:
            return int(resp.split(b" ", 2)[1])
        except (IndexError, ValueError):
            return None

    def still_serving():
        s3.head_bucket(Bucket="bad")

    failures = 0

    def case(name, fn):
        nonlocal failures
        try:
            detail = fn()
            still_serving()
            print(f"PASS {name}: {detail}", flush=True)
        except Exception as e:  # noqa: BLE001 - every failure is reported
            failures += 1
            print(f"FAIL {name}: {e!r}", flush=True)

    s3.create_bucket(Bucket="bad")
    s3.put_object(Bucket="bad", Key="keep", Body=b"precious")
    upload = s3.create_multipart_upload(Bucket="bad", Key="mpu")["UploadId"]
    s3.upload_part(Bucket="bad", Key="mpu", UploadId=upload, PartNumber=1, Body=b"part")

    def malformed_complete():
        body = b"<CompleteMultipartUpload><Part><PartNumber>1</Part"
        resp = exchange(signed("POST", f"/bad/mpu?uploadId={upload}", body), body)
        assert status(resp) == 400 and b"MalformedXML" in resp, resp[:400]
        assert any(u["UploadId"] == upload for u in s3.list_multipart_uploads(Bucket="bad").get("Uploads", []))
        return "400 MalformedXML, the upload is intact"

    def malformed_delete():
        body = b"<Delete><Object><Key>keep</Key></Object"
        md5 = __import__("base64").b64encode(hashlib.md5(body).digest()).decode()
        resp = exchange(signed("POST", "/bad?delete", body, {"Content-MD5": md5}), body)
        assert status(resp) == 400 and b"MalformedXML" in resp, resp[:400]
        assert s3.get_object(Bucket="bad", Key="keep")["Body"].read() == b"precious"
        return "400 MalformedXML, nothing deleted"

    def truncated_body():
        body = b"x" * 1000
        exchange(signed("PUT", "/bad/truncated", body, declared_length=1_000_000), body, close_after_send=True)
        try:
            s3.head_object(Bucket="bad", Key="truncated")
            raise AssertionError("a truncated PUT created an object")
        except s3.exceptions.ClientError as e:
            assert e.response["ResponseMetadata"]["HTTPStatusCode"] == 404
        return "connection closed mid-body: no object"

    def oversized_headers():
        raw = signed("GET", "/bad/keep", extra={"x-amz-meta-big": "v" * 200_000})
        resp = exchange(raw)
        assert status(resp) in (400, 431, None), resp[:200]
        return f"answered {status(resp) or 'by closing the connection'}"

    def garbage_request():
        resp = exchange(b"\x16\x03\x01\x02\x00 not http at all\r\n\r\n")
        assert status(resp) in (400, None), resp[:200]
        return f"answered {status(resp) or 'by closing the connection'}"

    def bad_part_number():
        resp = exchange(signed("PUT", f"/bad/mpu?uploadId={upload}&partNumber=0", b"x"), b"x")
        assert status(resp) == 400, resp[:300]
        return "400 for part number 0"

    for name, fn in [("malformed CompleteMultipartUpload XML", malformed_complete),
                     ("malformed DeleteObjects XML", malformed_delete),
                     ("truncated body", truncated_body),
                     ("oversized headers", oversized_headers),
                     ("not HTTP", garbage_request),
                     ("invalid part number", bad_part_number)]:
        case(name, fn)
    assert s3.get_object(Bucket="bad", Key="keep")["Body"].read() == b"precious"
    print(f"bad input: {6 - failures} passed, {failures} failed")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
