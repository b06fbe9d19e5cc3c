"""infra/template.yaml for the infrastructure tests, run with tests/.venv-infra's Python.

  template_tool.py json
      The template as JSON (cfn-lint's decoder: YAML short forms become {"Ref": ...} etc.).
  template_tool.py deploy STACK PARAMS_JSON
      Deploys the template's non-Lambda resources to CloudFormation at $AWS_ENDPOINT_URL
      (LocalStack, which runs no Lambda functions or HTTP APIs here) as stack STACK, waits for
      it, and prints JSON: the stack's outputs, its resources' physical ids, the settings read
      back from S3, DynamoDB and SQS, and the API function's environment with every reference
      resolved against the stack (variables that name the HTTP API left out).
  template_tool.py delete STACK
      Deletes the stack (the bucket and table are kept, as their DeletionPolicy says).
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from pathlib import Path

import boto3
from botocore.config import Config
from cfnlint.decode import decode

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = REPO / "infra" / "template.yaml"

# What LocalStack cannot run here (Lambda needs Docker; HTTP APIs, EventBridge schedules, ECS
# and load balancers are not in its community edition): left out, with everything that
# references them.
NOT_DEPLOYED_PREFIXES = (
    "AWS::Serverless::",
    "AWS::Lambda::",
    "AWS::ApiGatewayV2::",
    "AWS::Events::",
    "AWS::ECS::",
    "AWS::ElasticLoadBalancingV2::",
    "AWS::EC2::",
)


def load() -> dict:
    template, matches = decode(str(TEMPLATE))
    if matches:
        raise SystemExit(f"cannot decode {TEMPLATE}: {matches}")
    return json.loads(json.dumps(template, default=str))


def references(node) -> set[str]:
    """Logical ids and parameters a template fragment refers to (Ref, GetAtt, Sub, DependsOn)."""
    out: set[str] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "Ref" and isinstance(value, str):
                out.add(value)
            elif key == "Fn::GetAtt":
                target = value[0] if isinstance(value, list) else str(value).split(".")[0]
                out.add(target)
            elif key == "Fn::Sub":
                text = value[0] if isinstance(value, list) else value
                out.update(m.split(".")[0] for m in re.findall(r"\$\{([^}!]+)\}", text))
                if isinstance(value, list):
                    out.update(references(value[1]))
            else:
                out.update(references(value))
    elif isinstance(node, list):
        for item in node:
            out.update(references(item))
    return out


def deployable(template: dict) -> dict:
    """The template without Lambda-side resources and whatever refers to them."""
    resources = template["Resources"]
    removed = {name for name, r in resources.items() if r["Type"].startswith(NOT_DEPLOYED_PREFIXES)}
    changed = True
    while changed:
        changed = False
        for name, r in resources.items():
            if name in removed:
                continue
            depends = r.get("DependsOn", [])
            depends = [depends] if isinstance(depends, str) else depends
            if (references(r) | set(depends)) & removed:
                removed.add(name)
                changed = True
    out = {k: v for k, v in template.items() if k not in ("Transform", "Globals", "Resources", "Outputs")}
    out["Resources"] = {k: v for k, v in resources.items() if k not in removed}
    out["Outputs"] = {k: v for k, v in template.get("Outputs", {}).items() if not references(v) & removed}
    return out


def clients():
    session = boto3.session.Session(
        aws_access_key_id="test", aws_secret_access_key="test", region_name="us-east-1"
    )
    cfg = Config(retries={"max_attempts": 5, "mode": "standard"}, s3={"addressing_style": "path"})
    url = os.environ["AWS_ENDPOINT_URL"]
    return {n: session.client(n, endpoint_url=url, config=cfg) for n in ("cloudformation", "s3", "dynamodb", "sqs")}


class Resolver:
    """Evaluates the intrinsic functions of a fragment against a deployed stack."""

    def __init__(self, template: dict, params: dict, physical: dict, stack: str, account: str, region: str):
        self.template, self.params, self.physical = template, params, physical
        self.pseudo = {
            "AWS::StackName": stack, "AWS::AccountId": account, "AWS::Region": region,
            "AWS::Partition": "aws", "AWS::URLSuffix": "amazonaws.com", "AWS::NoValue": None,
        }
        self.conditions: dict[str, bool] = {}

    def ref(self, name: str):
        if name in self.pseudo:
            return self.pseudo[name]
        if name in self.params:
            return self.params[name]
        if name in self.physical:
            return self.physical[name]
        raise KeyError(name)

    def condition(self, name: str) -> bool:
        if name not in self.conditions:
            self.conditions[name] = bool(self.value(self.template["Conditions"][name]))
        return self.conditions[name]

    def value(self, node):
        if isinstance(node, list):
            return [self.value(n) for n in node]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            (key, arg), = node.items()
            if key == "Ref":
                return self.ref(arg)
            if key == "Fn::Sub":
                text, extra = (arg[0], arg[1]) if isinstance(arg, list) else (arg, {})
                return re.sub(r"\$\{([^}]+)\}", lambda m: str(
                    self.value(extra[m.group(1)]) if m.group(1) in extra else self.ref(m.group(1))), text)
            if key == "Fn::If":
                return self.value(arg[1] if self.condition(arg[0]) else arg[2])
            if key == "Fn::Equals":
                a, b = self.value(arg)
                return a == b
            if key == "Fn::Not":
                return not self.value(arg[0])
            if key == "Condition":
                return self.condition(arg)
        return {k: self.value(v) for k, v in node.items()}


def function_environment(template: dict, resolver: Resolver, function: str) -> dict:
    """The function's environment (Globals merged with its own) resolved; variables whose
    value names a resource that was not deployed (the HTTP API) are left out."""
    merged = dict(template.get("Globals", {}).get("Function", {}).get("Environment", {}).get("Variables", {}))
    merged.update(template["Resources"][function]["Properties"].get("Environment", {}).get("Variables", {}))
    env = {}
    for name, node in merged.items():
        try:
            value = resolver.value(node)
        except KeyError:
            continue
        if value is not None:
            env[name] = str(value)
    return env


def deploy(stack: str, params: dict) -> dict:
    c = clients()
    full = load()
    body = deployable(full)
    c["cloudformation"].create_stack(
        StackName=stack,
        TemplateBody=json.dumps(body),
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in params.items()],
        Capabilities=["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM"],
    )
    deadline = time.monotonic() + 300
    while True:
        desc = c["cloudformation"].describe_stacks(StackName=stack)["Stacks"][0]
        status = desc["StackStatus"]
        if status.endswith("_COMPLETE") or status.endswith("_FAILED"):
            break
        if time.monotonic() > deadline:
            raise SystemExit(f"stack {stack} still {status} after 300 s")
        time.sleep(1)
    if status != "CREATE_COMPLETE":
        events = c["cloudformation"].describe_stack_events(StackName=stack)["StackEvents"]
        reasons = [f"{e['LogicalResourceId']}: {e.get('ResourceStatusReason')}" for e in events
                   if e.get("ResourceStatus", "").endswith("FAILED")]
        raise SystemExit(f"stack {stack} ended {status}: {reasons}")
    physical = {
        r["LogicalResourceId"]: r["PhysicalResourceId"]
        for r in c["cloudformation"].describe_stack_resources(StackName=stack)["StackResources"]
    }
    outputs = {o["OutputKey"]: o["OutputValue"] for o in desc.get("Outputs", [])}
    all_params = {k: v.get("Default") for k, v in full["Parameters"].items()}
    all_params.update(params)
    resolver = Resolver(full, all_params, physical, stack, "000000000000", "us-east-1")

    # Read the deployed settings back, to compare with the template and the manifest.
    bucket = outputs["BlobBucketName"]
    table = outputs["MetadataTableName"]
    # (LocalStack's CloudFormation ignores a bucket's LifecycleConfiguration: the tests check
    # that rule in the template.)
    settings = {
        "bucketEncryption": c["s3"].get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"],
        "bucketPublicAccessBlock": c["s3"].get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"],
        "table": c["dynamodb"].describe_table(TableName=table)["Table"],
        "tableTtl": c["dynamodb"].describe_time_to_live(TableName=table)["TimeToLiveDescription"],
        "queues": {
            name: c["sqs"].get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
            for name, url in outputs.items() if name.endswith("QueueUrl")
        },
    }
    return {
        "outputs": outputs,
        "physical": physical,
        "deployed": sorted(body["Resources"]),
        "settings": settings,
        "apiEnvironment": function_environment(full, resolver, "ApiFunction"),
    }


def main(argv: list[str]) -> int:
    if argv[:1] == ["json"]:
        json.dump(load(), sys.stdout)
    elif argv[:1] == ["deploy"] and len(argv) == 3:
        json.dump(deploy(argv[1], json.loads(argv[2])), sys.stdout, default=str)
    elif argv[:1] == ["delete"] and len(argv) == 2:
        clients()["cloudformation"].delete_stack(StackName=argv[1])
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
