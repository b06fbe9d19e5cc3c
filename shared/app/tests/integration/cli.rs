//! The `registry` management subcommands against the real server in this process
//! (`build_state` + `registry_http::serve` on a loopback port, embedded backend in a temp
//! dir, authentication on): projects, users, passwords, groups, members, robots, the audit
//! log, webhooks and the errors, through `registry_app::cli` exactly as the binary runs them.

use clap::Parser;
use registry_app::cli::{self, Cli, CliError};
use registry_app::compose::build_state;
use registry_app::config::ServerConfig;
use serde_json::Value;

const ADMIN: &str = "admin";
const ADMIN_PASSWORD: &str = "cli-admin-Secret-1";
const ALICE_PASSWORD: &str = "alice-Secret-pw-1";
const ALICE_NEW_PASSWORD: &str = "alice-Newer-pw-2";

/// A registry served on a loopback port until the value is dropped.
struct Server {
    url: String,
    _stop: tokio::sync::oneshot::Sender<()>,
    _dir: tempfile::TempDir,
}

async fn start_server() -> Server {
    let dir = tempfile::tempdir().expect("temp dir");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("local addr");
    let config = ServerConfig::parse_from_args([
        "registry".to_owned(),
        "--backend".to_owned(),
        "embedded".to_owned(),
        "--addr".to_owned(),
        addr.to_string(),
        "--data-dir".to_owned(),
        dir.path().display().to_string(),
        "--admin-user".to_owned(),
        ADMIN.to_owned(),
        "--admin-password".to_owned(),
        ADMIN_PASSWORD.to_owned(),
        "--outbound-allow".to_owned(),
        "127.0.0.0/8".to_owned(),
    ]);
    let state = build_state(&config, true).await.expect("state");
    assert!(state.auth.is_some(), "authentication must be on");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        registry_http::serve(listener, state, async {
            let _ = stopped.await;
        })
        .await
        .expect("serve");
    });
    Server {
        url: format!("http://{addr}"),
        _stop: stop,
        _dir: dir,
    }
}

/// Runs `registry <args…>` as `creds` (none: no credentials) against `url`; the output.
async fn run(url: &str, creds: Option<(&str, &str)>, args: &[&str]) -> Result<String, CliError> {
    let mut argv: Vec<String> = std::iter::once("registry")
        .chain(args.iter().copied())
        .map(str::to_owned)
        .collect();
    argv.extend(["--registry-url".to_owned(), url.to_owned()]);
    if let Some((user, password)) = creds {
        let password_flag = if args.starts_with(&["user", "add"]) {
            "--login-password"
        } else {
            "--password"
        };
        argv.extend([
            "--username".to_owned(),
            user.to_owned(),
            password_flag.to_owned(),
            password.to_owned(),
        ]);
    }
    let parsed = Cli::try_parse_from(&argv).unwrap_or_else(|e| panic!("{argv:?}: {e}"));
    let command = parsed.command.expect("a subcommand");
    let mut out = Vec::new();
    cli::execute(&command, &mut out).await?;
    let text = String::from_utf8(out).expect("utf-8 output");
    for secret in [ADMIN_PASSWORD, ALICE_PASSWORD, ALICE_NEW_PASSWORD] {
        assert!(
            !text.contains(secret),
            "{args:?} printed a password:\n{text}"
        );
    }
    Ok(text)
}

async fn admin(url: &str, args: &[&str]) -> String {
    run(url, Some((ADMIN, ADMIN_PASSWORD)), args)
        .await
        .unwrap_or_else(|e| panic!("registry {}: {e}", args.join(" ")))
}

async fn admin_json(url: &str, args: &[&str]) -> Value {
    let mut with_json = args.to_vec();
    with_json.push("--json");
    let text = admin(url, &with_json).await;
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{args:?} --json: {e}\n{text}"))
}

fn status_of(e: &CliError) -> Option<u16> {
    match e {
        CliError::Server { status, .. } => Some(*status),
        _ => None,
    }
}

fn strings(v: &Value, key: &str) -> Vec<String> {
    v[key]
        .as_array()
        .unwrap_or_else(|| panic!("no {key} array in {v}"))
        .iter()
        .map(|s| s.as_str().expect("a name").to_owned())
        .collect()
}

/// `GET /v2/` with Basic credentials: the registry's answer to a login.
async fn v2_status(url: &str, user: &str, password: &str) -> u16 {
    reqwest::Client::new()
        .get(format!("{url}/v2/"))
        .basic_auth(user, Some(password))
        .send()
        .await
        .expect("GET /v2/")
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_manages_projects_users_members_robots_through_the_api() {
    let server = start_server().await;
    let url = server.url.as_str();

    // Without credentials: refused with the server's message, non-zero (an Err).
    let e = run(url, None, &["project", "list"])
        .await
        .expect_err("anonymous project list");
    assert_eq!(status_of(&e), Some(401), "{e}");

    // Projects.
    let out = admin(url, &["project", "create", "team"]).await;
    assert!(out.contains("team"), "{out}");
    assert!(
        strings(&admin_json(url, &["project", "list"]).await, "projects")
            .contains(&"team".to_owned())
    );
    assert!(
        admin(url, &["project", "list"])
            .await
            .lines()
            .any(|l| l == "team")
    );

    // Users; a second create of the same name is a conflict.
    let out = admin(url, &["user", "add", "alice", "--password", ALICE_PASSWORD]).await;
    assert!(out.contains("alice"), "{out}");
    let e = run(
        url,
        Some((ADMIN, ADMIN_PASSWORD)),
        &["user", "add", "alice", "--password", ALICE_PASSWORD],
    )
    .await
    .expect_err("duplicate user");
    assert_eq!(status_of(&e), Some(409), "{e}");
    assert!(e.to_string().contains("already exists"), "{e}");
    let users = strings(&admin_json(url, &["user", "list"]).await, "users");
    assert!(
        users.contains(&"alice".to_owned()) && users.contains(&ADMIN.to_owned()),
        "{users:?}"
    );
    assert!(
        admin(url, &["user", "list"])
            .await
            .lines()
            .any(|l| l == "alice")
    );

    // A non-admin user is denied admin operations; a password change takes effect.
    let e = run(url, Some(("alice", ALICE_PASSWORD)), &["user", "list"])
        .await
        .expect_err("alice lists users");
    assert_eq!(status_of(&e), Some(403), "{e}");
    admin(
        url,
        &[
            "user",
            "passwd",
            "alice",
            "--new-password",
            ALICE_NEW_PASSWORD,
        ],
    )
    .await;
    assert_eq!(v2_status(url, "alice", ALICE_NEW_PASSWORD).await, 200);

    // Members.
    let out = admin(url, &["member", "set", "team", "user:alice", "developer"]).await;
    assert!(
        out.contains("user:alice") && out.contains("developer"),
        "{out}"
    );
    let members = admin_json(url, &["member", "list", "team"]).await;
    assert!(
        members["members"]
            .as_array()
            .expect("members")
            .iter()
            .any(|m| m["principal"] == "user:alice" && m["role"] == "developer"),
        "{members}"
    );
    let table = admin(url, &["member", "list", "team"]).await;
    assert!(table.starts_with("PRINCIPAL"), "{table}");
    assert!(
        table
            .lines()
            .any(|l| l.contains("user:alice") && l.contains("developer")),
        "{table}"
    );
    let e = run(
        url,
        Some((ADMIN, ADMIN_PASSWORD)),
        &["member", "set", "team", "user:nobody", "guest"],
    )
    .await
    .expect_err("unknown principal");
    assert_eq!(status_of(&e), Some(404), "{e}");

    // Groups.
    let out = admin(url, &["group", "create", "devs", "--member", "alice"]).await;
    assert!(out.contains("devs") && out.contains("alice"), "{out}");
    admin(
        url,
        &[
            "group",
            "set-members",
            "devs",
            "--member",
            ADMIN,
            "--member",
            "alice",
        ],
    )
    .await;
    assert!(
        strings(&admin_json(url, &["group", "list"]).await, "groups").contains(&"devs".to_owned())
    );
    admin(url, &["member", "set", "team", "group:devs", "guest"]).await;
    admin(url, &["member", "remove", "team", "group:devs"]).await;
    admin(url, &["group", "delete", "devs"]).await;
    assert!(
        !strings(&admin_json(url, &["group", "list"]).await, "groups").contains(&"devs".to_owned())
    );

    // Robots: the secret is printed once, at creation, and works as a password.
    let out = admin(
        url,
        &["robot", "create", "team", "ci", "--actions", "pull,push"],
    )
    .await;
    assert!(out.contains("robot$team+ci"), "{out}");
    assert!(out.contains("not be shown again"), "{out}");
    let secret = out
        .lines()
        .find_map(|l| l.strip_prefix("secret:"))
        .map(str::trim)
        .expect("a secret line")
        .to_owned();
    assert!(!secret.is_empty());
    assert_eq!(v2_status(url, "robot$team+ci", &secret).await, 200);
    let robots = admin(url, &["robot", "list", "team"]).await;
    assert!(
        robots.contains("robot$team+ci") && robots.contains("pull"),
        "{robots}"
    );
    assert!(
        !robots.contains(&secret),
        "robot list shows the secret:\n{robots}"
    );
    let robots_json = admin(url, &["robot", "list", "team", "--json"]).await;
    assert!(!robots_json.contains(&secret), "{robots_json}");
    admin(
        url,
        &["member", "set", "team", "robot:robot$team+ci", "guest"],
    )
    .await;
    admin(url, &["member", "remove", "team", "robot:robot$team+ci"]).await;
    admin(url, &["robot", "delete", "team", "robot$team+ci"]).await;
    let robots = admin_json(url, &["robot", "list", "team"]).await;
    assert_eq!(
        robots["robots"].as_array().map(Vec::len),
        Some(0),
        "{robots}"
    );
    assert_eq!(v2_status(url, "robot$team+ci", &secret).await, 401);

    // Members removed; project visibility; audit of it all.
    admin(url, &["member", "remove", "team", "user:alice"]).await;
    let members = admin_json(url, &["member", "list", "team"]).await;
    assert!(
        !members["members"]
            .as_array()
            .expect("members")
            .iter()
            .any(|m| m["principal"] == "user:alice"),
        "{members}"
    );
    admin(url, &["project", "set-public", "team", "true"]).await;
    let audit = admin_json(url, &["audit", "-n", "1000"]).await;
    let records = audit["records"].as_array().expect("records");
    let actions: Vec<&str> = records
        .iter()
        .filter_map(|r| r["action"].as_str())
        .collect();
    for action in ["project.create", "user.create", "member.set"] {
        assert!(
            actions.contains(&action),
            "{action} not audited: {actions:?}"
        );
    }
    assert!(
        records.iter().any(|r| r["target"] == "project:team"),
        "{audit}"
    );
    let id_of = |r: &Value| match &r["id"] {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let first = id_of(records.first().expect("a record"));
    let later = admin_json(url, &["audit", "--after", &first]).await;
    let later = later["records"].as_array().expect("records");
    assert_eq!(later.len() + 1, records.len(), "--after {first}: {later:?}");
    assert!(later.iter().all(|r| id_of(r) != first), "{later:?}");
    let table = admin(url, &["audit"]).await;
    assert!(table.starts_with("ID"), "{table}");
    assert!(!table.contains(&secret), "{table}");

    // Deletions.
    admin(url, &["user", "delete", "alice"]).await;
    assert!(
        !strings(&admin_json(url, &["user", "list"]).await, "users").contains(&"alice".to_owned())
    );
    let e = run(
        url,
        Some((ADMIN, ADMIN_PASSWORD)),
        &["user", "delete", "alice"],
    )
    .await
    .expect_err("deleting a deleted user");
    assert_eq!(status_of(&e), Some(404), "{e}");
    assert!(e.to_string().contains("NAME_UNKNOWN"), "{e}");
    admin(url, &["project", "delete", "team"]).await;
    assert!(
        !strings(&admin_json(url, &["project", "list"]).await, "projects")
            .contains(&"team".to_owned())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_manages_webhooks_through_the_api() {
    let server = start_server().await;
    let url = server.url.as_str();
    admin(url, &["project", "create", "hooks"]).await;
    let created = admin_json(
        url,
        &[
            "webhook",
            "create",
            "hooks",
            "deploys",
            "--url",
            "http://127.0.0.1:9/hook",
            "--events",
            "manifest.pushed,tag.deleted",
            "--format",
            "harbor",
        ],
    )
    .await;
    let id = created["id"].as_str().expect("an id").to_owned();
    assert_eq!(created["format"], "harbor");
    assert_eq!(created["hasSecret"], false);
    assert_eq!(
        strings(&created, "eventTypes"),
        ["manifest.pushed", "tag.deleted"]
    );

    let table = admin(url, &["webhook", "list", "hooks"]).await;
    assert!(table.starts_with("ID"), "{table}");
    let row = table
        .lines()
        .find(|l| l.contains(&id))
        .expect("the policy's row");
    assert!(
        row.contains("http://127.0.0.1:9/hook") && row.contains("yes"),
        "{row}"
    );

    let log = admin(url, &["webhook", "deliveries", "hooks", &id]).await;
    assert_eq!(log.lines().count(), 1, "only the header: {log}");
    let err = run(
        url,
        Some((ADMIN, ADMIN_PASSWORD)),
        &["webhook", "redeliver", "hooks", &id, "no-such-event"],
    )
    .await
    .unwrap_err();
    assert_eq!(status_of(&err), Some(404), "{err}");

    for (target, events) in [
        (
            "http://169.254.169.254/latest/meta-data/",
            "manifest.pushed",
        ),
        ("http://127.0.0.1:9/hook", "image.pushed"),
    ] {
        let err = run(
            url,
            Some((ADMIN, ADMIN_PASSWORD)),
            &[
                "webhook", "create", "hooks", "bad", "--url", target, "--events", events,
            ],
        )
        .await
        .unwrap_err();
        assert_eq!(status_of(&err), Some(400), "{target} {events}: {err}");
    }

    let deleted = admin(url, &["webhook", "delete", "hooks", &id]).await;
    assert!(deleted.contains(&id), "{deleted}");
    let after = admin_json(url, &["webhook", "list", "hooks"]).await;
    assert_eq!(after["webhooks"], serde_json::json!([]));
}
