# Init hook: create (or converge) the registry's S3 bucket, DynamoDB table and SQS queues in LocalStack; idempotent.
# What to create comes from infra/resources.json (the same names infra/template.yaml gives a stack
# called "registry" in LocalStack's account and region).
#
# Runs in two ways, with the same code:
#   * by LocalStack itself, as a READY-stage init hook (files in /etc/localstack/init/ready.d;
#     LocalStack exec()s .py hooks inside its own Python process, where boto3 is available).
#     Used by both `localstack/start` (host mode) and `localstack/docker-compose.yml`.
#   * standalone, with the LocalStack venv's Python: `python 10-resources.py`. It then talks to
#     $AWS_ENDPOINT_URL (default http://127.0.0.1:${LOCALSTACK_PORT:-4566}), creates whatever is
#     missing, verifies everything, and, when REGISTRY_*_QUEUE_URL variables are set (as
#     `localstack/env` sets them), checks that they equal the URLs LocalStack returns.
#
# Under exec() there is no __name__/__file__ and sys.exit must not be called (SystemExit would
# escape LocalStack's error handling): failures are raised as exceptions, which LocalStack
# records as state ERROR in GET /_localstack/init/ready.
import json
import os
import sys
import time

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

STANDALONE = globals().get("__name__") == "__main__"


def manifest_path():
    """infra/resources.json: named by $REGISTRY_RESOURCES_MANIFEST (set by localstack/start and the
    compose file, since a hook run by LocalStack has no __file__), else found from this file."""
    path = os.environ.get("REGISTRY_RESOURCES_MANIFEST")
    if path:
        return path
    if STANDALONE:
        return os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "infra", "resources.json")
    raise RuntimeError("REGISTRY_RESOURCES_MANIFEST is not set: cannot find infra/resources.json")


with open(manifest_path()) as f:
    MANIFEST = json.load(f)
NAMING = MANIFEST["localstack"]


def resource_name(pattern):
    return pattern.format(**NAMING)


REGION = NAMING["region"]
BUCKET = resource_name(MANIFEST["bucket"]["name"])
TABLE = resource_name(MANIFEST["table"]["name"])
HASH_KEY = MANIFEST["table"]["hashKey"]
RANGE_KEY = MANIFEST["table"]["rangeKey"]
TTL_ATTRIBUTE = MANIFEST["table"]["ttlAttribute"]
DLQ_RETENTION_SECONDS = MANIFEST["deadLetterRetentionSecs"]
# queue name -> (visibility timeout seconds, maxReceiveCount, env variable of its URL, env variable of its DLQ URL)
QUEUES = {
    resource_name(q["name"]): (q["visibilityTimeoutSecs"], q["maxReceiveCount"], q["env"], q["dlqEnv"])
    for q in MANIFEST["queues"]
}



def log(msg):
    print(f"[10-resources] {msg}", flush=True)


def endpoint_url():
    if STANDALONE:
        url = os.environ.get("AWS_ENDPOINT_URL")
        return url or f"http://127.0.0.1:{os.environ.get('LOCALSTACK_PORT', '4566')}"
    # Inside LocalStack: talk to our own gateway on loopback (works in host mode and in Docker).
    from localstack import config

    return f"http://127.0.0.1:{config.GATEWAY_LISTEN[0].port}"


def clients():
    session = boto3.session.Session(
        aws_access_key_id="test", aws_secret_access_key="test", region_name=REGION
    )
    cfg = Config(
        connect_timeout=5,
        read_timeout=60,
        retries={"max_attempts": 5, "mode": "standard"},
        s3={"addressing_style": "path"},
    )
    url = endpoint_url()
    return url, {name: session.client(name, endpoint_url=url, config=cfg) for name in ("s3", "dynamodb", "sqs")}


def error_code(e):
    return e.response.get("Error", {}).get("Code", "")


def ensure_bucket(s3):
    try:
        s3.head_bucket(Bucket=BUCKET)
        return "exists"
    except ClientError as e:
        if error_code(e) not in ("404", "NoSuchBucket", "NotFound"):
            raise
    try:
        s3.create_bucket(Bucket=BUCKET)  # us-east-1: no LocationConstraint
    except ClientError as e:
        if error_code(e) != "BucketAlreadyOwnedByYou":
            raise
    s3.head_bucket(Bucket=BUCKET)
    return "created"


def ensure_table(ddb):
    want_keys = [{"AttributeName": HASH_KEY, "KeyType": "HASH"}, {"AttributeName": RANGE_KEY, "KeyType": "RANGE"}]
    state = "exists"
    try:
        desc = ddb.describe_table(TableName=TABLE)["Table"]
    except ClientError as e:
        if error_code(e) != "ResourceNotFoundException":
            raise
        try:
            ddb.create_table(
                TableName=TABLE,
                AttributeDefinitions=[
                    {"AttributeName": HASH_KEY, "AttributeType": "S"},
                    {"AttributeName": RANGE_KEY, "AttributeType": "S"},
                ],
                KeySchema=want_keys,
                BillingMode="PAY_PER_REQUEST",
            )
            state = "created"
        except ClientError as e2:
            if error_code(e2) != "ResourceInUseException":  # created concurrently
                raise
        desc = ddb.describe_table(TableName=TABLE)["Table"]
    deadline = time.monotonic() + 60
    while desc["TableStatus"] != "ACTIVE":
        if time.monotonic() > deadline:
            raise RuntimeError(f"table {TABLE} is still {desc['TableStatus']} after 60 s")
        time.sleep(0.2)
        desc = ddb.describe_table(TableName=TABLE)["Table"]
    if desc["KeySchema"] != want_keys:
        raise RuntimeError(f"table {TABLE} exists with key schema {desc['KeySchema']}, want {want_keys}")
    attrs = {a["AttributeName"]: a["AttributeType"] for a in desc["AttributeDefinitions"]}
    if attrs.get(HASH_KEY) != "S" or attrs.get(RANGE_KEY) != "S":
        raise RuntimeError(f"table {TABLE} has key attribute types {attrs}, want {HASH_KEY}/{RANGE_KEY} of type S")
    billing = desc.get("BillingModeSummary", {}).get("BillingMode", "PROVISIONED")
    if billing != "PAY_PER_REQUEST":
        ddb.update_table(TableName=TABLE, BillingMode="PAY_PER_REQUEST")
        state += ", billing set to PAY_PER_REQUEST"

    ttl = ddb.describe_time_to_live(TableName=TABLE)["TimeToLiveDescription"]
    if ttl.get("TimeToLiveStatus") in ("ENABLED", "ENABLING"):
        if ttl.get("AttributeName") != TTL_ATTRIBUTE:
            raise RuntimeError(f"table {TABLE} has TTL on {ttl.get('AttributeName')!r}, want {TTL_ATTRIBUTE!r}")
    else:
        ddb.update_time_to_live(
            TableName=TABLE, TimeToLiveSpecification={"Enabled": True, "AttributeName": TTL_ATTRIBUTE}
        )
        state += ", TTL enabled"
    return state


def ensure_queue(sqs, name, attributes):
    """Create the queue with these attributes, or set them on an existing one. Returns (url, state)."""
    try:
        url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
    except ClientError as e:
        if error_code(e) not in ("AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"):
            raise
        try:
            return sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"], "created"
        except ClientError as e2:
            if error_code(e2) not in ("QueueAlreadyExists", "QueueNameExists"):
                raise
            url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
    current = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    if any(not same_attribute(k, current.get(k), v) for k, v in attributes.items()):
        sqs.set_queue_attributes(QueueUrl=url, Attributes=attributes)
        return url, "updated"
    return url, "exists"


def same_attribute(key, have, want):
    if have is None:
        return False
    if key == "RedrivePolicy":
        a, b = json.loads(have), json.loads(want)
        return a.get("deadLetterTargetArn") == b["deadLetterTargetArn"] and str(
            a.get("maxReceiveCount")
        ) == str(b["maxReceiveCount"])
    return str(have) == str(want)


def ensure_queues(sqs):
    urls = {}
    states = []
    for name, (visibility, max_receive_count, _, _) in QUEUES.items():
        dlq = f"{name}-dlq"
        dlq_url, dlq_state = ensure_queue(sqs, dlq, {"MessageRetentionPeriod": str(DLQ_RETENTION_SECONDS)})
        dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        redrive = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(max_receive_count)})
        url, state = ensure_queue(sqs, name, {"VisibilityTimeout": str(visibility), "RedrivePolicy": redrive})
        # verify what the main queue ended up with
        got = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        if got.get("VisibilityTimeout") != str(visibility) or not same_attribute(
            "RedrivePolicy", got.get("RedrivePolicy"), redrive
        ):
            raise RuntimeError(f"queue {name} has attributes {got}, want visibility {visibility} and {redrive}")
        urls[name], urls[dlq] = url, dlq_url
        states.append(f"{name} {state} (dlq {dlq_state})")
    return urls, states


def check_env_urls(urls):
    """Standalone only: the URLs exported by localstack/env must be the ones LocalStack returns."""
    mismatches = []
    for name, (_, _, var, dlq_var) in QUEUES.items():
        for env_var, queue in ((var, name), (dlq_var, f"{name}-dlq")):
            value = os.environ.get(env_var)
            if value is not None and value != urls[queue]:
                mismatches.append(f"{env_var}={value} but LocalStack says {urls[queue]}")
    for env_var, want in (("REGISTRY_S3_BUCKET", BUCKET), ("REGISTRY_DYNAMODB_TABLE", TABLE)):
        value = os.environ.get(env_var)
        if value is not None and value != want:
            mismatches.append(f"{env_var}={value} but this hook creates {want}")
    if mismatches:
        raise RuntimeError("environment does not match LocalStack: " + "; ".join(mismatches))


def main():
    started = time.monotonic()
    url, c = clients()
    bucket = ensure_bucket(c["s3"])
    table = ensure_table(c["dynamodb"])
    urls, queue_states = ensure_queues(c["sqs"])
    if STANDALONE:
        check_env_urls(urls)
    log(
        f"{url}: bucket {BUCKET} {bucket}; table {TABLE} {table}; queues: {'; '.join(queue_states)}"
        f" ({time.monotonic() - started:.2f} s)"
    )


if STANDALONE:
    try:
        main()
    except Exception as e:  # noqa: BLE001 - report any failure as a one-line error and exit 1
        log(f"FAILED: {type(e).__name__}: {e}")
        sys.exit(1)
else:
    main()
