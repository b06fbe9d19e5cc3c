"""End-to-end project membership through the `registry` management subcommands: the admin
creates the private project `team`, the users `puller` (guest) and `pusher` (developer) and a
pull-only robot with the CLI (REGISTRY_URL / REGISTRY_USERNAME / REGISTRY_PASSWORD); then
podman, buildah and skopeo log in as each of them: the pusher pushes, the puller pulls and
inspects but cannot push or copy in, and the robot pulls with its one-time secret."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from conftest import RegistryProcess

ADMIN = "admin"
PASSWORD = "e2e-Admin-pw-42"
PULLER_PASSWORD = "e2e-Puller-pw-42"
PUSHER_PASSWORD = "e2e-Pusher-pw-42"
REFUSAL_WORDS = ("denied", "unauthorized", "authentication required")


def assert_refused(text: str, what: str) -> None:
    low = text.lower()
    assert any(w in low for w in REFUSAL_WORDS), f"{what}: no refusal in\n{text[-4000:]}"


class Cli:
    """Runs `registry <subcommand>` against one registry, as one caller."""

    def __init__(self, binary, reg: RegistryProcess, user: str | None, password: str | None):
        self.binary = binary
        # Nothing of the server's environment (REGISTRY_ADDR, …) leaks into the client.
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
        self.env["REGISTRY_URL"] = reg.url
        if user is not None:
            self.env["REGISTRY_USERNAME"] = user
        if password is not None:
            self.env["REGISTRY_PASSWORD"] = password

    def run(self, *args: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
        res = subprocess.run([str(self.binary), *args], input=stdin, capture_output=True, text=True,
                             env=self.env, timeout=60)
        if check and res.returncode != 0:
            raise AssertionError(f"$ registry {' '.join(args)}\nexit {res.returncode}\n"
                                 f"{res.stdout}\n{res.stderr}")
        for secret in (PASSWORD, PULLER_PASSWORD, PUSHER_PASSWORD):
            assert secret not in res.stdout + res.stderr, f"registry {args} printed a password"
        return res

    def json(self, *args: str) -> dict:
        return json.loads(self.run(*args, "--json").stdout)


@pytest.fixture
def auth_registry(registry_factory) -> RegistryProcess:
    return registry_factory(extra_args=["--admin-password", PASSWORD]).start()


def test_members_and_robots_set_up_with_the_cli_govern_podman_and_skopeo(
        auth_registry, registry_bin, tmp_path, containers, skopeo):
    reg = auth_registry
    host = reg.host
    admin = Cli(registry_bin, reg, ADMIN, PASSWORD)

    # Anonymous CLI calls are refused with the server's message and a non-zero exit.
    anon = Cli(registry_bin, reg, None, None).run("project", "list", check=False)
    assert anon.returncode != 0 and anon.stderr.startswith("error:"), anon

    # The admin sets up the project, the users and their roles.
    admin.run("project", "create", "team")
    assert "team" in admin.json("project", "list")["projects"]
    admin.run("user", "add", "puller", "--password-stdin", stdin=PULLER_PASSWORD + "\n")
    admin.run("user", "add", "pusher", "--password", PUSHER_PASSWORD)
    users = admin.json("user", "list")["users"]
    assert {"admin", "puller", "pusher"} <= set(users), users
    admin.run("member", "set", "team", "user:puller", "guest")
    admin.run("member", "set", "team", "user:pusher", "developer")
    members = {m["principal"]: m["role"] for m in admin.json("member", "list", "team")["members"]}
    assert members.get("user:puller") == "guest" and members.get("user:pusher") == "developer", members
    table = admin.run("member", "list", "team").stdout
    assert any("user:pusher" in line and "developer" in line for line in table.splitlines()), table

    # The pusher logs in with podman and pushes an image built with buildah.
    src = f"{host}/team/app:v1"
    pusher_auth = tmp_path / "pusher-auth.json"
    builder = containers("pusher")
    builder.podman("login", "--tls-verify=false", "--authfile", str(pusher_auth),
                   "-u", "pusher", "-p", PUSHER_PASSWORD, host)
    (tmp_path / "hello.txt").write_text("hello, team members\n")
    ctr = builder.buildah("from", "scratch").stdout.strip()
    builder.buildah("copy", ctr, str(tmp_path / "hello.txt"), "/hello.txt")
    builder.buildah("config", "--label", "e2e=members", ctr)
    builder.buildah("commit", "--format", "oci", ctr, "localhost/e2e-members:v1")
    builder.buildah("push", "--tls-verify=false", "--authfile", str(pusher_auth),
                    "localhost/e2e-members:v1", f"docker://{src}")

    # The puller logs in and pulls it, but its push is refused.
    puller_auth = tmp_path / "puller-auth.json"
    puller = containers("puller")
    puller.podman("login", "--tls-verify=false", "--authfile", str(puller_auth),
                  "-u", "puller", "-p", PULLER_PASSWORD, host)
    puller.podman("pull", "--tls-verify=false", "--authfile", str(puller_auth), src)
    inspected = json.loads(puller.podman("image", "inspect", src).stdout)[0]
    assert inspected["Labels"]["e2e"] == "members"
    res = puller.podman("push", "--tls-verify=false", "--authfile", str(puller_auth),
                        src, f"docker://{host}/team/app:by-puller", check=False)
    assert res.returncode != 0, f"the puller's push succeeded\n{res.stdout}\n{res.stderr}"
    assert_refused(res.stderr, "podman push as the guest")

    # skopeo as the puller: inspect works, copying into the repository does not.
    info = skopeo.inspect_json(f"docker://{src}", "--creds", f"puller:{PULLER_PASSWORD}")
    assert info["Labels"]["e2e"] == "members"
    res = skopeo.run("copy", "--src-tls-verify=false", "--dest-tls-verify=false",
                     "--src-creds", f"puller:{PULLER_PASSWORD}",
                     "--dest-creds", f"puller:{PULLER_PASSWORD}",
                     f"docker://{src}", f"docker://{host}/team/app:copied", check=False)
    assert res.returncode != 0, skopeo.describe(res)
    assert_refused(res.stderr, "skopeo copy as the guest")

    # A pull-only robot: its secret is shown once, and pulls with skopeo.
    out = admin.run("robot", "create", "team", "ci", "--actions", "pull").stdout
    assert "robot$team+ci" in out and "not be shown again" in out, out
    secret = next(line.split(":", 1)[1].strip() for line in out.splitlines()
                  if line.startswith("secret:"))
    robots = admin.run("robot", "list", "team").stdout
    assert "robot$team+ci" in robots and secret not in robots, robots
    robot_creds = f"robot$team+ci:{secret}"
    oci_dir = tmp_path / "robot-pull"
    skopeo.run("copy", "--src-tls-verify=false", "--src-creds", robot_creds,
               f"docker://{src}", f"oci:{oci_dir}:v1")
    assert (oci_dir / "index.json").exists()
    res = skopeo.run("copy", "--src-tls-verify=false", "--dest-tls-verify=false",
                     "--src-creds", robot_creds, "--dest-creds", robot_creds,
                     f"docker://{src}", f"docker://{host}/team/app:by-robot", check=False)
    assert res.returncode != 0, skopeo.describe(res)
    assert_refused(res.stderr, "skopeo copy as the pull-only robot")

    # Only the pusher's tag landed; the audit log names the changes.
    listed = skopeo.run("list-tags", "--tls-verify=false", "--creds", f"{ADMIN}:{PASSWORD}",
                        f"docker://{host}/team/app")
    assert json.loads(listed.stdout)["Tags"] == ["v1"], listed.stdout
    actions = [r["action"] for r in admin.json("audit", "-n", "1000")["records"]]
    for action in ("project.create", "user.create", "member.set"):
        assert action in actions, actions
