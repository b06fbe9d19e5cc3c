//! `AuthService`: the authentication and authorization use-cases over the identity store —
//! checking a login (throttled, audited), issuing and refreshing bearer tokens with the
//! granted subset of the requested scopes, and deciding one request.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use crate::auth::password::{verify_password, verify_unknown_user};
use crate::auth::policy::{Caller, Grants};
use crate::auth::scope::{Resource, Scope};
use crate::auth::throttle::{Decision, FailureWindow, ThrottleConfig, decide};
use crate::auth::token::{Claims, TokenIssuer};
use crate::error::{RegistryError, Result};
use crate::identity::{AuditRecord, Membership, Principal, User};
use crate::ports::{Clock, IdentityStore};

/// Robot account names start with this (`robot$<project>+<name>`), as in Harbor.
pub const ROBOT_PREFIX: &str = "robot$";

/// Settings of the token service.
#[derive(Debug, Clone)]
pub struct AuthSettings {
    /// The token endpoint's URL, announced in `WWW-Authenticate`.
    pub realm: String,
    /// The `service` (token audience).
    pub service: String,
    pub token_ttl: Duration,
    pub refresh_ttl: Duration,
    pub throttle: ThrottleConfig,
}

/// Credentials a request carries.
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    None,
    Basic { username: String, password: String },
    Bearer(String),
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::None => f.write_str("None"),
            Credentials::Basic { username, .. } => write!(f, "Basic({username}, <secret>)"),
            Credentials::Bearer(_) => f.write_str("Bearer(<token>)"),
        }
    }
}

/// The answer to one request's authorization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decided {
    /// Go ahead; the caller's token subject (`user:alice`, `robot:…`, `anonymous`), for
    /// logs and catalog filtering.
    Allowed(String),
    /// No usable credentials: 401 with a challenge for the needed scopes.
    Challenge,
    /// A valid token without the needed scope: 401 `insufficient_scope` challenge.
    InsufficientScope,
    /// Authenticated, but the caller may not: 403.
    Denied,
}

/// A token answer of the token endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenGrant {
    pub token: String,
    pub expires_in: u64,
    pub issued_at_ms: u64,
    pub refresh_token: Option<String>,
    pub granted: Vec<Scope>,
}

pub struct AuthService {
    store: Arc<dyn IdentityStore>,
    tokens: TokenIssuer,
    clock: Arc<dyn Clock>,
    settings: AuthSettings,
}

fn audit_id(now_ms: u64) -> String {
    use rand::RngCore;
    format!("{now_ms:015}-{:08x}", rand::rng().next_u32())
}

impl AuthService {
    pub fn new(
        store: Arc<dyn IdentityStore>,
        tokens: TokenIssuer,
        clock: Arc<dyn Clock>,
        settings: AuthSettings,
    ) -> Self {
        AuthService {
            store,
            tokens,
            clock,
            settings,
        }
    }

    pub fn settings(&self) -> &AuthSettings {
        &self.settings
    }

    pub fn store(&self) -> &Arc<dyn IdentityStore> {
        &self.store
    }

    /// The time source of logins, tokens and audit records.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// Records an audit event (actor, action, target).
    pub async fn audit(&self, actor: &str, action: &str, target: &str, detail: &str) -> Result<()> {
        let now = self.clock.now_millis();
        self.store
            .append_audit(&AuditRecord {
                id: audit_id(now),
                at_ms: now,
                actor: actor.to_owned(),
                action: action.to_owned(),
                target: target.to_owned(),
                detail: detail.to_owned(),
            })
            .await
    }

    /// Creates the system admin `name` with `password` if there is no such user.
    pub async fn ensure_admin(&self, name: &str, password: &str) -> Result<bool> {
        if self.store.get_user(name).await?.is_some() {
            return Ok(false);
        }
        let user = User {
            name: name.to_owned(),
            password_hash: crate::auth::hash_password(password)?,
            system_admin: true,
            disabled: false,
            created_at_ms: self.clock.now_millis(),
        };
        match self.store.create_user(&user).await {
            Ok(()) => {
                self.audit(
                    "system",
                    "user.create",
                    &format!("user:{name}"),
                    "initial admin",
                )
                .await?;
                Ok(true)
            }
            Err(RegistryError::Conflict(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn window_start(&self, now_ms: u64) -> u64 {
        let w = self.settings.throttle.window.as_millis().max(1) as u64;
        now_ms - now_ms % w
    }

    /// Checks a username and password (or robot secret): throttled per account, failures
    /// audited, the comparison constant-time inside argon2. Any failure is `Unauthorized`.
    pub async fn login(&self, username: &str, password: &str) -> Result<Caller> {
        let now = self.clock.now_millis();
        let window_start = self.window_start(now);
        let failures = self.store.login_failures(username, window_start).await?;
        let window = FailureWindow {
            started_at_ms: window_start,
            failures,
        };
        match decide(&self.settings.throttle, &window, now) {
            Decision::Allow => {}
            Decision::Delay(d) => tokio::time::sleep(d).await,
            Decision::Refuse { retry_after } => {
                let secs = retry_after.as_secs().max(1);
                return Err(RegistryError::TooManyRequests {
                    message: format!("too many failed logins; retry in {secs} s"),
                    retry_after_secs: secs,
                });
            }
        }
        let caller = self.check_password(username, password, now).await?;
        match caller {
            Some(c) => {
                if failures > 0 {
                    self.store.clear_login_failures(username).await?;
                }
                Ok(c)
            }
            None => {
                self.store
                    .record_login_failure(username, window_start)
                    .await?;
                self.audit(
                    "anonymous",
                    "login.failed",
                    &format!("account:{username}"),
                    "",
                )
                .await?;
                Err(RegistryError::Unauthorized(
                    "invalid username or password".into(),
                ))
            }
        }
    }

    async fn check_password(
        &self,
        username: &str,
        password: &str,
        now: u64,
    ) -> Result<Option<Caller>> {
        if username.starts_with(ROBOT_PREFIX) {
            return Ok(match self.store.get_robot(username).await? {
                Some(r) if verify_password(&r.secret_hash, password) => {
                    let caller = Caller::robot(&r);
                    (!caller.is_expired(now)).then_some(caller)
                }
                Some(_) => None,
                None => {
                    verify_unknown_user(password);
                    None
                }
            });
        }
        match self.store.get_user(username).await? {
            Some(u) if verify_password(&u.password_hash, password) && !u.disabled => {
                Ok(Some(self.user_caller(&u).await?))
            }
            Some(_) => Ok(None),
            None => {
                verify_unknown_user(password);
                Ok(None)
            }
        }
    }

    async fn user_caller(&self, user: &User) -> Result<Caller> {
        let groups = self.store.groups_of(&user.name).await?;
        Ok(Caller::User {
            name: user.name.clone(),
            system_admin: user.system_admin,
            groups: groups.into_iter().collect(),
        })
    }

    /// The caller a token subject names, as it is now (disabled users and expired or
    /// deleted robots are `Unauthorized`).
    pub async fn caller_of_subject(&self, subject: &str) -> Result<Caller> {
        let gone = || RegistryError::Unauthorized("the account no longer exists".into());
        if subject == "anonymous" {
            return Ok(Caller::Anonymous);
        }
        match subject.parse::<Principal>() {
            Ok(Principal::User(name)) => {
                let user = self.store.get_user(&name).await?.ok_or_else(gone)?;
                if user.disabled {
                    return Err(gone());
                }
                self.user_caller(&user).await
            }
            Ok(Principal::Robot(name)) => {
                let robot = self.store.get_robot(&name).await?.ok_or_else(gone)?;
                let caller = Caller::robot(&robot);
                if caller.is_expired(self.clock.now_millis()) {
                    return Err(gone());
                }
                Ok(caller)
            }
            _ => Err(gone()),
        }
    }

    /// The grants of `caller` now (its memberships and its groups').
    pub async fn grants(&self, caller: &Caller) -> Result<Grants> {
        let mut principals: Vec<Principal> = caller.principal().into_iter().collect();
        if let Caller::User { groups, .. } = caller {
            principals.extend(groups.iter().cloned().map(Principal::Group));
        }
        let memberships: Vec<Membership> = if principals.is_empty() {
            Vec::new()
        } else {
            self.store.memberships_of(&principals).await?
        };
        Ok(Grants::compute(
            caller,
            &memberships,
            self.clock.now_millis(),
        ))
    }

    /// Whether `project` is public, read once per `cache`.
    async fn is_public(&self, cache: &mut BTreeMap<String, bool>, project: &str) -> Result<bool> {
        if let Some(&public) = cache.get(project) {
            return Ok(public);
        }
        let public = self
            .store
            .get_project(project)
            .await?
            .is_some_and(|p| p.public);
        cache.insert(project.to_owned(), public);
        Ok(public)
    }

    /// Whether each project of `scopes` is public (one read per project).
    async fn public_projects(&self, scopes: &[Scope]) -> Result<BTreeMap<String, bool>> {
        let mut public = BTreeMap::new();
        for scope in scopes {
            if let Resource::Repository(repo) = &scope.resource {
                self.is_public(&mut public, repo.project()).await?;
            }
        }
        Ok(public)
    }

    /// The granted part of each requested scope.
    pub async fn grant(&self, caller: &Caller, requested: &[Scope]) -> Result<Vec<Scope>> {
        let grants = self.grants(caller).await?;
        let public = self.public_projects(requested).await?;
        Ok(requested
            .iter()
            .map(|s| Scope {
                resource: s.resource.clone(),
                actions: grants.granted(s, |p| public.get(p).copied().unwrap_or(false)),
            })
            .filter(|s| !s.actions.is_empty())
            .collect())
    }

    /// The token subject of `caller`.
    pub fn subject(caller: &Caller) -> String {
        caller
            .principal()
            .map_or_else(|| "anonymous".to_owned(), |p| p.to_string())
    }

    /// A bearer token for `caller` holding the granted part of `requested`, and a refresh
    /// token when asked (never for anonymous callers).
    pub async fn issue(
        &self,
        caller: &Caller,
        requested: &[Scope],
        refresh: bool,
    ) -> Result<TokenGrant> {
        let granted = self.grant(caller, requested).await?;
        let now = self.clock.now_millis();
        let subject = Self::subject(caller);
        let (token, expires_in) =
            self.tokens
                .issue(&subject, granted.clone(), now, self.settings.token_ttl)?;
        let refresh_token = match (refresh, caller) {
            (true, Caller::User { .. } | Caller::Robot { .. }) => Some(
                self.tokens
                    .issue_refresh(&subject, now, self.settings.refresh_ttl)?
                    .0,
            ),
            _ => None,
        };
        Ok(TokenGrant {
            token,
            expires_in,
            issued_at_ms: now,
            refresh_token,
            granted,
        })
    }

    /// The caller a refresh token stands for, checked against the store now.
    pub async fn refresh(&self, refresh_token: &str) -> Result<Caller> {
        let claims = self
            .tokens
            .verify_refresh(refresh_token, self.clock.now_millis())?;
        self.caller_of_subject(&claims.sub).await
    }

    /// Verifies a bearer token: signature, expiry, audience; no store read.
    pub fn verify(&self, token: &str) -> Result<Claims> {
        self.tokens.verify(token, self.clock.now_millis())
    }

    /// Decides a request needing every scope of `needs` (an empty list: any valid
    /// credentials). Bearer tokens are checked without a store read.
    pub async fn decide(&self, credentials: &Credentials, needs: &[Scope]) -> Result<Decided> {
        match credentials {
            Credentials::None => Ok(Decided::Challenge),
            Credentials::Bearer(token) => {
                let Ok(claims) = self.verify(token) else {
                    return Ok(Decided::Challenge);
                };
                let ok = needs.iter().all(|need| {
                    need.actions
                        .iter()
                        .all(|a| claims.allows(&need.resource, *a))
                });
                if !ok {
                    return Ok(Decided::InsufficientScope);
                }
                Ok(Decided::Allowed(claims.sub))
            }
            Credentials::Basic { username, password } => {
                let caller = match self.login(username, password).await {
                    Ok(c) => c,
                    Err(RegistryError::Unauthorized(_)) => return Ok(Decided::Challenge),
                    Err(e) => return Err(e),
                };
                let granted = self.grant(&caller, needs).await?;
                let all = needs.iter().all(|need| {
                    granted
                        .iter()
                        .any(|g| g.resource == need.resource && need.actions.is_subset(&g.actions))
                });
                Ok(if all {
                    Decided::Allowed(Self::subject(&caller))
                } else {
                    Decided::Denied
                })
            }
        }
    }

    /// Of `repos`, those `caller` may pull (catalog filtering).
    pub async fn pullable(&self, caller: &Caller, repos: Vec<String>) -> Result<Vec<String>> {
        let grants = self.grants(caller).await?;
        let mut public: BTreeMap<String, bool> = BTreeMap::new();
        let mut out = Vec::new();
        for name in repos {
            let Ok(repo) = name.parse::<crate::RepoName>() else {
                continue;
            };
            let project = repo.project();
            let is_public = self.is_public(&mut public, project).await?;
            let actions = grants.project_actions(project, is_public);
            if actions.contains(&crate::identity::Action::Pull) {
                out.push(name);
            }
        }
        Ok(out)
    }
}
