//! Who may do what: the caller, its memberships and the projects' public flags decide, deny
//! by default.
//!
//! - anonymous: pull on public projects, nothing else (not even the catalog);
//! - a user: the actions of its roles in a project, held directly or through its groups
//!   (united), and pull on every public project; a system admin: everything;
//! - a robot: the actions of its grants (and of any role a membership gives it) on each
//!   project, and pull on public projects, until it expires: from `expires_at_ms` on,
//!   nothing at all.
//!
//! The project of a repository is [`RepoName::project`]. Authenticated callers (users and
//! live robots) may list the catalog, which the HTTP layer filters to the repositories they
//! may pull.

use std::collections::{BTreeMap, BTreeSet};

use crate::auth::scope::{Resource, Scope};
use crate::identity::{Action, Group, Membership, Principal, Robot, User};
use crate::names::RepoName;

/// An authenticated (or anonymous) caller, as the policy sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    Anonymous,
    User {
        name: String,
        system_admin: bool,
        /// The groups the user belongs to.
        groups: BTreeSet<String>,
    },
    Robot {
        name: String,
        /// Project name → actions.
        grants: BTreeMap<String, BTreeSet<Action>>,
        expires_at_ms: Option<u64>,
    },
}

impl Caller {
    /// The caller for `user`, a member of those of `groups` that list it.
    pub fn user(user: &User, groups: &[Group]) -> Caller {
        Caller::User {
            name: user.name.clone(),
            system_admin: user.system_admin,
            groups: groups
                .iter()
                .filter(|g| g.members.contains(&user.name))
                .map(|g| g.name.clone())
                .collect(),
        }
    }

    /// The caller for `robot`.
    pub fn robot(robot: &Robot) -> Caller {
        Caller::Robot {
            name: robot.name.clone(),
            grants: robot.grants.clone(),
            expires_at_ms: robot.expires_at_ms,
        }
    }

    /// The principal a membership names to apply to this caller directly (`None` for
    /// anonymous). Its `Display` (`user:alice`, `robot:team+ci`) is the token subject.
    pub fn principal(&self) -> Option<Principal> {
        match self {
            Caller::Anonymous => None,
            Caller::User { name, .. } => Some(Principal::User(name.clone())),
            Caller::Robot { name, .. } => Some(Principal::Robot(name.clone())),
        }
    }

    /// Whether the caller is a robot whose expiry has passed at `now_ms`.
    pub fn is_expired(&self, now_ms: u64) -> bool {
        matches!(self, Caller::Robot { expires_at_ms: Some(exp), .. } if *exp <= now_ms)
    }

    /// Whether `membership` applies to this caller (names it, or one of its groups).
    fn holds(&self, membership: &Membership) -> bool {
        match (self, &membership.principal) {
            (Caller::User { name, .. }, Principal::User(n)) => n == name,
            (Caller::User { groups, .. }, Principal::Group(g)) => groups.contains(g),
            (Caller::Robot { name, .. }, Principal::Robot(n)) => n == name,
            _ => false,
        }
    }
}

/// What one caller may do, computed once from the caller and the memberships; the public
/// flag of a project is asked at each check.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grants {
    /// A system admin: every action everywhere.
    everything: bool,
    /// Pull on public projects (not for expired robots).
    public_pull: bool,
    /// May request `registry:catalog:*`.
    catalog: bool,
    /// Project → actions held there.
    projects: BTreeMap<String, BTreeSet<Action>>,
}

impl Grants {
    /// The grants of `caller` at `now_ms`, given memberships (those naming other principals
    /// are ignored, so a project's whole member list may be passed).
    pub fn compute(caller: &Caller, memberships: &[Membership], now_ms: u64) -> Grants {
        if caller.is_expired(now_ms) {
            return Grants::default();
        }
        let mut grants = Grants {
            everything: matches!(
                caller,
                Caller::User {
                    system_admin: true,
                    ..
                }
            ),
            public_pull: true,
            catalog: !matches!(caller, Caller::Anonymous),
            projects: BTreeMap::new(),
        };
        if let Caller::Robot { grants: own, .. } = caller {
            for (project, actions) in own {
                grants.add(project, actions.iter().copied());
            }
        }
        for m in memberships.iter().filter(|m| caller.holds(m)) {
            grants.add(&m.project, m.role.actions());
        }
        grants
    }

    fn add(&mut self, project: &str, actions: impl IntoIterator<Item = Action>) {
        self.projects
            .entry(project.to_owned())
            .or_default()
            .extend(actions);
    }

    /// Whether these are a system admin's grants.
    pub fn is_system_admin(&self) -> bool {
        self.everything
    }

    /// Whether the caller may request the catalog (whose entries are then filtered by pull).
    pub fn may_list_catalog(&self) -> bool {
        self.catalog
    }

    /// The actions the caller holds in `project`, which is public or not.
    pub fn project_actions(&self, project: &str, public: bool) -> BTreeSet<Action> {
        if self.everything {
            return crate::auth::scope::all_actions();
        }
        let mut actions = self.projects.get(project).cloned().unwrap_or_default();
        if public && self.public_pull {
            actions.insert(Action::Pull);
        }
        actions
    }

    /// Whether the caller may take `action` on `repo`, whose project is public or not.
    pub fn allows(&self, repo: &RepoName, action: Action, public: bool) -> bool {
        self.project_actions(repo.project(), public)
            .contains(&action)
    }

    /// The subset of the scope's actions the caller holds (empty: nothing granted).
    pub fn granted(
        &self,
        scope: &Scope,
        project_public: impl Fn(&str) -> bool,
    ) -> BTreeSet<Action> {
        let held = match &scope.resource {
            Resource::Repository(repo) => {
                let project = repo.project();
                self.project_actions(project, project_public(project))
            }
            Resource::Catalog if self.catalog => crate::auth::scope::all_actions(),
            Resource::Catalog => BTreeSet::new(),
        };
        scope.actions.intersection(&held).copied().collect()
    }
}

/// Whether `caller` may take `action` on `repo` at `now_ms`. `project_public` tells whether
/// a project (by name) is public; an unknown project should answer `false`.
pub fn allowed(
    caller: &Caller,
    memberships: &[Membership],
    project_public: impl Fn(&str) -> bool,
    repo: &RepoName,
    action: Action,
    now_ms: u64,
) -> bool {
    Grants::compute(caller, memberships, now_ms).allows(
        repo,
        action,
        project_public(repo.project()),
    )
}

/// The subset of the actions `scope` asks for that `caller` holds at `now_ms`: what the
/// token endpoint puts in the token's `access` for this scope.
pub fn granted_actions(
    caller: &Caller,
    memberships: &[Membership],
    project_public: impl Fn(&str) -> bool,
    scope: &Scope,
    now_ms: u64,
) -> BTreeSet<Action> {
    Grants::compute(caller, memberships, now_ms).granted(scope, project_public)
}

/// The granted part of each requested scope, scopes with nothing granted left out.
pub fn grant_scopes(
    caller: &Caller,
    memberships: &[Membership],
    project_public: impl Fn(&str) -> bool,
    requested: &[Scope],
    now_ms: u64,
) -> Vec<Scope> {
    let grants = Grants::compute(caller, memberships, now_ms);
    requested
        .iter()
        .filter_map(|s| {
            let actions = grants.granted(s, &project_public);
            (!actions.is_empty()).then(|| Scope {
                resource: s.resource.clone(),
                actions,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Role;
    use Action::*;

    const NOW: u64 = 1_000_000;
    const PROJECT: &str = "team";

    fn repo(s: &str) -> RepoName {
        s.parse().unwrap()
    }

    fn member(project: &str, principal: &str, role: Role) -> Membership {
        Membership {
            project: project.to_owned(),
            principal: principal.parse().unwrap(),
            role,
        }
    }

    fn user(name: &str, groups: &[&str]) -> Caller {
        Caller::User {
            name: name.to_owned(),
            system_admin: false,
            groups: groups.iter().map(|g| g.to_string()).collect(),
        }
    }

    fn robot(name: &str, grants: &[(&str, &[Action])], expires_at_ms: Option<u64>) -> Caller {
        Caller::Robot {
            name: name.to_owned(),
            grants: grants
                .iter()
                .map(|(p, a)| (p.to_string(), a.iter().copied().collect()))
                .collect(),
            expires_at_ms,
        }
    }

    fn set(actions: &str) -> BTreeSet<Action> {
        actions
            .split_whitespace()
            .map(|a| a.parse().unwrap())
            .collect()
    }

    /// The callers of the matrix, with the memberships that make them what they are.
    /// Every case also sees memberships of other principals, which must not leak.
    fn callers() -> Vec<(&'static str, Caller, Vec<Membership>)> {
        let mut v = vec![
            ("anonymous", Caller::Anonymous, vec![]),
            ("user, no membership", user("alice", &[]), vec![]),
            (
                "user, admin of another project",
                user("alice", &[]),
                vec![member("other", "user:alice", Role::Admin)],
            ),
            (
                "user, admin of a project with a longer name",
                user("alice", &[]),
                vec![member("team2", "user:alice", Role::Admin)],
            ),
            (
                "system admin, no membership",
                Caller::User {
                    name: "root".into(),
                    system_admin: true,
                    groups: BTreeSet::new(),
                },
                vec![],
            ),
            (
                "user in a group that is not a member",
                user("alice", &["ops"]),
                vec![member("other", "group:ops", Role::Admin)],
            ),
            (
                "user named like a member group",
                user("ops", &[]),
                vec![member(PROJECT, "group:ops", Role::Admin)],
            ),
            (
                "user named like a member robot",
                user("ci", &[]),
                vec![member(PROJECT, "robot:ci", Role::Admin)],
            ),
            (
                "user direct guest, group maintainer",
                user("alice", &["ops"]),
                vec![
                    member(PROJECT, "user:alice", Role::Guest),
                    member(PROJECT, "group:ops", Role::Maintainer),
                ],
            ),
            (
                "user direct admin, group guest",
                user("alice", &["ops"]),
                vec![
                    member(PROJECT, "user:alice", Role::Admin),
                    member(PROJECT, "group:ops", Role::Guest),
                ],
            ),
            ("robot, no grant", robot("ci", &[], None), vec![]),
            (
                "robot, grant on another project",
                robot("ci", &[("other", &[Pull, Push, Delete, Admin])], None),
                vec![],
            ),
            (
                "robot, pull",
                robot("ci", &[(PROJECT, &[Pull])], None),
                vec![],
            ),
            (
                "robot, push only",
                robot("ci", &[(PROJECT, &[Push])], None),
                vec![],
            ),
            (
                "robot, pull push",
                robot("ci", &[(PROJECT, &[Pull, Push])], Some(NOW + 1)),
                vec![],
            ),
            (
                "robot, pull push delete",
                robot("ci", &[(PROJECT, &[Pull, Push, Delete])], None),
                vec![],
            ),
            (
                "robot, pull, plus developer membership",
                robot("ci", &[(PROJECT, &[Pull])], None),
                vec![member(PROJECT, "robot:ci", Role::Developer)],
            ),
            (
                "robot, expired now",
                robot("ci", &[(PROJECT, &[Pull, Push, Delete, Admin])], Some(NOW)),
                vec![member(PROJECT, "robot:ci", Role::Admin)],
            ),
            (
                "robot, expired long ago",
                robot("ci", &[(PROJECT, &[Pull])], Some(1)),
                vec![],
            ),
            (
                "robot, membership of another robot",
                robot("ci", &[], None),
                vec![member(PROJECT, "robot:ci2", Role::Admin)],
            ),
        ];
        for role in [Role::Guest, Role::Developer, Role::Maintainer, Role::Admin] {
            v.push((
                [
                    "user direct guest",
                    "user direct developer",
                    "user direct maintainer",
                    "user direct admin",
                ][role as usize],
                user("alice", &[]),
                vec![member(PROJECT, "user:alice", role)],
            ));
            v.push((
                [
                    "user via group guest",
                    "user via group developer",
                    "user via group maintainer",
                    "user via group admin",
                ][role as usize],
                user("alice", &["devs", "ops"]),
                vec![member(PROJECT, "group:ops", role)],
            ));
        }
        // Noise: other principals' memberships in the same project.
        for (_, _, ms) in &mut v {
            ms.push(member(PROJECT, "user:mallory", Role::Admin));
            ms.push(member(PROJECT, "group:admins", Role::Admin));
            ms.push(member(PROJECT, "robot:other", Role::Admin));
        }
        v
    }

    /// The expected actions of each caller in the project `team`: (private, public).
    fn expected(label: &str) -> (&'static str, &'static str) {
        match label {
            "anonymous" => ("", "pull"),
            "user, no membership"
            | "user, admin of another project"
            | "user, admin of a project with a longer name"
            | "user in a group that is not a member"
            | "user named like a member group"
            | "user named like a member robot" => ("", "pull"),
            "system admin, no membership" => ("pull push delete admin", "pull push delete admin"),
            "user direct guest, group maintainer" => ("pull push delete", "pull push delete"),
            "user direct admin, group guest" => {
                ("pull push delete admin", "pull push delete admin")
            }
            "user direct guest" | "user via group guest" => ("pull", "pull"),
            "user direct developer" | "user via group developer" => ("pull push", "pull push"),
            "user direct maintainer" | "user via group maintainer" => {
                ("pull push delete", "pull push delete")
            }
            "user direct admin" | "user via group admin" => {
                ("pull push delete admin", "pull push delete admin")
            }
            "robot, no grant" | "robot, grant on another project" => ("", "pull"),
            "robot, membership of another robot" => ("", "pull"),
            "robot, pull" => ("pull", "pull"),
            "robot, push only" => ("push", "pull push"),
            "robot, pull push" => ("pull push", "pull push"),
            "robot, pull push delete" => ("pull push delete", "pull push delete"),
            "robot, pull, plus developer membership" => ("pull push", "pull push"),
            "robot, expired now" | "robot, expired long ago" => ("", ""),
            other => panic!("no expectation for {other:?}"),
        }
    }

    #[test]
    fn authorization_matrix() {
        let mut checked = 0;
        for (label, caller, memberships) in callers() {
            let (private, public) = expected(label);
            for (is_public, want) in [(false, set(private)), (true, set(public))] {
                let public_flag = |p: &str| p == PROJECT && is_public;
                for name in ["team/app", "team", "team/a/b/c"] {
                    let r = repo(name);
                    for action in [Pull, Push, Delete, Admin] {
                        let got = allowed(&caller, &memberships, public_flag, &r, action, NOW);
                        assert_eq!(
                            got,
                            want.contains(&action),
                            "{label}, public={is_public}, {name}, {action:?}"
                        );
                        checked += 1;
                    }
                    // The token endpoint grants exactly the held subset of any request.
                    for requested in [
                        "pull",
                        "push",
                        "pull push",
                        "pull push delete admin",
                        "delete",
                    ] {
                        let scope = Scope::repository(r.clone(), set(requested));
                        let granted =
                            granted_actions(&caller, &memberships, public_flag, &scope, NOW);
                        let expect: BTreeSet<_> =
                            set(requested).intersection(&want).copied().collect();
                        assert_eq!(
                            granted, expect,
                            "{label}, public={is_public}, {name}, {requested}"
                        );
                    }
                }
                // Nothing in a project the caller has no tie to (private, not named anywhere),
                // except for the system admin.
                let elsewhere = allowed(
                    &caller,
                    &memberships,
                    public_flag,
                    &repo("zz/app"),
                    Pull,
                    NOW,
                );
                assert_eq!(
                    elsewhere,
                    label.starts_with("system admin"),
                    "{label} in zz"
                );
            }
        }
        // 27 callers × 2 visibilities × 3 names × 4 actions.
        assert_eq!(checked, callers().len() * 2 * 3 * 4);
        println!("authorization matrix: {checked} (caller, visibility, repo, action) checks");
    }

    #[test]
    fn catalog_is_for_authenticated_live_callers() {
        let cases = [
            (Caller::Anonymous, false),
            (user("alice", &[]), true),
            (robot("ci", &[], None), true),
            (robot("ci", &[], Some(NOW + 1)), true),
            (robot("ci", &[], Some(NOW)), false),
        ];
        for (caller, want) in cases {
            let g = granted_actions(&caller, &[], |_| true, &Scope::catalog(), NOW);
            assert_eq!(!g.is_empty(), want, "{caller:?}");
            assert_eq!(Grants::compute(&caller, &[], NOW).may_list_catalog(), want);
        }
    }

    #[test]
    fn robot_expiry_is_exclusive_of_its_instant() {
        let r = robot("ci", &[(PROJECT, &[Pull])], Some(NOW));
        let team = repo("team/app");
        assert!(allowed(&r, &[], |_| false, &team, Pull, NOW - 1));
        assert!(!allowed(&r, &[], |_| false, &team, Pull, NOW));
        assert!(!allowed(&r, &[], |_| true, &team, Pull, NOW + 1));
        assert!(r.is_expired(NOW) && !r.is_expired(NOW - 1));
    }

    #[test]
    fn grant_scopes_keeps_only_what_is_granted() {
        let alice = user("alice", &[]);
        let ms = vec![member(PROJECT, "user:alice", Role::Developer)];
        let requested = vec![
            Scope::repository(repo("team/app"), [Pull, Push, Delete]),
            Scope::repository(repo("secret/app"), [Pull]),
            Scope::repository(repo("pub/app"), [Pull, Push]),
            Scope::catalog(),
        ];
        let got = grant_scopes(&alice, &ms, |p| p == "pub", &requested, NOW);
        assert_eq!(
            got,
            vec![
                Scope::repository(repo("team/app"), [Pull, Push]),
                Scope::repository(repo("pub/app"), [Pull]),
                Scope::catalog(),
            ]
        );
        assert!(grant_scopes(&Caller::Anonymous, &ms, |_| false, &requested, NOW).is_empty());
    }

    #[test]
    fn callers_from_identities() {
        let u = User {
            name: "alice".into(),
            password_hash: String::new(),
            system_admin: false,
            disabled: false,
            created_at_ms: 0,
        };
        let groups = vec![
            Group {
                name: "ops".into(),
                members: ["alice".to_owned(), "bob".to_owned()].into(),
                created_at_ms: 0,
            },
            Group {
                name: "qa".into(),
                members: ["bob".to_owned()].into(),
                created_at_ms: 0,
            },
        ];
        let c = Caller::user(&u, &groups);
        assert_eq!(c, user("alice", &["ops"]));
        assert_eq!(c.principal().unwrap().to_string(), "user:alice");
        let r = Robot {
            name: "team+ci".into(),
            secret_hash: String::new(),
            grants: [(PROJECT.to_owned(), set("pull push"))].into(),
            expires_at_ms: Some(5),
            created_by: "alice".into(),
            created_at_ms: 0,
        };
        let c = Caller::robot(&r);
        assert_eq!(c.principal().unwrap().to_string(), "robot:team+ci");
        assert!(c.is_expired(5));
        assert!(Caller::Anonymous.principal().is_none());
    }
}
