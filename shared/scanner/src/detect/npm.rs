//! Parses the `package.json` manifests of installed npm packages
//! (`node_modules/<name>/package.json`, `node_modules/@scope/<name>/package.json`, at any
//! depth of nesting). The application's own `package.json` (outside `node_modules`) is not
//! reported: it is not a package installed from the registry, and manifests elsewhere are
//! often fixtures or templates. Files deeper inside a package (`node_modules/x/lib/
//! package.json`, often `{"type": "module"}`) are not manifests either.

use serde::Deserialize;

use crate::{Ecosystem, Package};

/// Whether `path` is the manifest of an installed package.
pub fn is_module_manifest(path: &str) -> bool {
    let parts: Vec<&str> = path.split('/').collect();
    let installed = |name: &str| !name.is_empty() && !name.starts_with(['.', '@']);
    match parts.as_slice() {
        [.., "node_modules", name, "package.json"] => installed(name),
        [.., "node_modules", scope, name, "package.json"] => {
            scope.starts_with('@') && scope.len() > 1 && installed(name)
        }
        _ => false,
    }
}

#[derive(Deserialize)]
struct Manifest {
    name: Option<serde_json::Value>,
    version: Option<serde_json::Value>,
}

/// The package a manifest describes; `None` without a string `name` and `version`; an error
/// when it is not JSON.
pub fn parse_package_json(
    data: &[u8],
    path: &str,
    layer: usize,
) -> Result<Option<Package>, String> {
    let data = data.strip_prefix(b"\xef\xbb\xbf").unwrap_or(data);
    let manifest: Manifest =
        serde_json::from_slice(data).map_err(|e| format!("not a package.json: {e}"))?;
    let text = |value: Option<serde_json::Value>| match value {
        Some(serde_json::Value::String(text)) if !text.trim().is_empty() => {
            Some(text.trim().to_owned())
        }
        _ => None,
    };
    let (Some(name), Some(version)) = (text(manifest.name), text(manifest.version)) else {
        return Ok(None);
    };
    Ok(Some(Package {
        ecosystem: Ecosystem::Npm,
        name,
        version,
        source_name: None,
        source_version: None,
        layer,
        path: path.to_owned(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_paths() {
        assert!(is_module_manifest("app/node_modules/express/package.json"));
        assert!(is_module_manifest("node_modules/@babel/core/package.json"));
        assert!(is_module_manifest(
            "usr/local/lib/node_modules/npm/node_modules/semver/package.json"
        ));
        assert!(!is_module_manifest("app/package.json"));
        assert!(!is_module_manifest(
            "app/node_modules/express/lib/package.json"
        ));
        assert!(!is_module_manifest("app/node_modules/@babel/package.json"));
        assert!(!is_module_manifest("app/node_modules/.bin/package.json"));
        assert!(!is_module_manifest("node_modules/package.json"));
    }

    #[test]
    fn parses_manifests() {
        let data = br#"{
  "name": "@babel/core",
  "version": "7.23.9",
  "description": "Babel compiler core.",
  "dependencies": {"@babel/code-frame": "^7.23.5"},
  "engines": {"node": ">=6.9.0"}
}"#;
        let package = parse_package_json(data, "node_modules/@babel/core/package.json", 2)
            .unwrap()
            .unwrap();
        assert_eq!(package.name, "@babel/core");
        assert_eq!(package.version, "7.23.9");
        assert_eq!(package.ecosystem, Ecosystem::Npm);
        assert_eq!(
            parse_package_json(br#"{"type":"module"}"#, "p", 0).unwrap(),
            None
        );
        assert_eq!(
            parse_package_json(br#"{"name":"x","version":1}"#, "p", 0).unwrap(),
            None
        );
        assert!(parse_package_json(b"{", "p", 0).is_err());
        assert!(
            parse_package_json(
                b"\xef\xbb\xbf{\"name\":\"a\",\"version\":\"1.0.0\"}",
                "p",
                0
            )
            .unwrap()
            .is_some()
        );
    }
}
