"""End-to-end authentication: the registry started with `--admin-password` challenges
anonymous clients, and skopeo, podman and buildah get in through the Docker token flow
(`/token`); the start-up rules (auth off on loopback without an admin, refusal on a
non-loopback address, `--no-auth`); the token endpoint itself (anonymous, Basic, OAuth2
password and refresh grants, the JWT `access` claim); the signing key file under the
data dir (mode 0600, reused across restarts)."""

from __future__ import annotations

import base64
import json
import os
import stat
import subprocess
import time
import urllib.parse

import pytest

from conftest import HttpResponse, RegistryProcess, free_port
from ocilayout import Layout, sample_layers

ADMIN = "admin"
PASSWORD = "e2e-Secret-pw-42"
AUTH_ARGS = ["--admin-password", PASSWORD]
AUTH_ERROR_WORDS = ("401", "unauthorized", "authentication required")
KEY_FILE = "token-signing-key.pem"


def basic(user: str, password: str) -> dict:
    raw = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def jwt_payload(token: str) -> dict:
    """The claims of a JWT, unverified (the registry verifies; the test only reads them)."""
    part = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def access_of(token: str) -> dict[str, set[str]]:
    """The `access` claim as {"repository:name": {actions}}."""
    return {f"{a['type']}:{a['name']}": set(a["actions"]) for a in jwt_payload(token)["access"]}


def get_token(reg: RegistryProcess, scopes: list[str], headers: dict | None = None) -> HttpResponse:
    query = urllib.parse.urlencode([("service", "registry")] + [("scope", s) for s in scopes])
    return reg.request("GET", f"/token?{query}", headers)


def post_token(reg: RegistryProcess, form: list[tuple[str, str]]) -> HttpResponse:
    return reg.request("POST", "/token", {"Content-Type": "application/x-www-form-urlencoded"},
                       urllib.parse.urlencode(form).encode())


def assert_auth_error(text: str, what: str) -> None:
    low = text.lower()
    assert any(w in low for w in AUTH_ERROR_WORDS), f"{what}: no auth error in\n{text[-4000:]}"


@pytest.fixture
def auth_registry(registry_factory) -> RegistryProcess:
    """A running registry with authentication on (admin `admin` / PASSWORD)."""
    return registry_factory(extra_args=AUTH_ARGS).start()


@pytest.fixture
def layout(tmp_path):
    layout = Layout(tmp_path / "src")
    img = layout.add_image(sample_layers("auth-v1"))
    layout.tag(img.descriptor, "v1")
    return layout, img


def test_v2_challenges_without_credentials(auth_registry):
    res = auth_registry.request("GET", "/v2/")
    assert res.status == 401, res
    assert res.headers["www-authenticate"] == (
        f'Bearer realm="{auth_registry.url}/token",service="registry"')


def test_skopeo_with_creds_pushes_and_inspects_without_fails(auth_registry, skopeo, layout):
    layout_, img = layout
    ref = f"docker://{auth_registry.host}/e2e/private:v1"
    creds = f"{ADMIN}:{PASSWORD}"
    skopeo.copy(f"oci:{layout_.root}:v1", ref, "--dest-creds", creds)

    info = skopeo.inspect_json(ref, "--creds", creds)
    assert info["Digest"] == img.digest
    assert info["Layers"] == img.layer_digests

    # No credentials: the anonymous token grants nothing on a private project.
    res = skopeo.inspect(ref, check=False)
    assert res.returncode != 0, skopeo.describe(res)
    assert_auth_error(res.stderr, "inspect without creds")

    # A wrong password is refused (kept last and few: failed logins are throttled).
    res = skopeo.inspect(ref, "--creds", f"{ADMIN}:wrong-{PASSWORD}", check=False)
    assert res.returncode != 0, skopeo.describe(res)
    assert_auth_error(res.stderr, "inspect with a wrong password")
    res = skopeo.run("copy", "--dest-tls-verify=false", "--dest-creds", f"{ADMIN}:nope",
                     f"oci:{layout_.root}:v1", f"docker://{auth_registry.host}/e2e/other:v1", check=False)
    assert res.returncode != 0, skopeo.describe(res)
    assert_auth_error(res.stderr, "push with a wrong password")

    # Only the admin's push landed.
    tags = auth_registry.request("GET", "/v2/e2e/private/tags/list", basic(ADMIN, PASSWORD))
    assert tags.status == 200 and tags.json()["tags"] == ["v1"], tags
    other = auth_registry.request("GET", "/v2/e2e/other/tags/list", basic(ADMIN, PASSWORD))
    assert other.status == 404, other


def test_podman_login_push_pull_logout(auth_registry, tmp_path, containers):
    authfile = tmp_path / "podman-auth.json"
    host = auth_registry.host
    builder = containers("builder")
    builder.podman("login", "--tls-verify=false", "--authfile", str(authfile),
                   "-u", ADMIN, "-p", PASSWORD, host)
    assert host in json.loads(authfile.read_text())["auths"]

    (tmp_path / "hello.txt").write_text("hello through the token flow\n")
    ctr = builder.buildah("from", "scratch").stdout.strip()
    builder.buildah("copy", ctr, str(tmp_path / "hello.txt"), "/hello.txt")
    builder.buildah("config", "--label", "e2e=auth", ctr)
    builder.buildah("commit", "--format", "oci", ctr, "localhost/e2e-auth:v1")
    src = f"{host}/e2e/auth-buildah:v1"
    builder.buildah("push", "--tls-verify=false", "--authfile", str(authfile),
                    "localhost/e2e-auth:v1", f"docker://{src}")

    # podman pulls into empty storage with the same login, and pushes on.
    puller = containers("puller")
    puller.podman("pull", "--tls-verify=false", "--authfile", str(authfile), src)
    inspected = json.loads(puller.podman("image", "inspect", src).stdout)[0]
    assert inspected["Labels"]["e2e"] == "auth"
    dst = f"{host}/e2e/auth-podman:v1"
    puller.podman("push", "--tls-verify=false", "--authfile", str(authfile), src, f"docker://{dst}")
    tags = auth_registry.request("GET", "/v2/e2e/auth-podman/tags/list", basic(ADMIN, PASSWORD))
    assert tags.status == 200 and tags.json()["tags"] == ["v1"], tags

    # Logged out, a pull into fresh storage is refused.
    puller.podman("logout", "--authfile", str(authfile), host)
    assert host not in json.loads(authfile.read_text()).get("auths", {})
    again = containers("again")
    res = again.podman("pull", "--tls-verify=false", "--authfile", str(authfile), dst, check=False)
    assert res.returncode != 0, res
    assert_auth_error(res.stderr, "pull after logout")


# ---- start-up rules ------------------------------------------------------------------


def bare_env() -> dict:
    """The environment without anything that would turn auth on or off by itself."""
    env = dict(os.environ)
    for name in ("REGISTRY_ADMIN_PASSWORD", "REGISTRY_NO_AUTH", "REGISTRY_ADMIN_USER"):
        env.pop(name, None)
    return env


def bare_cmd(registry_bin, addr: str, data_dir, *extra: str) -> list[str]:
    return [str(registry_bin), "--backend", "embedded", "--addr", addr, "--data-dir", str(data_dir),
            "--log", "info", *extra]


def test_loopback_without_admin_serves_with_auth_off_and_warns(registry_factory):
    reg = registry_factory().start()  # the default start: 127.0.0.1, no admin password
    res = reg.request("GET", "/v2/")
    assert res.status == 200, res
    assert "www-authenticate" not in res.headers
    assert reg.request("GET", "/v2/_catalog").status == 200
    # /token has nothing to issue with auth off.
    assert get_token(reg, ["repository:x/y:pull"]).status != 200
    deadline = time.monotonic() + 5
    while "authentication is off" not in reg.log_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    log = reg.log_text()
    assert "authentication is off" in log and "REGISTRY_ADMIN_PASSWORD" in log, log


def test_all_interfaces_without_admin_refuses_to_start(registry_bin, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    port = free_port()
    res = subprocess.run(bare_cmd(registry_bin, f"0.0.0.0:{port}", data), capture_output=True,
                         text=True, timeout=60, env=bare_env(), stdin=subprocess.DEVNULL)
    out = res.stdout + res.stderr
    assert res.returncode != 0, out
    assert "REGISTRY_ADMIN_PASSWORD" in out, out
    assert "--no-auth" in out, out


def test_all_interfaces_with_no_auth_starts(registry_bin, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    log_path = tmp_path / "no-auth.log"
    port = free_port()
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(bare_cmd(registry_bin, f"0.0.0.0:{port}", data, "--no-auth"),
                                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=bare_env())
    # Only ever talked to through loopback.
    probe = RegistryProcess(registry_bin, data, log_path)
    probe.port = port
    try:
        deadline = time.monotonic() + 30
        status = None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                status = probe.request("GET", "/v2/", timeout=2).status
                if status == 200:
                    break
            except OSError:
                pass
            time.sleep(0.05)
        assert proc.poll() is None, f"exited {proc.returncode}\n{log_path.read_text(errors='replace')}"
        assert status == 200, log_path.read_text(errors="replace")
        assert "--no-auth" in log_path.read_text(errors="replace")
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    assert proc.returncode == 0, log_path.read_text(errors="replace")


# ---- the token endpoint --------------------------------------------------------------


def test_anonymous_token_grants_nothing_on_a_private_project(auth_registry):
    res = get_token(auth_registry, ["repository:x/y:pull"])
    assert res.status == 200, res
    body = res.json()
    assert body["token"] == body["access_token"]
    assert "refresh_token" not in body
    claims = jwt_payload(body["token"])
    assert claims["sub"] == "anonymous"
    assert claims["access"] == [], claims
    # And it does not open the repository.
    tags = auth_registry.request("GET", "/v2/x/y/tags/list", bearer(body["token"]))
    assert tags.status == 401, tags
    assert 'error="insufficient_scope"' in tags.headers["www-authenticate"], tags.headers


def test_basic_admin_token_holds_pull_and_push(auth_registry):
    res = get_token(auth_registry, ["repository:x/y:pull,push"], basic(ADMIN, PASSWORD))
    assert res.status == 200, res
    body = res.json()
    assert body["expires_in"] > 0 and body["issued_at"].endswith("Z")
    claims = jwt_payload(body["token"])
    assert claims["sub"] == f"user:{ADMIN}"
    assert access_of(body["token"]) == {"repository:x/y": {"pull", "push"}}, claims
    # The token is accepted: the repository does not exist yet, so 404 rather than 401.
    tags = auth_registry.request("GET", "/v2/x/y/tags/list", bearer(body["token"]))
    assert tags.status == 404, tags

    # Wrong Basic credentials get no token.
    bad = get_token(auth_registry, ["repository:x/y:pull"], basic(ADMIN, "wrong"))
    assert bad.status == 401, bad


def test_password_grant_offline_then_refresh_grant(auth_registry):
    res = post_token(auth_registry, [
        ("grant_type", "password"), ("service", "registry"), ("client_id", "e2e"),
        ("access_type", "offline"), ("username", ADMIN), ("password", PASSWORD),
        ("scope", "repository:x/y:pull,push"),
    ])
    assert res.status == 200, res
    first = res.json()
    assert first.get("refresh_token"), first
    assert access_of(first["access_token"]) == {"repository:x/y": {"pull", "push"}}
    # Without access_type=offline, no refresh token.
    online = post_token(auth_registry, [
        ("grant_type", "password"), ("service", "registry"), ("client_id", "e2e"),
        ("username", ADMIN), ("password", PASSWORD), ("scope", "repository:x/y:pull"),
    ])
    assert online.status == 200 and "refresh_token" not in online.json(), online

    # The refresh token is not an access token.
    assert auth_registry.request("GET", "/v2/", bearer(first["refresh_token"])).status == 401

    res = post_token(auth_registry, [
        ("grant_type", "refresh_token"), ("service", "registry"), ("client_id", "e2e"),
        ("refresh_token", first["refresh_token"]), ("scope", "repository:x/y:pull"),
    ])
    assert res.status == 200, res
    second = res.json()
    assert second["access_token"] and second["access_token"] != first["access_token"]
    assert jwt_payload(second["access_token"])["sub"] == f"user:{ADMIN}"
    assert access_of(second["access_token"]) == {"repository:x/y": {"pull"}}
    assert auth_registry.request("GET", "/v2/", bearer(second["access_token"])).status == 200

    # A forged refresh token is refused.
    bad = post_token(auth_registry, [("grant_type", "refresh_token"), ("service", "registry"),
                                     ("refresh_token", first["refresh_token"][:-4] + "AAAA")])
    assert bad.status == 401, bad


# ---- the signing key -----------------------------------------------------------------


def test_signing_key_file_is_private_and_reused_across_restarts(registry_factory):
    first = registry_factory(extra_args=AUTH_ARGS).start()
    key = first.data_dir / KEY_FILE
    assert key.is_file(), sorted(p.name for p in first.data_dir.iterdir())
    assert stat.S_IMODE(key.stat().st_mode) == 0o600, oct(key.stat().st_mode)
    pem = key.read_bytes()
    assert b"PRIVATE KEY" in pem

    res = get_token(first, ["repository:x/y:pull"], basic(ADMIN, PASSWORD))
    assert res.status == 200, res
    token = res.json()["token"]
    assert first.request("GET", "/v2/", bearer(token)).status == 200
    assert first.stop() == 0

    second = registry_factory(first.data_dir, extra_args=AUTH_ARGS).start()
    assert key.read_bytes() == pem, "the key file was rewritten on restart"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    res = second.request("GET", "/v2/", bearer(token))
    assert res.status == 200, f"a token from before the restart is refused: {res}"
    assert second.request("GET", "/v2/x/y/tags/list", bearer(token)).status == 404
    # Control: a token signed by some other key is not accepted.
    forged = token[: token.rindex(".") + 1] + "A" * len(token.rsplit(".", 1)[1])
    assert second.request("GET", "/v2/", bearer(forged)).status == 401
