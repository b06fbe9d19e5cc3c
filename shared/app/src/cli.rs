//! The `registry` command line: with no subcommand it runs the server (every
//! [`ServerConfig`] flag and variable as before); its subcommands (`user`, `group`,
//! `project`, `member`, `robot`, `audit`) are clients of the management API `/api/v1` of a
//! running registry, over HTTP with Basic credentials.
//!
//! Output is human-readable by default and the server's raw JSON with `--json`. A refusal
//! prints the server's OCI error message and exits non-zero. Passwords and secrets are
//! never printed, except a robot's secret once, when the robot is created.

use std::fmt;
use std::io::{BufRead, Write};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};
use serde_json::{Value, json};

use crate::config::ServerConfig;

/// `registry`: an OCI registry; one process with embedded storage by default.
///
/// Without a subcommand it runs the server; the subcommands manage users, groups,
/// projects, members, robots and read the audit log of a running registry.
#[derive(Debug, Clone, Parser)]
#[command(name = "registry", version)]
pub struct Cli {
    #[command(flatten)]
    pub server: ServerConfig,

    #[command(subcommand)]
    pub command: Option<Command>,
}

/// A management subcommand.
#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Manage users.
    #[command(subcommand)]
    User(UserCommand),
    /// Manage groups of users.
    #[command(subcommand)]
    Group(GroupCommand),
    /// Manage projects (the first component of repository names).
    #[command(subcommand)]
    Project(ProjectCommand),
    /// Manage the members of a project and their roles.
    #[command(subcommand)]
    Member(MemberCommand),
    /// Manage a project's robot accounts.
    #[command(subcommand)]
    Robot(RobotCommand),
    /// Manage a project's webhooks and read their delivery logs.
    #[command(subcommand)]
    Webhook(WebhookCommand),
    /// The vulnerability database: status, and imports of OSV data (air-gapped updates).
    #[command(subcommand)]
    Vulndb(VulndbCommand),
    /// Show an image's scan report: a summary and a table of findings.
    Scan(ScanArgs),
    /// Read the audit log (system admins).
    Audit(AuditArgs),
    /// Proxy projects: prefetch images into the cache.
    #[command(subcommand)]
    Proxy(ProxyCommand),
}

/// `registry scan REPOSITORY DIGEST`
#[derive(Debug, Clone, Args)]
pub struct ScanArgs {
    /// `team/app`.
    pub repository: String,
    /// The image's manifest digest (`sha256:…`).
    pub digest: String,
    #[command(flatten)]
    pub client: ClientOpts,
}

/// `registry vulndb …`
#[derive(Debug, Clone, Subcommand)]
pub enum VulndbCommand {
    /// The current vulnerability database.
    Status {
        #[command(flatten)]
        client: ClientOpts,
    },
    /// Import OSV advisories: a zip of OSV JSON files is uploaded to the registry
    /// (system admins); with `--direct`, a zip or a directory is imported straight into
    /// the configured backend (`--backend aws …`, or an embedded data dir no server has
    /// open), with a progress bar.
    Import {
        /// A `.zip` of OSV JSON files, or (with `--direct`) a directory of them.
        path: std::path::PathBuf,
        /// Import into the backend directly instead of through the registry's API.
        #[arg(long)]
        direct: bool,
        #[command(flatten)]
        client: ClientOpts,
    },
}

/// How to reach and log in to the registry.
#[derive(Debug, Clone, Args)]
pub struct ClientOpts {
    /// Base URL of the registry.
    #[arg(long, env = "REGISTRY_URL", default_value = "http://127.0.0.1:5000")]
    pub registry_url: String,

    /// User (or robot) to log in as; without it, requests carry no credentials.
    #[arg(long, env = "REGISTRY_USERNAME")]
    pub username: Option<String>,

    /// Password of `--username`.
    #[arg(long, env = "REGISTRY_PASSWORD", hide_env_values = true)]
    pub password: Option<String>,

    /// Read the password of `--username` from the first line of standard input.
    #[arg(long, conflicts_with = "password")]
    pub password_stdin: bool,

    /// Print the server's raw JSON.
    #[arg(long)]
    pub json: bool,
}

/// How to reach the registry, for `user add`, whose `--password` is the new user's: the
/// caller's password is `--login-password` or `REGISTRY_PASSWORD`.
#[derive(Debug, Clone, Args)]
pub struct ClientOptsEnvPassword {
    /// Base URL of the registry.
    #[arg(long, env = "REGISTRY_URL", default_value = "http://127.0.0.1:5000")]
    pub registry_url: String,

    /// User to log in as; without it, requests carry no credentials.
    #[arg(long, env = "REGISTRY_USERNAME")]
    pub username: Option<String>,

    /// Password of `--username` (here not `--password`, which is the new user's).
    #[arg(long, env = "REGISTRY_PASSWORD", hide_env_values = true)]
    pub login_password: Option<String>,

    /// Print the server's raw JSON.
    #[arg(long)]
    pub json: bool,
}

/// `registry user …`
#[derive(Debug, Clone, Subcommand)]
pub enum UserCommand {
    /// Create a user (the caller's password: `--login-password` or REGISTRY_PASSWORD).
    Add {
        /// Name of the new user.
        name: String,
        /// Make the user a system admin.
        #[arg(long)]
        admin: bool,
        /// The new user's password.
        #[arg(long, required_unless_present = "password_stdin")]
        password: Option<String>,
        /// Read the new user's password from the first line of standard input.
        #[arg(long, conflicts_with = "password")]
        password_stdin: bool,
        #[command(flatten)]
        client: ClientOptsEnvPassword,
    },
    /// List users.
    List {
        #[command(flatten)]
        client: ClientOpts,
    },
    /// Delete a user.
    Delete {
        name: String,
        #[command(flatten)]
        client: ClientOpts,
    },
    /// Change a user's password.
    Passwd {
        name: String,
        /// The new password.
        #[arg(long, required_unless_present = "new_password_stdin")]
        new_password: Option<String>,
        /// Read the new password from the first line of standard input.
        #[arg(long, conflicts_with = "new_password")]
        new_password_stdin: bool,
        #[command(flatten)]
        client: ClientOpts,
    },
}

/// `registry group …`
#[derive(Debug, Clone, Subcommand)]
pub enum GroupCommand {
    /// Create a group.
    Create {
        name: String,
        /// A member (user name); repeat for more.
        #[arg(long = "member")]
        members: Vec<String>,
        #[command(flatten)]
        client: ClientOpts,
    },
    /// Replace a group's members.
    SetMembers {
        name: String,
        /// A member (user name); repeat for more.
        #[arg(long = "member", required = true)]
        members: Vec<String>,
        #[command(flatten)]
        client: ClientOpts,
    },
    /// List groups.
    List {
        #[command(flatten)]
        client: ClientOpts,
    },
    /// Delete a group.
    Delete {
        name: String,
        #[command(flatten)]
        client: ClientOpts,
    },
}

/// `registry project …`
#[derive(Debug, Clone, Subcommand)]
pub enum ProjectCommand {
    /// Create a project (private unless `--public`); with `--proxy-url`, a read-only
    /// pull-through cache of that upstream registry.
    Create {
        name: String,
        /// Anyone may pull from the project.
        #[arg(long)]
        public: bool,
        #[command(flatten)]
        proxy: ProxyOpts,
        #[command(flatten)]
        client: ClientOpts,
    },
    /// List the projects the caller can see.
    List {
        #[command(flatten)]
        client: ClientOpts,
    },
    /// Make a project public (`true`) or private (`false`).
    SetPublic {
        name: String,
        #[arg(action = clap::ArgAction::Set)]
        public: bool,
        #[command(flatten)]
        client: ClientOpts,
    },
    /// Delete a project.
    Delete {
        name: String,
        #[command(flatten)]
        client: ClientOpts,
    },
}

/// A proxy project's upstream (`registry project create hub --proxy-url
/// https://registry-1.docker.io`).
#[derive(Debug, Clone, Default, Args)]
pub struct ProxyOpts {
    /// Make the project a pull-through cache of this registry.
    #[arg(long)]
    pub proxy_url: Option<String>,
    /// Upstream username (anonymous without).
    #[arg(long, requires = "proxy_url")]
    pub proxy_username: Option<String>,
    /// Read the upstream password from standard input (stored sealed).
    #[arg(long, requires = "proxy_username")]
    pub proxy_password_stdin: bool,
    /// Seconds a cached tag is served before the upstream is asked again (default 300).
    #[arg(long, requires = "proxy_url")]
    pub freshness_secs: Option<u64>,
    /// Most bytes of blobs to cache.
    #[arg(long, requires = "proxy_url")]
    pub max_cache_bytes: Option<u64>,
}

impl ProxyOpts {
    /// The `proxy` object of a project creation, if any.
    fn request(&self) -> Result<Option<serde_json::Value>, CliError> {
        let Some(url) = &self.proxy_url else {
            return Ok(None);
        };
        let mut proxy = json!({ "upstreamUrl": url });
        if let Some(u) = &self.proxy_username {
            proxy["username"] = json!(u);
        }
        if self.proxy_password_stdin {
            proxy["password"] = json!(read_stdin_line()?);
        }
        if let Some(f) = self.freshness_secs {
            proxy["freshnessSecs"] = json!(f);
        }
        if let Some(m) = self.max_cache_bytes {
            proxy["maxCacheBytes"] = json!(m);
        }
        Ok(Some(proxy))
    }
}

/// `registry proxy …`
#[derive(Debug, Clone, Subcommand)]
pub enum ProxyCommand {
    /// Queue copies of images (all blobs of one platform) into a proxy project's cache,
    /// to serve them later without the upstream.
    Prefetch {
        project: String,
        /// Upstream names with a tag or digest (`library/ubuntu:18.04`).
        #[arg(required = true)]
        images: Vec<String>,
        /// `os/architecture[/variant]` for multi-platform images (default linux/amd64).
        #[arg(long)]
        platform: Option<String>,
        #[command(flatten)]
        client: ClientOpts,
    },
}

/// A project role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Role {
    Guest,
    Developer,
    Maintainer,
    Admin,
}

impl Role {
    fn as_str(self) -> &'static str {
        match self {
            Role::Guest => "guest",
            Role::Developer => "developer",
            Role::Maintainer => "maintainer",
            Role::Admin => "admin",
        }
    }
}

/// Checks a principal: `user:NAME`, `group:NAME` or `robot:robot$PROJECT+NAME`.
fn parse_principal(s: &str) -> Result<String, String> {
    match s.split_once(':') {
        Some(("user" | "group" | "robot", name)) if !name.is_empty() => Ok(s.to_owned()),
        _ => Err("expected user:NAME, group:NAME or robot:robot$PROJECT+NAME".to_owned()),
    }
}

/// `registry member …`
#[derive(Debug, Clone, Subcommand)]
pub enum MemberCommand {
    /// Give a principal a role in a project (adds or changes the membership).
    Set {
        project: String,
        /// `user:NAME`, `group:NAME` or `robot:robot$PROJECT+NAME`.
        #[arg(value_parser = parse_principal)]
        principal: String,
        #[arg(value_enum)]
        role: Role,
        #[command(flatten)]
        client: ClientOpts,
    },
    /// List a project's members.
    List {
        project: String,
        #[command(flatten)]
        client: ClientOpts,
    },
    /// Remove a principal from a project.
    Remove {
        project: String,
        #[arg(value_parser = parse_principal)]
        principal: String,
        #[command(flatten)]
        client: ClientOpts,
    },
}

/// `registry robot …`
#[derive(Debug, Clone, Subcommand)]
pub enum RobotCommand {
    /// Create a robot account; prints its name and secret (shown only this once).
    Create {
        project: String,
        /// Short name; the robot's full name is `robot$PROJECT+NAME`.
        name: String,
        /// What the robot may do, comma-separated (e.g. `pull,push`).
        #[arg(long, value_delimiter = ',', required = true)]
        actions: Vec<String>,
        /// Days until the robot expires; never without it.
        #[arg(long)]
        expires_days: Option<u32>,
        #[command(flatten)]
        client: ClientOpts,
    },
    /// List a project's robots.
    List {
        project: String,
        #[command(flatten)]
        client: ClientOpts,
    },
    /// Delete a robot (by its full name `robot$PROJECT+NAME`).
    Delete {
        project: String,
        fullname: String,
        #[command(flatten)]
        client: ClientOpts,
    },
}

/// `registry webhook …`
#[derive(Debug, Clone, Subcommand)]
pub enum WebhookCommand {
    /// Create a webhook policy: events of PROJECT are POSTed to URL.
    Create {
        project: String,
        name: String,
        /// The target (http or https).
        #[arg(long)]
        url: String,
        /// Event types, comma-separated (e.g. `manifest.pushed,scan.failed`).
        #[arg(long, value_delimiter = ',', required = true)]
        events: Vec<String>,
        /// Read the signing secret from the first line of standard input.
        #[arg(long)]
        secret_stdin: bool,
        /// Payload format.
        #[arg(long, value_enum, default_value_t = WebhookFormat::Cloudevents)]
        format: WebhookFormat,
        /// Create it disabled.
        #[arg(long)]
        disabled: bool,
        #[command(flatten)]
        client: ClientOpts,
    },
    /// List a project's webhook policies.
    List {
        project: String,
        #[command(flatten)]
        client: ClientOpts,
    },
    /// Delete a webhook policy (by id).
    Delete {
        project: String,
        id: String,
        #[command(flatten)]
        client: ClientOpts,
    },
    /// The delivery log of a policy, newest first.
    Deliveries {
        project: String,
        id: String,
        /// At most this many deliveries.
        #[arg(short = 'n', long = "limit")]
        n: Option<u32>,
        #[command(flatten)]
        client: ClientOpts,
    },
    /// Send one delivery again (by its event id).
    Redeliver {
        project: String,
        id: String,
        event: String,
        #[command(flatten)]
        client: ClientOpts,
    },
}

/// The body a webhook target receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum WebhookFormat {
    /// CloudEvents 1.0 JSON.
    Cloudevents,
    /// Harbor's webhook JSON.
    Harbor,
}

/// `registry audit`
#[derive(Debug, Clone, Args)]
pub struct AuditArgs {
    /// Only records after this id (the `id` of an earlier record).
    #[arg(long)]
    pub after: Option<String>,
    /// At most this many records.
    #[arg(short = 'n', long = "limit")]
    pub n: Option<u32>,
    #[command(flatten)]
    pub client: ClientOpts,
}

/// Why a subcommand failed.
#[derive(Debug)]
pub enum CliError {
    /// The registry answered with an error status.
    Server {
        status: u16,
        code: Option<String>,
        message: String,
    },
    /// The registry could not be reached, or answered something unreadable.
    Transport(String),
    /// Bad local input (a missing password, standard input unreadable).
    Usage(String),
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CliError::Server {
                status,
                code: Some(code),
                message,
            } => write!(f, "{message} ({code}, HTTP {status})"),
            CliError::Server {
                status,
                code: None,
                message,
            } => write!(f, "{message} (HTTP {status})"),
            CliError::Transport(m) | CliError::Usage(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for CliError {}

/// Runs a subcommand, printing to standard output; errors go to standard error and make
/// the exit code non-zero.
pub async fn run(command: Command, server: &crate::config::ServerConfig) -> ExitCode {
    let mut out = Vec::new();
    let result = match &command {
        Command::Vulndb(c) => vulndb(c, Some(server), &mut out).await,
        other => execute(other, &mut out).await,
    };
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(&out);
    let _ = stdout.flush();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs a subcommand, writing its output to `out`.
pub async fn execute(command: &Command, out: &mut dyn Write) -> Result<(), CliError> {
    match command {
        Command::User(c) => user(c, out).await,
        Command::Group(c) => group(c, out).await,
        Command::Project(c) => project(c, out).await,
        Command::Member(c) => member(c, out).await,
        Command::Robot(c) => robot(c, out).await,
        Command::Webhook(c) => webhook(c, out).await,
        Command::Vulndb(c) => vulndb(c, None, out).await,
        Command::Scan(a) => scan_report(a, out).await,
        Command::Audit(a) => audit(a, out).await,
        Command::Proxy(c) => proxy(c, out).await,
    }
}

async fn proxy(command: &ProxyCommand, out: &mut dyn Write) -> Result<(), CliError> {
    match command {
        ProxyCommand::Prefetch {
            project,
            images,
            platform,
            client,
        } => {
            let c = Client::new(client)?;
            let mut body = json!({ "images": images });
            if let Some(p) = platform {
                body["platform"] = json!(p);
            }
            let res = c
                .post(
                    &format!("/projects/{}/proxy/prefetch", encode_segment(project)),
                    body,
                )
                .await?;
            c.emit(out, &res, |o| {
                let queued = res
                    .get("queued")
                    .and_then(Value::as_array)
                    .map_or(0, Vec::len);
                writeln!(o, "queued {queued} image(s) for {project}")
            })
        }
    }
}

// ---- the HTTP client -------------------------------------------------------------------

/// A management API client for one invocation.
struct Client {
    http: reqwest::Client,
    base: String,
    creds: Option<(String, String)>,
    json: bool,
}

/// The first line of standard input, without its line ending.
fn read_stdin_line() -> Result<String, CliError> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| CliError::Usage(format!("cannot read standard input: {e}")))?;
    let line = line.trim_end_matches(['\r', '\n']).to_owned();
    if line.is_empty() {
        return Err(CliError::Usage("empty password on standard input".into()));
    }
    Ok(line)
}

/// A password from a flag or, with `stdin`, from standard input.
fn password_from(flag: &Option<String>, stdin: bool, what: &str) -> Result<String, CliError> {
    if stdin {
        return read_stdin_line();
    }
    match flag {
        Some(p) if !p.is_empty() => Ok(p.clone()),
        _ => Err(CliError::Usage(format!("{what} is missing"))),
    }
}

/// Percent-encodes one path segment (everything but RFC 3986 unreserved characters).
fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl Client {
    fn build(
        base: &str,
        username: Option<&str>,
        password: Option<String>,
        json: bool,
    ) -> Result<Self, CliError> {
        let creds = match (username, password) {
            (Some(u), Some(p)) => Some((u.to_owned(), p)),
            (Some(u), None) => {
                return Err(CliError::Usage(format!(
                    "no password for {u}: set REGISTRY_PASSWORD or pass one on the command line"
                )));
            }
            (None, _) => None,
        };
        let http = reqwest::Client::builder()
            .user_agent(concat!("registry-cli/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| CliError::Transport(format!("cannot build the HTTP client: {e}")))?;
        Ok(Client {
            http,
            base: format!("{}/api/v1", base.trim_end_matches('/')),
            creds,
            json,
        })
    }

    fn new(opts: &ClientOpts) -> Result<Self, CliError> {
        let password = if opts.password_stdin {
            Some(read_stdin_line()?)
        } else {
            opts.password.clone().filter(|p| !p.is_empty())
        };
        Client::build(
            &opts.registry_url,
            opts.username.as_deref(),
            password,
            opts.json,
        )
    }

    fn with_env_password(opts: &ClientOptsEnvPassword) -> Result<Self, CliError> {
        let password = opts.login_password.clone().filter(|p| !p.is_empty());
        Client::build(
            &opts.registry_url,
            opts.username.as_deref(),
            password,
            opts.json,
        )
    }

    /// Sends a request to `path` (under `/api/v1`); returns the body of a success (and
    /// the `Link` header), or the server's error.
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<(Value, Option<String>), CliError> {
        let body = body.map(|b| ("application/json", b.to_string().into_bytes()));
        self.send_bytes(method, path, body).await
    }

    /// [`Client::send`] with a body of any content type.
    async fn send_bytes(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<(&str, Vec<u8>)>,
    ) -> Result<(Value, Option<String>), CliError> {
        let url = format!("{}{path}", self.base);
        let mut req = self.http.request(method, &url);
        if let Some((u, p)) = &self.creds {
            req = req.basic_auth(u, Some(p));
        }
        if let Some((content_type, bytes)) = body {
            req = req
                .header(reqwest::header::CONTENT_TYPE, content_type)
                .body(bytes);
        }
        let res = req
            .send()
            .await
            .map_err(|e| CliError::Transport(format!("cannot reach {url}: {}", chain(&e))))?;
        let status = res.status();
        let link = res
            .headers()
            .get(reqwest::header::LINK)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let bytes = res
            .bytes()
            .await
            .map_err(|e| CliError::Transport(format!("reading the answer of {url}: {e}")))?;
        if !status.is_success() {
            return Err(server_error(status, &bytes));
        }
        if bytes.is_empty() {
            return Ok((Value::Null, link));
        }
        let value = serde_json::from_slice(&bytes).map_err(|e| {
            CliError::Transport(format!(
                "{url} answered {status} with a body that is not JSON: {e}"
            ))
        })?;
        Ok((value, link))
    }

    async fn get(&self, path: &str) -> Result<Value, CliError> {
        Ok(self.send(reqwest::Method::GET, path, None).await?.0)
    }

    async fn post(&self, path: &str, body: Value) -> Result<Value, CliError> {
        Ok(self.send(reqwest::Method::POST, path, Some(body)).await?.0)
    }

    async fn put(&self, path: &str, body: Value) -> Result<Value, CliError> {
        Ok(self.send(reqwest::Method::PUT, path, Some(body)).await?.0)
    }

    async fn patch(&self, path: &str, body: Value) -> Result<Value, CliError> {
        Ok(self.send(reqwest::Method::PATCH, path, Some(body)).await?.0)
    }

    async fn delete(&self, path: &str) -> Result<(), CliError> {
        self.send(reqwest::Method::DELETE, path, None).await?;
        Ok(())
    }

    /// Every name of a paginated list (`{"<key>":[names]}` with a `Link` to the next page).
    async fn list_all(&self, path: &str, key: &str) -> Result<Vec<Value>, CliError> {
        let mut all = Vec::new();
        let mut next = Some(path.to_owned());
        let mut pages = 0;
        while let Some(p) = next.take() {
            let (body, link) = self.send(reqwest::Method::GET, &p, None).await?;
            let items = body
                .get(key)
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let progressed = !items.is_empty();
            all.extend(items);
            pages += 1;
            if let Some(last) = link.as_deref().and_then(next_last)
                && progressed
                && pages < 10_000
            {
                next = Some(format!("{path}?last={}", encode_segment(&last)));
            }
        }
        Ok(all)
    }

    /// Writes the raw JSON (with `--json`) or the human form.
    fn emit(
        &self,
        out: &mut dyn Write,
        value: &Value,
        human: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
    ) -> Result<(), CliError> {
        let r = if self.json {
            let text = serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string());
            writeln!(out, "{text}")
        } else {
            human(out)
        };
        r.map_err(|e| CliError::Transport(format!("cannot write output: {e}")))
    }
}

/// An error with its causes, `outer: inner: …`.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = s.source();
    }
    text
}

/// The `last` parameter of a `Link: <…?last=X&n=…>; rel="next"` header.
fn next_last(link: &str) -> Option<String> {
    let start = link.find('<')? + 1;
    let end = start + link[start..].find('>')?;
    let query = link[start..end].split_once('?')?.1;
    query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == "last").then(|| percent_decode(v))
    })
}

/// Decodes a form-urlencoded query value (`%XX`, and `+` for a space).
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && bytes[i + 1].is_ascii_hexdigit()
            && bytes[i + 2].is_ascii_hexdigit()
            && let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16)
        {
            out.push(b);
            i += 3;
        } else {
            out.push(if bytes[i] == b'+' { b' ' } else { bytes[i] });
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The error of a refused request, from the OCI error body when there is one.
fn server_error(status: reqwest::StatusCode, body: &[u8]) -> CliError {
    let first = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.get("errors")?.as_array()?.first().cloned());
    let code = first
        .as_ref()
        .and_then(|e| e.get("code")?.as_str().map(str::to_owned));
    let message = first
        .as_ref()
        .and_then(|e| e.get("message")?.as_str().map(str::to_owned))
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| {
            let text = String::from_utf8_lossy(body).trim().to_owned();
            if text.is_empty() {
                status
                    .canonical_reason()
                    .unwrap_or("request failed")
                    .to_owned()
            } else {
                text.chars().take(500).collect()
            }
        });
    CliError::Server {
        status: status.as_u16(),
        code,
        message,
    }
}

// ---- formatting helpers ----------------------------------------------------------------

fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

fn names(items: &[Value]) -> Vec<String> {
    items
        .iter()
        .map(|v| match v {
            Value::String(s) => s.clone(),
            other => other
                .get("name")
                .and_then(Value::as_str)
                .map(str::to_owned)
                .unwrap_or_else(|| other.to_string()),
        })
        .collect()
}

/// A Unix time in milliseconds as `YYYY-MM-DD HH:MM:SS UTC`.
fn format_ms(ms: u64) -> String {
    let c = registry_core::timefmt::civil(ms);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
        c.year, c.month, c.day, c.hour, c.minute, c.second
    )
}

fn time_of(v: &Value, key: &str, none: &str) -> String {
    v.get(key)
        .and_then(Value::as_u64)
        .map(format_ms)
        .unwrap_or_else(|| none.to_owned())
}

/// Writes rows as left-aligned columns under a header.
fn table(out: &mut dyn Write, header: &[&str], rows: &[Vec<String>]) -> std::io::Result<()> {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                s.push_str(cell);
            } else {
                s.push_str(&format!("{cell:<w$}  "));
            }
        }
        s.trim_end().to_owned()
    };
    writeln!(out, "{}", line(header.to_vec()))?;
    for row in rows {
        writeln!(out, "{}", line(row.iter().map(String::as_str).collect()))?;
    }
    Ok(())
}

fn lines(out: &mut dyn Write, items: &[String]) -> std::io::Result<()> {
    for item in items {
        writeln!(out, "{item}")?;
    }
    Ok(())
}

// ---- the subcommands -------------------------------------------------------------------

async fn user(cmd: &UserCommand, out: &mut dyn Write) -> Result<(), CliError> {
    match cmd {
        UserCommand::Add {
            name,
            admin,
            password,
            password_stdin,
            client,
        } => {
            let c = Client::with_env_password(client)?;
            let password = password_from(password, *password_stdin, "the new user's password")?;
            let body = json!({"name": name, "password": password, "systemAdmin": admin});
            let res = c.post("/users", body).await?;
            c.emit(out, &res, |o| {
                let role = if *admin { " (system admin)" } else { "" };
                writeln!(o, "created user {name}{role}")
            })
        }
        UserCommand::List { client } => {
            let c = Client::new(client)?;
            let users = c.list_all("/users", "users").await?;
            c.emit(out, &json!({ "users": users }), |o| {
                lines(o, &names(&users))
            })
        }
        UserCommand::Delete { name, client } => {
            let c = Client::new(client)?;
            c.delete(&format!("/users/{}", encode_segment(name)))
                .await?;
            c.emit(out, &json!({"deleted": name}), |o| {
                writeln!(o, "deleted user {name}")
            })
        }
        UserCommand::Passwd {
            name,
            new_password,
            new_password_stdin,
            client,
        } => {
            if *new_password_stdin && client.password_stdin {
                return Err(CliError::Usage(
                    "--password-stdin and --new-password-stdin cannot both read standard input"
                        .into(),
                ));
            }
            let c = Client::new(client)?;
            let password = password_from(new_password, *new_password_stdin, "the new password")?;
            let res = c
                .patch(
                    &format!("/users/{}", encode_segment(name)),
                    json!({ "password": password }),
                )
                .await?;
            c.emit(out, &res, |o| writeln!(o, "changed the password of {name}"))
        }
    }
}

async fn group(cmd: &GroupCommand, out: &mut dyn Write) -> Result<(), CliError> {
    match cmd {
        GroupCommand::Create {
            name,
            members,
            client,
        } => {
            let c = Client::new(client)?;
            let res = c
                .post("/groups", json!({"name": name, "members": members}))
                .await?;
            c.emit(out, &res, |o| {
                writeln!(
                    o,
                    "created group {name} (members: {})",
                    members_text(&res, members)
                )
            })
        }
        GroupCommand::SetMembers {
            name,
            members,
            client,
        } => {
            let c = Client::new(client)?;
            let res = c
                .put(
                    &format!("/groups/{}", encode_segment(name)),
                    json!({ "members": members }),
                )
                .await?;
            c.emit(out, &res, |o| {
                writeln!(o, "group {name} members: {}", members_text(&res, members))
            })
        }
        GroupCommand::List { client } => {
            let c = Client::new(client)?;
            let groups = c.list_all("/groups", "groups").await?;
            c.emit(out, &json!({ "groups": groups }), |o| {
                lines(o, &names(&groups))
            })
        }
        GroupCommand::Delete { name, client } => {
            let c = Client::new(client)?;
            c.delete(&format!("/groups/{}", encode_segment(name)))
                .await?;
            c.emit(out, &json!({"deleted": name}), |o| {
                writeln!(o, "deleted group {name}")
            })
        }
    }
}

fn members_text(res: &Value, asked: &[String]) -> String {
    let list = res
        .get("members")
        .and_then(Value::as_array)
        .map(|m| names(m))
        .unwrap_or_else(|| asked.to_vec());
    if list.is_empty() {
        "none".to_owned()
    } else {
        list.join(", ")
    }
}

async fn project(cmd: &ProjectCommand, out: &mut dyn Write) -> Result<(), CliError> {
    match cmd {
        ProjectCommand::Create {
            name,
            public,
            proxy,
            client,
        } => {
            let c = Client::new(client)?;
            let mut body = json!({"name": name, "public": public});
            let upstream = proxy.request()?;
            if let Some(p) = &upstream {
                body["proxy"] = p.clone();
            }
            let res = c.post("/projects", body).await?;
            c.emit(out, &res, |o| {
                let vis = if *public { "public" } else { "private" };
                match &proxy.proxy_url {
                    Some(url) => writeln!(o, "created {vis} proxy project {name} of {url}"),
                    None => writeln!(o, "created {vis} project {name}"),
                }
            })
        }
        ProjectCommand::List { client } => {
            let c = Client::new(client)?;
            let projects = c.list_all("/projects", "projects").await?;
            c.emit(out, &json!({ "projects": projects }), |o| {
                lines(o, &names(&projects))
            })
        }
        ProjectCommand::SetPublic {
            name,
            public,
            client,
        } => {
            let c = Client::new(client)?;
            let res = c
                .patch(
                    &format!("/projects/{}", encode_segment(name)),
                    json!({ "public": public }),
                )
                .await?;
            c.emit(out, &res, |o| {
                let vis = if *public { "public" } else { "private" };
                writeln!(o, "project {name} is now {vis}")
            })
        }
        ProjectCommand::Delete { name, client } => {
            let c = Client::new(client)?;
            c.delete(&format!("/projects/{}", encode_segment(name)))
                .await?;
            c.emit(out, &json!({"deleted": name}), |o| {
                writeln!(o, "deleted project {name}")
            })
        }
    }
}

async fn member(cmd: &MemberCommand, out: &mut dyn Write) -> Result<(), CliError> {
    match cmd {
        MemberCommand::Set {
            project,
            principal,
            role,
            client,
        } => {
            let c = Client::new(client)?;
            let res = c
                .put(
                    &format!(
                        "/projects/{}/members/{}",
                        encode_segment(project),
                        encode_segment(principal)
                    ),
                    json!({ "role": role.as_str() }),
                )
                .await?;
            c.emit(out, &res, |o| {
                writeln!(o, "{principal} is {} in {project}", role.as_str())
            })
        }
        MemberCommand::List { project, client } => {
            let c = Client::new(client)?;
            let res = c
                .get(&format!("/projects/{}/members", encode_segment(project)))
                .await?;
            let rows: Vec<Vec<String>> = res
                .get("members")
                .and_then(Value::as_array)
                .map(|ms| {
                    ms.iter()
                        .map(|m| {
                            vec![
                                str_of(m, "principal").to_owned(),
                                str_of(m, "role").to_owned(),
                            ]
                        })
                        .collect()
                })
                .unwrap_or_default();
            c.emit(out, &res, |o| table(o, &["PRINCIPAL", "ROLE"], &rows))
        }
        MemberCommand::Remove {
            project,
            principal,
            client,
        } => {
            let c = Client::new(client)?;
            c.delete(&format!(
                "/projects/{}/members/{}",
                encode_segment(project),
                encode_segment(principal)
            ))
            .await?;
            c.emit(
                out,
                &json!({"removed": principal, "project": project}),
                |o| writeln!(o, "removed {principal} from {project}"),
            )
        }
    }
}

async fn robot(cmd: &RobotCommand, out: &mut dyn Write) -> Result<(), CliError> {
    match cmd {
        RobotCommand::Create {
            project,
            name,
            actions,
            expires_days,
            client,
        } => {
            let c = Client::new(client)?;
            let actions: Vec<&str> = actions
                .iter()
                .map(|a| a.trim())
                .filter(|a| !a.is_empty())
                .collect();
            if actions.is_empty() {
                return Err(CliError::Usage("--actions names no action".into()));
            }
            let res = c
                .post(
                    &format!("/projects/{}/robots", encode_segment(project)),
                    json!({"name": name, "actions": actions, "expiresInDays": expires_days}),
                )
                .await?;
            c.emit(out, &res, |o| {
                writeln!(o, "robot:   {}", str_of(&res, "name"))?;
                writeln!(o, "secret:  {}", str_of(&res, "secret"))?;
                writeln!(o, "expires: {}", time_of(&res, "expiresAt", "never"))?;
                writeln!(
                    o,
                    "The secret will not be shown again: store it now (log in as the robot name with it)."
                )
            })
        }
        RobotCommand::List { project, client } => {
            let c = Client::new(client)?;
            let res = c
                .get(&format!("/projects/{}/robots", encode_segment(project)))
                .await?;
            let rows: Vec<Vec<String>> = res
                .get("robots")
                .and_then(Value::as_array)
                .map(|rs| {
                    rs.iter()
                        .map(|r| {
                            let actions = r
                                .get("actions")
                                .and_then(Value::as_array)
                                .map(|a| names(a).join(","))
                                .unwrap_or_default();
                            vec![
                                str_of(r, "name").to_owned(),
                                actions,
                                time_of(r, "expiresAt", "never"),
                            ]
                        })
                        .collect()
                })
                .unwrap_or_default();
            c.emit(out, &res, |o| {
                table(o, &["NAME", "ACTIONS", "EXPIRES"], &rows)
            })
        }
        RobotCommand::Delete {
            project,
            fullname,
            client,
        } => {
            let c = Client::new(client)?;
            c.delete(&format!(
                "/projects/{}/robots/{}",
                encode_segment(project),
                encode_segment(fullname)
            ))
            .await?;
            c.emit(out, &json!({"deleted": fullname}), |o| {
                writeln!(o, "deleted robot {fullname}")
            })
        }
    }
}

async fn webhook(cmd: &WebhookCommand, out: &mut dyn Write) -> Result<(), CliError> {
    let hooks = |project: &str| format!("/projects/{}/webhooks", encode_segment(project));
    match cmd {
        WebhookCommand::Create {
            project,
            name,
            url,
            events,
            secret_stdin,
            format,
            disabled,
            client,
        } => {
            let c = Client::new(client)?;
            let secret = if *secret_stdin {
                Some(read_stdin_line()?)
            } else {
                None
            };
            let format = match format {
                WebhookFormat::Cloudevents => "cloudevents",
                WebhookFormat::Harbor => "harbor",
            };
            let res = c
                .post(
                    &hooks(project),
                    json!({
                        "name": name,
                        "targetUrl": url,
                        "eventTypes": events,
                        "enabled": !disabled,
                        "secret": secret,
                        "format": format,
                    }),
                )
                .await?;
            c.emit(out, &res, |o| {
                writeln!(o, "webhook: {}", str_of(&res, "id"))?;
                writeln!(o, "target:  {}", str_of(&res, "targetUrl"))
            })
        }
        WebhookCommand::List { project, client } => {
            let c = Client::new(client)?;
            let res = c.get(&hooks(project)).await?;
            let rows: Vec<Vec<String>> = res
                .get("webhooks")
                .and_then(Value::as_array)
                .map(|hs| {
                    hs.iter()
                        .map(|h| {
                            let events = h
                                .get("eventTypes")
                                .and_then(Value::as_array)
                                .map(|a| names(a).join(","))
                                .unwrap_or_default();
                            let enabled = h.get("enabled").and_then(Value::as_bool) == Some(true);
                            vec![
                                str_of(h, "id").to_owned(),
                                str_of(h, "name").to_owned(),
                                str_of(h, "targetUrl").to_owned(),
                                events,
                                if enabled { "yes" } else { "no" }.to_owned(),
                            ]
                        })
                        .collect()
                })
                .unwrap_or_default();
            c.emit(out, &res, |o| {
                table(o, &["ID", "NAME", "TARGET", "EVENTS", "ENABLED"], &rows)
            })
        }
        WebhookCommand::Delete {
            project,
            id,
            client,
        } => {
            let c = Client::new(client)?;
            c.delete(&format!("{}/{}", hooks(project), encode_segment(id)))
                .await?;
            c.emit(out, &json!({"deleted": id}), |o| {
                writeln!(o, "deleted webhook {id}")
            })
        }
        WebhookCommand::Deliveries {
            project,
            id,
            n,
            client,
        } => {
            let c = Client::new(client)?;
            let mut path = format!("{}/{}/deliveries", hooks(project), encode_segment(id));
            if let Some(n) = n {
                path.push_str(&format!("?n={n}"));
            }
            let res = c.get(&path).await?;
            let rows: Vec<Vec<String>> = res
                .get("deliveries")
                .and_then(Value::as_array)
                .map(|ds| {
                    ds.iter()
                        .map(|d| {
                            let attempts = d.get("attempts").and_then(Value::as_array);
                            let last = attempts.and_then(|a| a.last());
                            let status = last
                                .and_then(|a| a.get("httpStatus"))
                                .and_then(Value::as_u64)
                                .map(|s| s.to_string())
                                .unwrap_or_else(|| "-".into());
                            vec![
                                str_of(d, "eventId").to_owned(),
                                str_of(d, "eventType").to_owned(),
                                str_of(d, "status").to_owned(),
                                attempts.map_or(0, Vec::len).to_string(),
                                status,
                            ]
                        })
                        .collect()
                })
                .unwrap_or_default();
            c.emit(out, &res, |o| {
                table(
                    o,
                    &["EVENT", "TYPE", "STATUS", "ATTEMPTS", "LAST HTTP"],
                    &rows,
                )
            })
        }
        WebhookCommand::Redeliver {
            project,
            id,
            event,
            client,
        } => {
            let c = Client::new(client)?;
            let res = c
                .post(
                    &format!(
                        "{}/{}/deliveries/{}/redeliver",
                        hooks(project),
                        encode_segment(id),
                        encode_segment(event)
                    ),
                    json!({}),
                )
                .await?;
            c.emit(out, &res, |o| writeln!(o, "queued a re-send of {event}"))
        }
    }
}

async fn scan_report(args: &ScanArgs, out: &mut dyn Write) -> Result<(), CliError> {
    let c = Client::new(&args.client)?;
    let res = c
        .get(&format!(
            "/scan-reports?repository={}&digest={}",
            encode_segment(&args.repository),
            encode_segment(&args.digest)
        ))
        .await?;
    let rows: Vec<Vec<String>> = res
        .get("findings")
        .and_then(Value::as_array)
        .map(|fs| {
            fs.iter()
                .map(|f| {
                    vec![
                        str_of(f, "severity").to_owned(),
                        str_of(f, "id").to_owned(),
                        str_of(f, "package").to_owned(),
                        str_of(f, "installedVersion").to_owned(),
                        f.get("fixedVersion")
                            .and_then(Value::as_str)
                            .unwrap_or("-")
                            .to_owned(),
                    ]
                })
                .collect()
        })
        .unwrap_or_default();
    c.emit(out, &res, |o| {
        let s = &res["summary"];
        writeln!(
            o,
            "{}@{}: {} ({}), {} packages, database {}",
            args.repository,
            args.digest,
            str_of(&res, "status"),
            res.get("distro")
                .and_then(Value::as_str)
                .unwrap_or("no distribution"),
            res.get("packages").unwrap_or(&Value::Null),
            res.get("dbVersion")
                .and_then(Value::as_str)
                .unwrap_or("none")
        )?;
        writeln!(
            o,
            "critical {}  high {}  medium {}  low {}  unknown {}",
            s["critical"], s["high"], s["medium"], s["low"], s["unknown"]
        )?;
        if let Some(e) = res.get("error").and_then(Value::as_str) {
            writeln!(o, "error: {e}")?;
        }
        table(
            o,
            &["SEVERITY", "ID", "PACKAGE", "INSTALLED", "FIXED"],
            &rows,
        )
    })
}

/// Runs `registry vulndb …`; `server` is the backend configuration `--direct` imports
/// into (the binary's own flags).
pub async fn vulndb(
    cmd: &VulndbCommand,
    server: Option<&crate::config::ServerConfig>,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    match cmd {
        VulndbCommand::Status { client } => {
            let c = Client::new(client)?;
            let res = c.get("/vulndb").await?;
            c.emit(out, &res, |o| {
                match res.get("current").filter(|v| !v.is_null()) {
                    None => writeln!(o, "no vulnerability database imported"),
                    Some(db) => {
                        writeln!(o, "version:    {}", str_of(db, "version"))?;
                        writeln!(o, "imported:   {}", time_of(db, "importedMs", "?"))?;
                        writeln!(o, "source:     {}", str_of(db, "source"))?;
                        writeln!(
                            o,
                            "advisories: {}",
                            db.get("advisories").unwrap_or(&Value::Null)
                        )?;
                        writeln!(o, "packages:   {}", db.get("keys").unwrap_or(&Value::Null))
                    }
                }
            })
        }
        VulndbCommand::Import {
            path,
            direct: true,
            client,
        } => {
            let server = server.ok_or_else(|| {
                CliError::Usage("--direct needs the backend flags of the registry".into())
            })?;
            let info = crate::vulndb::import_direct(server, path)
                .await
                .map_err(|e| CliError::Usage(format!("import failed: {e}")))?;
            let res = serde_json::to_value(&info).unwrap_or_default();
            let c = Client::new(client)?;
            c.emit(out, &res, |o| {
                writeln!(
                    o,
                    "imported {} advisories under {} package keys as version {}",
                    info.advisories, info.keys, info.version
                )
            })
        }
        VulndbCommand::Import { path, client, .. } => {
            let c = Client::new(client)?;
            let bytes = std::fs::read(path)
                .map_err(|e| CliError::Usage(format!("cannot read {}: {e}", path.display())))?;
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "upload".into());
            let bar = crate::vulndb::spinner(&format!(
                "uploading {} ({} KiB) and importing",
                name,
                bytes.len() / 1024
            ));
            let res = c
                .send_bytes(
                    reqwest::Method::POST,
                    &format!("/vulndb?source={}", encode_segment(&name)),
                    Some(("application/zip", bytes)),
                )
                .await;
            bar.finish_and_clear();
            let res = res?.0;
            c.emit(out, &res, |o| {
                writeln!(
                    o,
                    "imported {} advisories under {} package keys as version {}",
                    res.get("advisories").unwrap_or(&Value::Null),
                    res.get("keys").unwrap_or(&Value::Null),
                    str_of(&res, "version")
                )
            })
        }
    }
}

async fn audit(args: &AuditArgs, out: &mut dyn Write) -> Result<(), CliError> {
    let c = Client::new(&args.client)?;
    let mut query = Vec::new();
    if let Some(after) = &args.after {
        query.push(format!("after={}", encode_segment(after)));
    }
    if let Some(n) = args.n {
        query.push(format!("n={n}"));
    }
    let path = if query.is_empty() {
        "/audit".to_owned()
    } else {
        format!("/audit?{}", query.join("&"))
    };
    let res = c.get(&path).await?;
    let rows: Vec<Vec<String>> = res
        .get("records")
        .and_then(Value::as_array)
        .map(|rs| {
            rs.iter()
                .map(|r| {
                    let detail = match r.get("detail") {
                        None | Some(Value::Null) => String::new(),
                        Some(Value::String(s)) => s.clone(),
                        Some(other) => other.to_string(),
                    };
                    vec![
                        match r.get("id") {
                            None | Some(Value::Null) => String::new(),
                            Some(Value::String(s)) => s.clone(),
                            Some(other) => other.to_string(),
                        },
                        time_of(r, "atMs", ""),
                        str_of(r, "actor").to_owned(),
                        str_of(r, "action").to_owned(),
                        str_of(r, "target").to_owned(),
                        detail,
                    ]
                })
                .collect()
        })
        .unwrap_or_default();
    c.emit(out, &res, |o| {
        table(
            o,
            &["ID", "TIME", "ACTOR", "ACTION", "TARGET", "DETAIL"],
            &rows,
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("registry").chain(args.iter().copied()))
    }

    fn command(args: &[&str]) -> Command {
        parse(args).expect("parses").command.expect("a subcommand")
    }

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn no_subcommand_is_the_server_with_its_flags() {
        let cli = parse(&["--addr", "127.0.0.1:5999", "--backend", "embedded"]).unwrap();
        assert!(cli.command.is_none());
        assert_eq!(cli.server.addr.port(), 5999);
        let cli = parse(&["--data-dir", "/tmp/x", "--admin-password", "pw"]).unwrap();
        assert!(cli.command.is_none());
        assert_eq!(cli.server.admin_password.as_deref(), Some("pw"));
        assert_eq!(cli.server.data_dir, std::path::PathBuf::from("/tmp/x"));
    }

    #[test]
    fn help_lists_the_subcommands() {
        let help = Cli::command().render_help().to_string();
        for sub in [
            "user", "group", "project", "member", "robot", "audit", "--addr",
        ] {
            assert!(help.contains(sub), "{sub} missing from\n{help}");
        }
    }

    #[test]
    fn user_add_takes_the_new_password_and_admin_flag() {
        let Command::User(UserCommand::Add {
            name,
            admin,
            password,
            password_stdin,
            client,
        }) = command(&[
            "user",
            "add",
            "bob",
            "--admin",
            "--password",
            "pw1",
            "--registry-url",
            "http://h:1",
            "--username",
            "root",
            "--login-password",
            "rootpw",
        ])
        else {
            panic!("not user add");
        };
        assert_eq!(client.login_password.as_deref(), Some("rootpw"));
        assert_eq!(name, "bob");
        assert!(admin && !password_stdin);
        assert_eq!(password.as_deref(), Some("pw1"));
        assert_eq!(client.registry_url, "http://h:1");
        assert_eq!(client.username.as_deref(), Some("root"));
    }

    #[test]
    fn user_add_needs_exactly_one_password_source() {
        assert!(parse(&["user", "add", "bob"]).is_err());
        assert!(parse(&["user", "add", "bob", "--password", "x", "--password-stdin"]).is_err());
        assert!(parse(&["user", "add", "bob", "--password-stdin"]).is_ok());
    }

    #[test]
    fn client_options_parse_after_the_subcommand() {
        let Command::User(UserCommand::List { client }) = command(&[
            "user",
            "list",
            "--username",
            "admin",
            "--password",
            "pw",
            "--json",
        ]) else {
            panic!("not user list");
        };
        assert_eq!(client.username.as_deref(), Some("admin"));
        assert_eq!(client.password.as_deref(), Some("pw"));
        assert!(client.json);
        assert!(parse(&["user", "list", "--password", "pw", "--password-stdin"]).is_err());
    }

    #[test]
    fn user_passwd_needs_a_new_password() {
        assert!(parse(&["user", "passwd", "bob"]).is_err());
        let Command::User(UserCommand::Passwd { new_password, .. }) =
            command(&["user", "passwd", "bob", "--new-password", "n"])
        else {
            panic!("not passwd");
        };
        assert_eq!(new_password.as_deref(), Some("n"));
    }

    #[test]
    fn group_members_repeat() {
        let Command::Group(GroupCommand::Create { name, members, .. }) =
            command(&["group", "create", "devs", "--member", "a", "--member", "b"])
        else {
            panic!("not group create");
        };
        assert_eq!(name, "devs");
        assert_eq!(members, ["a", "b"]);
        assert!(parse(&["group", "set-members", "devs"]).is_err());
        assert!(parse(&["group", "create", "devs"]).is_ok());
    }

    #[test]
    fn project_set_public_takes_a_boolean() {
        let Command::Project(ProjectCommand::SetPublic { public, .. }) =
            command(&["project", "set-public", "team", "true"])
        else {
            panic!("not set-public");
        };
        assert!(public);
        let Command::Project(ProjectCommand::SetPublic { public, .. }) =
            command(&["project", "set-public", "team", "false"])
        else {
            panic!("not set-public");
        };
        assert!(!public);
        assert!(parse(&["project", "set-public", "team", "maybe"]).is_err());
        let Command::Project(ProjectCommand::Create { public, .. }) =
            command(&["project", "create", "team", "--public"])
        else {
            panic!("not create");
        };
        assert!(public);
    }

    #[test]
    fn proxy_projects_and_prefetch_parse() {
        let Command::Project(ProjectCommand::Create { proxy, .. }) = command(&[
            "project",
            "create",
            "hub",
            "--proxy-url",
            "https://registry-1.docker.io",
            "--proxy-username",
            "me",
            "--freshness-secs",
            "60",
        ]) else {
            panic!("not create");
        };
        assert_eq!(
            proxy.proxy_url.as_deref(),
            Some("https://registry-1.docker.io")
        );
        assert_eq!(proxy.proxy_username.as_deref(), Some("me"));
        assert_eq!(proxy.freshness_secs, Some(60));
        let request = proxy.request().unwrap().unwrap();
        assert_eq!(request["upstreamUrl"], "https://registry-1.docker.io");
        assert_eq!(request["freshnessSecs"], 60);
        assert!(request.get("password").is_none());
        // Upstream settings need an upstream.
        assert!(parse(&["project", "create", "hub", "--freshness-secs", "60"]).is_err());
        let Command::Proxy(ProxyCommand::Prefetch {
            project,
            images,
            platform,
            ..
        }) = command(&[
            "proxy",
            "prefetch",
            "hub",
            "library/ubuntu:18.04",
            "library/debian:12",
            "--platform",
            "linux/arm64",
        ])
        else {
            panic!("not prefetch");
        };
        assert_eq!(project, "hub");
        assert_eq!(images, ["library/ubuntu:18.04", "library/debian:12"]);
        assert_eq!(platform.as_deref(), Some("linux/arm64"));
        assert!(
            parse(&["proxy", "prefetch", "hub"]).is_err(),
            "images are required"
        );
    }

    #[test]
    fn member_set_checks_principal_and_role() {
        let Command::Member(MemberCommand::Set {
            project,
            principal,
            role,
            ..
        }) = command(&["member", "set", "team", "robot:robot$team+ci", "developer"])
        else {
            panic!("not member set");
        };
        assert_eq!(
            (project.as_str(), principal.as_str(), role),
            ("team", "robot:robot$team+ci", Role::Developer)
        );
        assert!(parse(&["member", "set", "team", "alice", "guest"]).is_err());
        assert!(parse(&["member", "set", "team", "user:alice", "owner"]).is_err());
        assert!(parse(&["member", "remove", "team", "group:devs"]).is_ok());
    }

    #[test]
    fn robot_create_splits_actions() {
        let Command::Robot(RobotCommand::Create {
            actions,
            expires_days,
            ..
        }) = command(&[
            "robot",
            "create",
            "team",
            "ci",
            "--actions",
            "pull,push",
            "--expires-days",
            "7",
        ])
        else {
            panic!("not robot create");
        };
        assert_eq!(actions, ["pull", "push"]);
        assert_eq!(expires_days, Some(7));
        assert!(parse(&["robot", "create", "team", "ci"]).is_err());
    }

    #[test]
    fn audit_takes_after_and_n() {
        let Command::Audit(a) = command(&["audit", "--after", "5", "-n", "20"]) else {
            panic!("not audit");
        };
        assert_eq!((a.after.as_deref(), a.n), (Some("5"), Some(20)));
    }

    #[test]
    fn segments_are_percent_encoded() {
        assert_eq!(encode_segment("robot:robot$p+ci"), "robot%3Arobot%24p%2Bci");
        assert_eq!(encode_segment("a-b.c_d~e"), "a-b.c_d~e");
    }

    #[test]
    fn link_headers_give_the_next_last() {
        assert_eq!(
            next_last(r#"</api/v1/users?last=bob%2Bx&n=2>; rel="next""#).as_deref(),
            Some("bob+x")
        );
        assert_eq!(next_last("nonsense"), None);
    }

    #[test]
    fn server_errors_carry_the_oci_message() {
        let body = br#"{"errors":[{"code":"DENIED","message":"not allowed","detail":null}]}"#;
        let e = server_error(reqwest::StatusCode::FORBIDDEN, body);
        assert_eq!(e.to_string(), "not allowed (DENIED, HTTP 403)");
        let e = server_error(reqwest::StatusCode::BAD_GATEWAY, b"");
        assert_eq!(e.to_string(), "Bad Gateway (HTTP 502)");
    }

    #[test]
    fn times_format_as_utc() {
        assert_eq!(format_ms(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(format_ms(1_709_251_200_000), "2024-03-01 00:00:00 UTC");
    }
}
