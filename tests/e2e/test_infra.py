"""infra/template.yaml: cfn-lint and checkov pass (every skipped check explained), the IAM
policies allow no `*` action and name only the stack's own resources, names, settings,
environment variables and queue wiring agree with infra/resources.json (which localstack/
creates from) and with the variables the code reads, and the template's non-Lambda resources,
deployed to LocalStack's CloudFormation, serve skopeo push and pull through the local binary
configured with the API function's own environment."""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import uuid
from pathlib import Path

import pytest

from awsstack import AwsRegistry, require_localstack, stop_all
from conftest import REPO_ROOT
from ocilayout import Layout, read_blob, resolve, sample_layers

INFRA_VENV = Path(os.environ.get("INFRA_VENV", REPO_ROOT / "tests" / ".venv-infra"))
TOOL = REPO_ROOT / "tests" / "infra" / "template_tool.py"
TEMPLATE = REPO_ROOT / "infra" / "template.yaml"
MANIFEST = json.loads((REPO_ROOT / "infra" / "resources.json").read_text())
PSEUDO = {"stack": "${AWS::StackName}", "account": "${AWS::AccountId}", "region": "${AWS::Region}"}


def infra_tool(name: str) -> str:
    path = INFRA_VENV / "bin" / name
    if not os.access(path, os.X_OK):
        pytest.fail(f"{path} missing: run tests/install-deps.sh", pytrace=False)
    return str(path)


def run(*args: str, timeout: float = 300, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=timeout, **kw)


@pytest.fixture(scope="module")
def template() -> dict:
    res = run(infra_tool("python"), str(TOOL), "json")
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def resources_of(template: dict, *types: str) -> dict:
    return {k: v for k, v in template["Resources"].items() if v["Type"] in types}


def cfn_name(pattern: str) -> str:
    """A manifest name pattern as the template writes it (`{stack}-scan` -> `${AWS::StackName}-scan`)."""
    return pattern.format(**PSEUDO)


def name_in_template(node) -> str:
    """A name property: `!Sub "..."` or `!Ref AWS::StackName`, as a Sub-style string."""
    if isinstance(node, dict) and "Fn::Sub" in node:
        return node["Fn::Sub"]
    if node == {"Ref": "AWS::StackName"}:
        return "${AWS::StackName}"
    return str(node)


def code_env_vars() -> set[str]:
    """The environment variables the registry reads, from its own --help."""
    binary = REPO_ROOT / "target" / "debug" / "registry"
    res = run(str(binary), "--help")
    assert res.returncode == 0, res.stderr
    found = set(re.findall(r"\[env: ([A-Z0-9_]+)", res.stdout))
    assert "REGISTRY_S3_BUCKET" in found, res.stdout
    return found


def function_env(template: dict, function: str) -> dict:
    env = dict(template.get("Globals", {}).get("Function", {}).get("Environment", {}).get("Variables", {}))
    env.update(template["Resources"][function]["Properties"].get("Environment", {}).get("Variables", {}))
    return env


# ---- linters ---------------------------------------------------------------------------------

def test_cfn_lint_finds_nothing():
    res = run(infra_tool("cfn-lint"), str(TEMPLATE))
    assert res.returncode == 0 and res.stdout.strip() == "", res.stdout + res.stderr


def test_checkov_passes_and_every_skipped_check_is_explained():
    res = run(infra_tool("checkov"), "-f", str(TEMPLATE), "--framework", "cloudformation",
              "--skip-download", "--output", "json", env=dict(os.environ, BC_SKIP_MAPPING="TRUE"))
    report = json.loads(res.stdout)
    summary = report["summary"]
    failed = [(c["check_id"], c["resource"]) for c in report["results"]["failed_checks"]]
    assert summary["parsing_errors"] == 0, res.stdout[-2000:]
    assert summary["passed"] > 50, summary
    assert failed == [], f"checkov findings neither fixed nor explained: {failed}"
    unexplained = [(c["check_id"], c["resource"]) for c in report["results"]["skipped_checks"]
                   if len((c["check_result"].get("suppress_comment") or "").strip()) < 20]
    assert unexplained == [], f"skipped without an explanation: {unexplained}"


# ---- IAM ---------------------------------------------------------------------------------------

def statements(template: dict):
    """(where, statement) for every statement of every identity policy in the template."""
    for name, r in template["Resources"].items():
        props = r.get("Properties", {})
        if r["Type"] == "AWS::IAM::Role":
            for p in props.get("Policies", []):
                for s in p["PolicyDocument"]["Statement"]:
                    yield f"{name}/{p['PolicyName']}", s
        elif r["Type"] in ("AWS::IAM::ManagedPolicy", "AWS::IAM::Policy"):
            for s in props["PolicyDocument"]["Statement"]:
                yield name, s


def as_list(value) -> list:
    return value if isinstance(value, list) else [value]


def names_own_resource(resource, logical_ids: set[str]) -> bool:
    """A Resource entry that is a reference to one of the stack's resources (its ARN, or the
    objects under its ARN), never a literal or a wildcard of its own."""
    if not isinstance(resource, dict) or len(resource) != 1:
        return False
    (fn, arg), = resource.items()
    if fn == "Ref":
        return arg in logical_ids
    if fn == "Fn::GetAtt":
        target = arg[0] if isinstance(arg, list) else arg.split(".")[0]
        return target in logical_ids
    if fn == "Fn::Sub" and isinstance(arg, str):
        m = re.fullmatch(r"\$\{([A-Za-z0-9]+)(?:\.Arn)?\}(/\*)?", arg)
        return bool(m) and m.group(1) in logical_ids
    return False


def iam_violations(template: dict) -> list[str]:
    logical_ids = set(template["Resources"])
    out = []
    for where, s in statements(template):
        if s.get("Effect") != "Allow":
            continue
        if "NotAction" in s or "NotResource" in s:
            out.append(f"{where}: NotAction/NotResource")
        for action in as_list(s.get("Action", [])):
            if not isinstance(action, str) or "*" in action:
                out.append(f"{where}: action {action!r}")
        for resource in as_list(s.get("Resource", [])):
            if not names_own_resource(resource, logical_ids):
                out.append(f"{where}: resource {resource!r}")
    for name, r in resources_of(template, "AWS::IAM::Role").items():
        for arn in r["Properties"].get("ManagedPolicyArns", []):
            if not (isinstance(arn, dict) and arn.get("Ref") in logical_ids):
                out.append(f"{name}: managed policy {arn!r} is not one of the stack's")
    return out


def test_iam_policies_allow_no_wildcard_action_and_name_only_the_stacks_resources(template):
    assert list(statements(template)), "no IAM statements found"
    assert iam_violations(template) == []
    # The check itself catches what it must (so it cannot pass by finding nothing).
    bad = json.loads(json.dumps(template))
    bad["Resources"]["Extra"] = {"Type": "AWS::IAM::ManagedPolicy", "Properties": {"PolicyDocument": {
        "Statement": [{"Effect": "Allow", "Action": ["s3:*", "sqs:SendMessage"], "Resource": "*"},
                      {"Effect": "Allow", "Action": "dynamodb:GetItem",
                       "Resource": "arn:aws:dynamodb:us-east-1:123456789012:table/other"},
                      {"Effect": "Allow", "Action": "s3:GetObject", "Resource": {"Fn::Sub": "${BlobBucket.Arn}*"}}]}}}
    bad["Resources"]["ApiFunctionRole"]["Properties"]["ManagedPolicyArns"].append(
        "arn:aws:iam::aws:policy/AdministratorAccess")
    assert len(iam_violations(bad)) == 5, iam_violations(bad)


def test_every_function_has_its_own_role_and_the_worker_roles_consume_only_their_queue(template):
    functions = resources_of(template, "AWS::Serverless::Function")
    roles = [f["Properties"]["Role"]["Fn::GetAtt"][0] for f in functions.values()]
    assert len(set(roles)) == len(functions) == len(MANIFEST["functions"])
    for q in MANIFEST["queues"]:
        consumers = [where for where, s in statements(template)
                     if "sqs:ReceiveMessage" in as_list(s["Action"])
                     and {"Fn::GetAtt": [q["logicalId"], "Arn"]} in as_list(s["Resource"])]
        if q["consumer"] is None:
            assert consumers == [], q
        else:
            role = functions[q["consumer"]]["Properties"]["Role"]["Fn::GetAtt"][0]
            assert [c.split("/")[0] for c in consumers] == [role], (q["logicalId"], consumers)


# ---- one source of truth -------------------------------------------------------------------------

def test_names_and_settings_agree_with_the_manifest(template):
    res = template["Resources"]
    b = res[MANIFEST["bucket"]["logicalId"]]
    assert b["Type"] == "AWS::S3::Bucket"
    assert name_in_template(b["Properties"]["BucketName"]) == cfn_name(MANIFEST["bucket"]["name"])
    rules = b["Properties"]["LifecycleConfiguration"]["Rules"]
    assert any(r.get("AbortIncompleteMultipartUpload", {}).get("DaysAfterInitiation")
               == MANIFEST["bucket"]["abortIncompleteMultipartUploadDays"] and r["Status"] == "Enabled"
               for r in rules), rules
    assert all(b["Properties"]["PublicAccessBlockConfiguration"].values())

    t = res[MANIFEST["table"]["logicalId"]]
    props = t["Properties"]
    assert name_in_template(props["TableName"]) == cfn_name(MANIFEST["table"]["name"])
    assert props["KeySchema"] == [{"AttributeName": MANIFEST["table"]["hashKey"], "KeyType": "HASH"},
                                  {"AttributeName": MANIFEST["table"]["rangeKey"], "KeyType": "RANGE"}]
    assert props["TimeToLiveSpecification"] == {"AttributeName": MANIFEST["table"]["ttlAttribute"], "Enabled": True}
    assert props["BillingMode"] == "PAY_PER_REQUEST"
    assert props["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True

    queues = resources_of(template, "AWS::SQS::Queue")
    assert len(queues) == 2 * len(MANIFEST["queues"]), sorted(queues)
    for q in MANIFEST["queues"]:
        main = res[q["logicalId"]]["Properties"]
        assert name_in_template(main["QueueName"]) == cfn_name(q["name"])
        assert main["VisibilityTimeout"] == q["visibilityTimeoutSecs"]
        assert main["RedrivePolicy"]["maxReceiveCount"] == q["maxReceiveCount"]
        dlq_id = main["RedrivePolicy"]["deadLetterTargetArn"]["Fn::GetAtt"][0]
        dlq = res[dlq_id]["Properties"]
        assert name_in_template(dlq["QueueName"]) == cfn_name(q["name"]) + "-dlq"
        assert dlq["MessageRetentionPeriod"] == MANIFEST["deadLetterRetentionSecs"]


def test_each_queue_is_wired_to_its_consumer_as_the_manifest_says(template):
    functions = resources_of(template, "AWS::Serverless::Function")
    assert sorted(functions) == sorted(f["logicalId"] for f in MANIFEST["functions"])
    sqs_events = {(name, e["Properties"]["Queue"]["Fn::GetAtt"][0]): e["Properties"]
                  for name, f in functions.items()
                  for e in f["Properties"].get("Events", {}).values() if e["Type"] == "SQS"}
    for q in MANIFEST["queues"]:
        wired = [name for (name, queue) in sqs_events if queue == q["logicalId"]]
        assert wired == ([q["consumer"]] if q["consumer"] else []), (q["logicalId"], wired)
        if not q["consumer"]:
            continue
        event = sqs_events[(q["consumer"], q["logicalId"])]
        assert event["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
        assert event["ScalingConfig"]["MaximumConcurrency"] >= 2
        fn = functions[q["consumer"]]["Properties"]
        # Lambda refuses a mapping whose queue hides messages for less than the function runs.
        assert fn["Timeout"] <= q["visibilityTimeoutSecs"]
        # The worker knows its last try: the retry limit it is told is the redrive count.
        assert function_env(template, q["consumer"])[q["maxReceivesEnv"]] == str(q["maxReceiveCount"])
    # The webhook function also sweeps the event outbox on a schedule.
    schedules = [e for e in functions["WebhookFunction"]["Properties"]["Events"].values()
                 if e["Type"] == "Schedule"]
    assert len(schedules) == 1


def test_function_code_is_what_the_build_script_builds(template):
    build = (REPO_ROOT / "infra" / "build.sh").read_text()
    for f in MANIFEST["functions"]:
        props = template["Resources"][f["logicalId"]]["Properties"]
        assert props["CodeUri"] == f"../target/lambda/{f['binary']}/"
        assert f["binary"] in re.search(r"^functions=\((.*)\)$", build, re.M).group(1).split()
        assert f"-p {f['package']}" in build
        cargo = [p for p in REPO_ROOT.glob("functions/*/Cargo.toml") if f'name = "{f["package"]}"' in p.read_text()]
        assert len(cargo) == 1 and f'name = "{f["binary"]}"' in cargo[0].read_text(), f


def test_environment_variables_are_ones_the_code_reads_and_point_at_the_stacks_resources(template):
    known = code_env_vars()
    for f in MANIFEST["functions"]:
        env = function_env(template, f["logicalId"])
        unknown = sorted(set(env) - known)
        assert unknown == [], f"{f['logicalId']} sets variables the registry does not read: {unknown}"
        assert env[MANIFEST["bucket"]["env"]] == {"Ref": MANIFEST["bucket"]["logicalId"]}
        assert env[MANIFEST["table"]["env"]] == {"Ref": MANIFEST["table"]["logicalId"]}
        for q in MANIFEST["queues"]:
            if q["env"] in env:
                assert env[q["env"]] == {"Ref": q["logicalId"]}, q
    task = resources_of(template, "AWS::ECS::TaskDefinition")["UploadEndpointTaskDefinition"]
    container = {e["Name"]: e["Value"] for e in task["Properties"]["ContainerDefinitions"][0]["Environment"]}
    assert sorted(set(container) - known) == []
    # The upload endpoint only takes uploads: no workers, and only requests with upload tokens.
    assert container["REGISTRY_WORKERS"] == "false" and container["REGISTRY_REQUIRE_UPLOAD_TOKEN"] == "true"
    assert container[MANIFEST["bucket"]["env"]] == {"Ref": MANIFEST["bucket"]["logicalId"]}


def test_localstack_env_exports_the_manifests_names():
    text = (REPO_ROOT / "localstack" / "env").read_text()
    exported = dict(re.findall(r'^export ([A-Z0-9_]+)="?([^"\n]*)"?$', text, re.M))
    naming = MANIFEST["localstack"]
    assert exported[MANIFEST["bucket"]["env"]] == MANIFEST["bucket"]["name"].format(**naming)
    assert exported[MANIFEST["table"]["env"]] == MANIFEST["table"]["name"].format(**naming)
    for q in MANIFEST["queues"]:
        name = q["name"].format(**naming)
        assert exported[q["env"]].endswith(f"/{naming['account']}/{name}"), q
        assert exported[q["dlqEnv"]].endswith(f"/{naming['account']}/{name}-dlq"), q


# ---- deployed to LocalStack ----------------------------------------------------------------------

@pytest.fixture
def stack():
    require_localstack()
    name = f"reg-ci-{uuid.uuid4().hex[:6]}"
    # The signing key as infra/README.md makes it for the template's parameter: PKCS#8 DER, base64.
    der = subprocess.run("openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256"
                         " | openssl pkcs8 -topk8 -nocrypt -outform DER", shell=True,
                         capture_output=True, check=True).stdout
    params = {"AdminPassword": f"pw-{uuid.uuid4().hex}", "TokenSigningKey": base64.b64encode(der).decode()}
    res = run(infra_tool("python"), str(TOOL), "deploy", name, json.dumps(params))
    assert res.returncode == 0, res.stderr[-3000:]
    yield name, params, json.loads(res.stdout)
    run(infra_tool("python"), str(TOOL), "delete", name)


def test_stack_on_localstack_serves_skopeo_push_and_pull(stack, registry_bin, skopeo, tmp_path):
    name, params, deployed = stack
    naming = {"stack": name, **{k: v for k, v in MANIFEST["localstack"].items() if k != "stack"}}
    outputs = deployed["outputs"]
    # The stack's resources carry the manifest's names and settings.
    assert outputs["BlobBucketName"] == MANIFEST["bucket"]["name"].format(**naming)
    assert outputs["MetadataTableName"] == MANIFEST["table"]["name"].format(**naming)
    settings = deployed["settings"]
    assert settings["tableTtl"] == {"TimeToLiveStatus": "ENABLED", "AttributeName": MANIFEST["table"]["ttlAttribute"]}
    assert settings["bucketPublicAccessBlock"] == {k: True for k in settings["bucketPublicAccessBlock"]}
    rule = settings["bucketEncryption"]["Rules"][0]["ApplyServerSideEncryptionByDefault"]
    assert rule["SSEAlgorithm"] == "AES256"
    for q in MANIFEST["queues"]:
        output = q["logicalId"] + "Url"
        attrs = settings["queues"][output]
        assert outputs[output].endswith("/" + q["name"].format(**naming))
        assert attrs["VisibilityTimeout"] == str(q["visibilityTimeoutSecs"])
        redrive = json.loads(attrs["RedrivePolicy"])
        assert int(redrive["maxReceiveCount"]) == q["maxReceiveCount"]
        assert redrive["deadLetterTargetArn"].endswith(":" + q["name"].format(**naming) + "-dlq")
    # No Lambda-side resource was deployed, and every other one was.
    assert not any(k in deployed["deployed"] for k in ("ApiFunction", "HttpApi", "ScanFunction"))
    assert {"ApiFunctionRole", "RegistryStoragePolicy", "ApiLogGroup"} <= set(deployed["deployed"])

    # The local binary, configured with exactly the API function's environment (resolved
    # against the stack), pushes and pulls with skopeo.
    env = deployed["apiEnvironment"]
    assert env["REGISTRY_S3_BUCKET"] == outputs["BlobBucketName"]
    assert env["REGISTRY_WEBHOOK_QUEUE_URL"] == outputs["WebhookQueueUrl"]
    base = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
    reg = AwsRegistry(registry_bin, tmp_path / "stack-registry.log",
                      dict(base, **env, REGISTRY_WORKERS="false"))
    procs = [reg]
    try:
        reg.start()
        layout = Layout(tmp_path / "src")
        img = layout.add_image(sample_layers("infra"))
        layout.tag(img.descriptor, "v1")
        creds = f"admin:{params['AdminPassword']}"
        skopeo.copy(f"oci:{layout.root}:v1", f"docker://{reg.host}/e2e/infra:v1", "--dest-creds", creds)
        dst = tmp_path / "pulled"
        skopeo.copy(f"docker://{reg.host}/e2e/infra:v1", f"oci:{dst}:v1", "--src-creds", creds)
        assert resolve(dst, "v1")["digest"] == img.digest
        for digest, data in zip(img.layer_digests, img.layers):
            assert read_blob(dst, digest) == data
        # Blobs live in the stack's bucket (a pull is a 307 to it), tags in its table.
        token = reg.request("GET", "/token?service=registry&scope=repository:e2e/infra:pull",
                            {"Authorization": "Basic " + base64.b64encode(creds.encode()).decode()})
        assert token.status == 200, token.body
        bearer = {"Authorization": "Bearer " + token.json()["token"]}
        blob = reg.request("GET", f"/v2/e2e/infra/blobs/{img.layer_digests[0]}", bearer)
        assert blob.status == 307
        assert f"/{outputs['BlobBucketName']}/" in blob.headers["location"]
        assert reg.request("GET", "/v2/e2e/infra/tags/list", bearer).json()["tags"] == ["v1"]
        # Without credentials nothing is served: the stack's registry is not open.
        assert reg.request("GET", "/v2/e2e/infra/tags/list").status == 401
    finally:
        stop_all(procs)
