//! Docker token scopes: `repository:<name>:<actions>` and `registry:catalog:*`, parsed from
//! the `scope` parameters of a token request and printed back.
//!
//! Grammar (the distribution token spec): `type[(class)]:name:actions`, actions comma
//! separated; several scopes in one parameter are separated by spaces. The name is
//! everything between the first and the last colon. A resource class (`repository(plugin)`)
//! is accepted and dropped. `*` stands for every action.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use crate::error::{RegistryError, Result};
use crate::identity::Action;
use crate::names::RepoName;

/// Every action, in order: what `*` means.
pub const ALL_ACTIONS: [Action; 4] = [Action::Pull, Action::Push, Action::Delete, Action::Admin];

/// The set of every action.
pub fn all_actions() -> BTreeSet<Action> {
    ALL_ACTIONS.into_iter().collect()
}

/// What a scope is about.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Resource {
    /// `repository:<name>:…` (also `repository(<class>):<name>:…`).
    Repository(RepoName),
    /// `registry:catalog:*`: listing the repositories (the answer is filtered per caller).
    Catalog,
}

impl Resource {
    /// The `type` of the resource in a token's `access` claim.
    pub fn type_str(&self) -> &'static str {
        match self {
            Resource::Repository(_) => "repository",
            Resource::Catalog => "registry",
        }
    }

    /// The `name` of the resource in a token's `access` claim.
    pub fn name(&self) -> &str {
        match self {
            Resource::Repository(r) => r.as_str(),
            Resource::Catalog => "catalog",
        }
    }

    /// The resource of a `(type, name)` pair, as found in a scope or a token's `access`.
    pub fn from_parts(kind: &str, name: &str) -> Result<Resource> {
        let base = match kind.split_once('(') {
            Some((base, class)) => {
                let class = class
                    .strip_suffix(')')
                    .ok_or_else(|| invalid(kind, "unclosed resource class"))?;
                if class.is_empty() || !class.bytes().all(|c| c.is_ascii_alphanumeric()) {
                    return Err(invalid(kind, "invalid resource class"));
                }
                base
            }
            None => kind,
        };
        match (base, name) {
            ("repository", name) => Ok(Resource::Repository(name.parse()?)),
            ("registry", _) if base != kind => Err(invalid(kind, "no class on registry")),
            ("registry", "catalog") => Ok(Resource::Catalog),
            ("registry", other) => Err(invalid(other, "unknown registry resource")),
            (other, _) => Err(invalid(other, "unknown resource type")),
        }
    }
}

/// One resource and the actions requested (or granted) on it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Scope {
    pub resource: Resource,
    pub actions: BTreeSet<Action>,
}

impl Scope {
    /// A repository scope.
    pub fn repository(name: RepoName, actions: impl IntoIterator<Item = Action>) -> Scope {
        Scope {
            resource: Resource::Repository(name),
            actions: actions.into_iter().collect(),
        }
    }

    /// `registry:catalog:*`.
    pub fn catalog() -> Scope {
        Scope {
            resource: Resource::Catalog,
            actions: all_actions(),
        }
    }

    /// The actions as printed: `*` for all of them, else their names in order.
    pub fn action_strings(&self) -> Vec<String> {
        action_strings(&self.actions)
    }
}

/// `*` for every action, else the names in order (as in a scope and a token's `access`).
pub fn action_strings(actions: &BTreeSet<Action>) -> Vec<String> {
    if actions.len() == ALL_ACTIONS.len() {
        vec!["*".to_owned()]
    } else {
        actions.iter().map(|a| a.as_str().to_owned()).collect()
    }
}

/// Parses action names: `pull`, `push`, `delete`, `admin`, or `*` (every action).
pub fn parse_actions<'a>(
    items: impl IntoIterator<Item = &'a str>,
    context: &str,
) -> Result<BTreeSet<Action>> {
    let mut actions = BTreeSet::new();
    for item in items {
        match item {
            "*" => actions.extend(ALL_ACTIONS),
            "" => return Err(invalid(context, "empty action")),
            other => {
                actions.insert(
                    other
                        .parse::<Action>()
                        .map_err(|_| invalid(context, "unknown action"))?,
                );
            }
        }
    }
    Ok(actions)
}

fn invalid(what: &str, why: &str) -> RegistryError {
    RegistryError::Unsupported(format!("invalid scope {what:?}: {why}"))
}

impl FromStr for Scope {
    type Err = RegistryError;

    fn from_str(s: &str) -> Result<Self> {
        let (kind, rest) = s
            .split_once(':')
            .ok_or_else(|| invalid(s, "expected type:name:actions"))?;
        let (name, actions) = rest
            .rsplit_once(':')
            .ok_or_else(|| invalid(s, "expected type:name:actions"))?;
        let resource = Resource::from_parts(kind, name)?;
        let actions = parse_actions(actions.split(','), s)?;
        if resource == Resource::Catalog && actions.len() != ALL_ACTIONS.len() {
            return Err(invalid(s, "the catalog scope is registry:catalog:*"));
        }
        Ok(Scope { resource, actions })
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}",
            self.resource.type_str(),
            self.resource.name(),
            self.action_strings().join(",")
        )
    }
}

/// Parses the `scope` parameters of a token request: each may hold several scopes separated
/// by spaces. Scopes on the same resource are merged (their actions united), in the order
/// of first appearance. No parameter, or only blank ones, is no scope (a login).
pub fn parse_scopes<'a>(params: impl IntoIterator<Item = &'a str>) -> Result<Vec<Scope>> {
    let mut scopes: Vec<Scope> = Vec::new();
    for one in params.into_iter().flat_map(str::split_whitespace) {
        let scope: Scope = one.parse()?;
        match scopes.iter_mut().find(|s| s.resource == scope.resource) {
            Some(existing) => existing.actions.extend(scope.actions),
            None => scopes.push(scope),
        }
    }
    Ok(scopes)
}

/// Prints scopes as one space-separated string (a `WWW-Authenticate` `scope` value).
pub fn format_scopes(scopes: &[Scope]) -> String {
    scopes
        .iter()
        .map(Scope::to_string)
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use Action::*;

    fn repo(s: &str) -> RepoName {
        s.parse().unwrap()
    }

    #[test]
    fn parses_repository_scopes() {
        let cases: &[(&str, &str, &[Action])] = &[
            ("repository:team/app:pull", "team/app", &[Pull]),
            ("repository:team/app:push", "team/app", &[Push]),
            ("repository:team/app:pull,push", "team/app", &[Pull, Push]),
            ("repository:team/app:push,pull", "team/app", &[Pull, Push]),
            ("repository:team/app:delete", "team/app", &[Delete]),
            ("repository:a:pull,pull", "a", &[Pull]),
            ("repository:a/b/c:*", "a/b/c", &[Pull, Push, Delete, Admin]),
            ("repository:a:pull,*", "a", &[Pull, Push, Delete, Admin]),
            ("repository(plugin):team/p:pull", "team/p", &[Pull]),
            ("repository:a:admin", "a", &[Admin]),
        ];
        for (text, name, actions) in cases {
            let s: Scope = text.parse().unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(s.resource, Resource::Repository(repo(name)), "{text}");
            assert_eq!(
                s.actions,
                actions.iter().copied().collect::<BTreeSet<_>>(),
                "{text}"
            );
        }
    }

    #[test]
    fn parses_the_catalog_scope() {
        let s: Scope = "registry:catalog:*".parse().unwrap();
        assert_eq!(s, Scope::catalog());
        assert_eq!(s.to_string(), "registry:catalog:*");
    }

    #[test]
    fn prints_canonical_scopes_that_parse_back() {
        let cases = [
            (
                "repository:team/app:push,pull",
                "repository:team/app:pull,push",
            ),
            ("repository:a:pull,push,delete,admin", "repository:a:*"),
            ("repository:a:*", "repository:a:*"),
            ("repository(plugin):a:pull", "repository:a:pull"),
            ("repository:a:delete", "repository:a:delete"),
            ("registry:catalog:*", "registry:catalog:*"),
        ];
        for (input, printed) in cases {
            let s: Scope = input.parse().unwrap();
            assert_eq!(s.to_string(), printed, "{input}");
            assert_eq!(printed.parse::<Scope>().unwrap(), s, "{input}");
        }
    }

    #[test]
    fn refuses_invalid_scopes() {
        for bad in [
            "",
            "repository",
            "repository:a",
            "repository::pull",
            "repository:a:",
            "repository:a:pull,",
            "repository:a:,pull",
            "repository:a:fetch",
            "repository:a:PULL",
            "repository:A:pull",
            "repository:a/:pull",
            "repository:host:5000/a:pull",
            "repository(:a:pull",
            "repository():a:pull",
            "repository(pl-ugin):a:pull",
            "image:a:pull",
            "registry:catalog:pull",
            "registry:catalog:",
            "registry:other:*",
            "registry(x):catalog:*",
        ] {
            assert!(bad.parse::<Scope>().is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn several_scopes_in_several_params_merge_by_resource() {
        let scopes = parse_scopes([
            "repository:a/b:pull  repository:c:push",
            "repository:a/b:push",
            " registry:catalog:* ",
        ])
        .unwrap();
        assert_eq!(
            scopes,
            vec![
                Scope::repository(repo("a/b"), [Pull, Push]),
                Scope::repository(repo("c"), [Push]),
                Scope::catalog(),
            ]
        );
        assert_eq!(
            format_scopes(&scopes),
            "repository:a/b:pull,push repository:c:push registry:catalog:*"
        );
        assert!(parse_scopes([]).unwrap().is_empty());
        assert!(parse_scopes(["", "  "]).unwrap().is_empty());
        assert!(parse_scopes(["repository:a:pull", "repository:b:nope"]).is_err());
    }
}
