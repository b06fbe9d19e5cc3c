# Self-test of a running LocalStack: the registry's resources exist as configured, SQS round-trips, presigned S3 URLs are really checked.
#
# Run with the LocalStack venv's Python after `source localstack/env`, or through `localstack/selftest`.
# Prints one line per check and a closing "N passed, N failed"; exits 1 on any failure.
import json
import os
import sys
import time
import urllib.error
import urllib.request
import uuid

import boto3
from botocore.config import Config

ENDPOINT = os.environ.get("AWS_ENDPOINT_URL") or "http://127.0.0.1:4566"
with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "infra", "resources.json")) as f:
    MANIFEST = json.load(f)
NAMING = MANIFEST["localstack"]
BUCKET = os.environ.get("REGISTRY_S3_BUCKET", MANIFEST["bucket"]["name"].format(**NAMING))
TABLE = os.environ.get("REGISTRY_DYNAMODB_TABLE", MANIFEST["table"]["name"].format(**NAMING))
QUEUES = {  # name -> (env var of its URL, env var of its DLQ URL, visibility timeout), from infra/resources.json
    q["name"].format(**NAMING): (q["env"], q["dlqEnv"], q["visibilityTimeoutSecs"]) for q in MANIFEST["queues"]
}

session = boto3.session.Session(aws_access_key_id="test", aws_secret_access_key="test", region_name="us-east-1")
cfg = Config(s3={"addressing_style": "path"}, signature_version="s3v4", retries={"max_attempts": 2})
s3 = session.client("s3", endpoint_url=ENDPOINT, config=cfg)
ddb = session.client("dynamodb", endpoint_url=ENDPOINT, config=cfg)
sqs = session.client("sqs", endpoint_url=ENDPOINT, config=cfg)

results = []


def check(name, fn):
    try:
        detail = fn()
        results.append(True)
        print(f"ok    {name}" + (f": {detail}" if detail else ""))
    except Exception as e:  # noqa: BLE001 - any failure is a failed check
        results.append(False)
        print(f"FAIL  {name}: {type(e).__name__}: {e}")


def expect(cond, msg):
    if not cond:
        raise AssertionError(msg)


def http_status(url):
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def bucket():
    s3.head_bucket(Bucket=BUCKET)
    return BUCKET


def table():
    t = ddb.describe_table(TableName=TABLE)["Table"]
    expect(t["TableStatus"] == "ACTIVE", t["TableStatus"])
    keys = {k["AttributeName"]: k["KeyType"] for k in t["KeySchema"]}
    expect(keys == {"pk": "HASH", "sk": "RANGE"}, keys)
    types = {a["AttributeName"]: a["AttributeType"] for a in t["AttributeDefinitions"]}
    expect(types == {"pk": "S", "sk": "S"}, types)
    billing = t.get("BillingModeSummary", {}).get("BillingMode")
    expect(billing == "PAY_PER_REQUEST", billing)
    return f"pk/sk (S), {billing}"


def ttl():
    d = ddb.describe_time_to_live(TableName=TABLE)["TimeToLiveDescription"]
    expect(d.get("TimeToLiveStatus") == "ENABLED" and d.get("AttributeName") == "expires_at", d)
    return "expires_at ENABLED"


def table_rw():
    pk, sk = f"SELFTEST#{uuid.uuid4()}", "ITEM"
    ddb.put_item(TableName=TABLE, Item={"pk": {"S": pk}, "sk": {"S": sk}, "expires_at": {"N": str(int(time.time()) + 60)}})
    got = ddb.get_item(TableName=TABLE, Key={"pk": {"S": pk}, "sk": {"S": sk}}, ConsistentRead=True).get("Item")
    ddb.delete_item(TableName=TABLE, Key={"pk": {"S": pk}, "sk": {"S": sk}})
    expect(got and got["pk"]["S"] == pk, got)


def queue(name, var, dlq_var, visibility):
    def run():
        url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
        dlq_url = sqs.get_queue_url(QueueName=f"{name}-dlq")["QueueUrl"]
        for env_var, actual in ((var, url), (dlq_var, dlq_url)):
            if env_var in os.environ:
                expect(os.environ[env_var] == actual, f"{env_var}={os.environ[env_var]} but LocalStack says {actual}")
        a = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        rp = json.loads(a.get("RedrivePolicy", "{}"))
        expect(rp.get("deadLetterTargetArn") == dlq_arn, f"RedrivePolicy {rp}, want target {dlq_arn}")
        expect(str(rp.get("maxReceiveCount")) == "5", f"maxReceiveCount {rp.get('maxReceiveCount')}")
        expect(a["VisibilityTimeout"] == str(visibility), f"VisibilityTimeout {a['VisibilityTimeout']}")
        return f"{url} visibility {visibility}s, redrive -> {name}-dlq after 5"

    return run


def sqs_redrive():
    # On a temporary queue pair, so that messages of a running registry are never touched.
    name = f"selftest-{uuid.uuid4().hex[:12]}"
    dlq_url = sqs.create_queue(QueueName=f"{name}-dlq")["QueueUrl"]
    try:
        dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        redrive = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "5"})
        url = sqs.create_queue(QueueName=name, Attributes={"RedrivePolicy": redrive})["QueueUrl"]
        try:
            sqs.send_message(QueueUrl=url, MessageBody="poison")
            receives = 0
            for _ in range(10):  # a message received 5 times moves to the DLQ on the next receive
                msgs = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1).get("Messages", [])
                if not msgs:
                    break
                receives += 1
                sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=msgs[0]["ReceiptHandle"], VisibilityTimeout=0)
            expect(receives == 5, f"received {receives} times before redrive, want 5")
            dead = sqs.receive_message(QueueUrl=dlq_url, WaitTimeSeconds=2).get("Messages", [])
            expect(dead and dead[0]["Body"] == "poison", f"DLQ has {dead}")
            return "send/receive; after 5 receives the message is in the DLQ"
        finally:
            sqs.delete_queue(QueueUrl=url)
    finally:
        sqs.delete_queue(QueueUrl=dlq_url)


def presigned():
    key = f"selftest/{uuid.uuid4()}"
    data = os.urandom(1024)
    s3.put_object(Bucket=BUCKET, Key=key, Body=data)
    try:
        url = s3.generate_presigned_url("get_object", Params={"Bucket": BUCKET, "Key": key}, ExpiresIn=300)
        status, body = http_status(url)
        expect(status == 200 and body == data, f"valid presigned GET: {status}")
        sig_at = url.index("X-Amz-Signature=") + len("X-Amz-Signature=")
        flipped = "0" if url[sig_at] != "0" else "1"
        tampered = url[:sig_at] + flipped + url[sig_at + 1 :]
        status, _ = http_status(tampered)
        expect(status == 403, f"tampered signature: {status}, want 403")
        other_key = url.replace(key, key + "-other")
        status, _ = http_status(other_key)
        expect(status == 403, f"signature for another key: {status}, want 403")
        expired = s3.generate_presigned_url("get_object", Params={"Bucket": BUCKET, "Key": key}, ExpiresIn=1)
        time.sleep(2)
        status, _ = http_status(expired)
        expect(status == 403, f"expired URL: {status}, want 403")
        return "valid 200; tampered, other key, expired 403"
    finally:
        s3.delete_object(Bucket=BUCKET, Key=key)


check(f"s3 bucket {BUCKET}", bucket)
check(f"dynamodb table {TABLE}", table)
check(f"dynamodb ttl on {TABLE}", ttl)
check(f"dynamodb put/get/delete on {TABLE}", table_rw)
for q, (var, dlq_var, vis) in QUEUES.items():
    check(f"sqs queue {q}", queue(q, var, dlq_var, vis))
check("sqs redrive (temporary queues)", sqs_redrive)
check("s3 presigned GET", presigned)

passed, failed = results.count(True), results.count(False)
print(f"selftest: {passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
