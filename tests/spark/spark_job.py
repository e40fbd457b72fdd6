#!/usr/bin/env python3
"""Spark over the Hadoop S3A connector against a running dmpstore cluster.

Usage: spark_job.py CLUSTER_JSON COMMITTER [GATEWAY_INDEX]   (COMMITTER: file | magic)

Job 1 writes 1,000,000 rows in 8 partitions as Parquet to s3a://spark/<committer>/events,
reads them back and checks the row count, the id sum and a per-segment aggregate against
values computed here without Spark. Job 2 overwrites a partitioned table: with the classic
FileOutputCommitter in dynamic partition-overwrite mode (task and job commits rename through
copy + delete), with the magic committer (multipart uploads completed by the driver) in static
mode. Prints one JSON line with timings; exits non-zero on any mismatch. An https:// endpoint
is reached with `fs.s3a.connection.ssl.enabled=true`, trusting only the cluster's test CA
(`ca_bundle` in cluster.json) through a Java truststore made with keytool.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

ROWS = 1_000_000
SEGMENTS = 1000
HADOOP_AWS = "org.apache.hadoop:hadoop-aws:3.3.4"
SPARK_CLOUD = "org.apache.spark:spark-hadoop-cloud_2.12:3.5.4"


def session(cluster, committer, endpoint):
    ivy = os.path.expanduser(os.environ.get("DMPSTORE_IVY_DIR", "~/.cache/dmpstore/ivy"))
    conf = {
        "spark.jars.packages": f"{HADOOP_AWS},{SPARK_CLOUD}",
        "spark.jars.ivy": ivy,
        "spark.hadoop.fs.s3a.endpoint": endpoint,
        "spark.hadoop.fs.s3a.endpoint.region": cluster["region"],
        "spark.hadoop.fs.s3a.access.key": cluster["access_key"],
        "spark.hadoop.fs.s3a.secret.key": cluster["secret_key"],
        "spark.hadoop.fs.s3a.path.style.access": "true",
        "spark.hadoop.fs.s3a.connection.ssl.enabled": str(endpoint.startswith("https://")).lower(),
        "spark.hadoop.fs.s3a.aws.credentials.provider": "org.apache.hadoop.fs.s3a.SimpleAWSCredentialsProvider",
        "spark.hadoop.fs.s3a.attempts.maximum": "3",
        "spark.hadoop.fs.s3a.retry.limit": "3",
        "spark.sql.shuffle.partitions": "4",
        "spark.ui.enabled": "false",
        "spark.driver.memory": "1g",
    }
    if endpoint.startswith("https://"):
        store = truststore(cluster["ca_bundle"])
        conf["spark.driver.extraJavaOptions"] = (
            f"-Djavax.net.ssl.trustStore={store} -Djavax.net.ssl.trustStorePassword=dmpstore "
            "-Djavax.net.ssl.trustStoreType=PKCS12")
    if committer == "magic":
        conf.update({
            "spark.hadoop.fs.s3a.committer.name": "magic",
            "spark.hadoop.fs.s3a.committer.magic.enabled": "true",
            "spark.sql.sources.commitProtocolClass": "org.apache.spark.internal.io.cloud.PathOutputCommitProtocol",
            "spark.sql.parquet.output.committer.class": "org.apache.spark.internal.io.cloud.BindingParquetOutputCommitter",
        })
    else:
        conf["spark.hadoop.mapreduce.fileoutputcommitter.algorithm.version"] = "1"
    builder = SparkSession.builder.master("local[2]").appName(f"dmpstore-{committer}")
    for k, v in conf.items():
        builder = builder.config(k, v)
    # The first session of a fresh machine fetches hadoop-aws and spark-hadoop-cloud from
    # Maven Central; a registry hiccup there fails the JVM's start, so try up to 3 times.
    for attempt in range(3):
        try:
            spark = builder.getOrCreate()
            break
        except Exception as e:  # pyspark raises a bare PySparkRuntimeError / RuntimeError
            if attempt == 2:
                raise
            print(f"Spark did not start ({e}); fetching its packages again", file=sys.stderr)
            time.sleep(10 * (attempt + 1))
    spark.sparkContext.setLogLevel("WARN")
    return spark


def truststore(ca_pem):
    """A PKCS#12 truststore (the JVM's -Djavax.net.ssl.trustStore) holding the JVM's own CAs,
    so that Ivy still reaches Maven Central for Spark's packages, and the test CA in `ca_pem`."""
    path = os.path.join(tempfile.mkdtemp(prefix="dmpstore-truststore-"), "ca.p12")
    java = os.path.realpath(shutil.which("java"))
    cacerts = os.path.join(os.path.dirname(os.path.dirname(java)), "lib", "security", "cacerts")
    subprocess.run(["keytool", "-importkeystore", "-noprompt", "-srckeystore", cacerts,
                    "-srcstorepass", "changeit", "-destkeystore", path, "-deststoretype", "PKCS12",
                    "-deststorepass", "dmpstore"],
                   check=True, capture_output=True)
    subprocess.run(["keytool", "-importcert", "-noprompt", "-alias", "dmpstore-test-ca", "-file", ca_pem,
                    "-keystore", path, "-storetype", "PKCS12", "-storepass", "dmpstore"],
                   check=True, capture_output=True)
    return path


def expected_segments():
    n = [0] * SEGMENTS
    s = [0.0] * SEGMENTS
    for i in range(ROWS):
        seg = i % SEGMENTS
        n[seg] += 1
        s[seg] += float((i * 7) % 100)
    return n, s


def check(cond, what):
    if not cond:
        raise SystemExit(f"MISMATCH: {what}")


def main():
    cluster = json.load(open(sys.argv[1]))
    committer = sys.argv[2]
    endpoint = cluster["s3_endpoints"][int(sys.argv[3]) if len(sys.argv) > 3 else 0]
    started = time.time()
    spark = session(cluster, committer, endpoint)
    t_session = time.time() - started

    # Job 1: write, read back, aggregate.
    events = f"s3a://spark/{committer}/events"
    df = spark.range(ROWS).select(
        F.col("id"),
        (F.col("id") % SEGMENTS).alias("segment"),
        ((F.col("id") * 7) % 100).cast("double").alias("score"),
        F.concat(F.lit("user-"), F.col("id").cast("string")).alias("user"),
    )
    t0 = time.time()
    df.repartition(8).write.mode("overwrite").parquet(events)
    t_write = time.time() - t0
    t0 = time.time()
    back = spark.read.parquet(events)
    total = back.agg(F.count("*").alias("n"), F.sum("id").alias("ids")).collect()[0]
    check(total["n"] == ROWS, f"row count {total['n']} != {ROWS}")
    check(total["ids"] == ROWS * (ROWS - 1) // 2, f"id sum {total['ids']}")
    rows = back.groupBy("segment").agg(F.count("*").alias("n"), F.sum("score").alias("s")).collect()
    n, s = expected_segments()
    check(len(rows) == SEGMENTS, f"{len(rows)} segments")
    for r in rows:
        check(r["n"] == n[r["segment"]] and abs(r["s"] - s[r["segment"]]) < 1e-6, f"segment {r['segment']}: {r}")
    files = [f for f in spark.sparkContext._jvm.org.apache.hadoop.fs.Path(events).getFileSystem(
        spark.sparkContext._jsc.hadoopConfiguration()).listStatus(spark.sparkContext._jvm.org.apache.hadoop.fs.Path(events))]
    names = [f.getPath().getName() for f in files]
    check("_SUCCESS" in names and sum(1 for x in names if x.endswith(".parquet")) >= 2, f"output files {names}")
    check(not any(x.startswith("_temporary") or x == "__magic" for x in names), f"leftover temporary paths {names}")
    jvm = spark.sparkContext._jvm
    marker = jvm.org.apache.hadoop.fs.Path(f"{events}/_SUCCESS")
    stream = marker.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration()).open(marker)
    success = jvm.org.apache.commons.io.IOUtils.toString(stream, "UTF-8")
    stream.close()
    if committer == "magic":
        check('"committer" : "magic"' in success, f"_SUCCESS was not written by the magic committer: {success[:200]}")
    else:
        check(success == "", "_SUCCESS of the classic committer should be empty")
    t_read = time.time() - t0

    # Job 2: overwrite a partitioned table.
    table = f"s3a://spark/{committer}/table"
    first = spark.range(100_000).select(F.col("id"), (F.col("id") % 4).alias("day"))
    first.write.partitionBy("day").mode("overwrite").parquet(table)
    second = spark.range(50_000).select((F.col("id") + 1_000_000).alias("id"), (F.col("id") % 2).alias("day"))
    t0 = time.time()
    if committer == "magic":
        second.write.partitionBy("day").mode("overwrite").parquet(table)
        want = {0: 25_000, 1: 25_000}
    else:
        spark.conf.set("spark.sql.sources.partitionOverwriteMode", "dynamic")
        second.write.partitionBy("day").mode("overwrite").parquet(table)
        want = {0: 25_000, 1: 25_000, 2: 25_000, 3: 25_000}
    t_overwrite = time.time() - t0
    got = {r["day"]: r["n"] for r in spark.read.parquet(table).groupBy("day").agg(F.count("*").alias("n")).collect()}
    check(got == want, f"partitions after overwrite {got} != {want}")
    new_ids = spark.read.parquet(table).where(F.col("day") < 2).agg(F.min("id")).collect()[0][0]
    check(new_ids >= 1_000_000, "overwritten partitions still hold old rows")
    spark.stop()
    print(json.dumps({"committer": committer, "rows": ROWS, "session_s": round(t_session, 1), "write_s": round(t_write, 1),
                      "read_check_s": round(t_read, 1), "overwrite_s": round(t_overwrite, 1),
                      "total_s": round(time.time() - started, 1)}))


if __name__ == "__main__":
    main()
