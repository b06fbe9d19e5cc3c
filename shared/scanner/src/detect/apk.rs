//! Parses the apk database `lib/apk/db/installed` (Alpine, and other apk-based
//! distributions): one block per package, separated by blank lines, of `X:value` lines
//! (`P:` name, `V:` version, `o:` origin, the source package).

use crate::{Ecosystem, Package};

/// The installed packages; blocks without `P:` or `V:` are skipped.
pub fn parse_installed(data: &[u8], path: &str, layer: usize) -> Vec<Package> {
    let text = String::from_utf8_lossy(data);
    let mut packages = Vec::new();
    let (mut name, mut version, mut origin) = (None, None, None);
    for line in text.lines().chain(std::iter::once("")) {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            if let (Some(name), Some(version)) = (name.take(), version.take()) {
                packages.push(Package {
                    ecosystem: Ecosystem::Alpine,
                    name,
                    version,
                    source_name: origin.take(),
                    source_version: None,
                    layer,
                    path: path.to_owned(),
                });
            }
            (name, version, origin) = (None, None, None);
            continue;
        }
        let value = || Some(line[2..].trim().to_owned()).filter(|value| !value.is_empty());
        match line.as_bytes() {
            [b'P', b':', ..] => name = value(),
            [b'V', b':', ..] => version = value(),
            [b'o', b':', ..] => origin = value(),
            _ => {}
        }
    }
    packages
}

#[cfg(test)]
mod tests {
    use super::*;

    const INSTALLED: &str = "\
C:Q1Ty9DA4rsY/2tn6FmQbjfgxfdtLE=
P:musl
V:1.2.4_git20230717-r4
A:x86_64
S:407278
I:663552
T:the musl c library (libc) implementation
U:https://musl.libc.org/
L:MIT
o:musl
m:Natanael Copa <ncopa@alpinelinux.org>
t:1705325584
c:a1bc7f2a4a3c1ba4c1e5a9d6c2a0c3b2c7a4f4a2
F:lib
R:ld-musl-x86_64.so.1
a:0:0:755
Z:Q1Kf1KfDDfIdQyMqUN3ssvv4etUNU=

C:Q1fN9I8nLDmIqKyP/lc+mt3DxHgtw=
P:libcrypto3
V:3.1.4-r5
A:x86_64
o:openssl
F:usr/lib
R:libcrypto.so.3

P:incomplete
A:x86_64
";

    #[test]
    fn packages_with_origins() {
        let packages = parse_installed(INSTALLED.as_bytes(), "lib/apk/db/installed", 1);
        let summary: Vec<_> = packages
            .iter()
            .map(|p| {
                (
                    p.name.as_str(),
                    p.version.as_str(),
                    p.source_name.as_deref(),
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                ("musl", "1.2.4_git20230717-r4", Some("musl")),
                ("libcrypto3", "3.1.4-r5", Some("openssl")),
            ]
        );
        assert!(
            packages
                .iter()
                .all(|p| p.ecosystem == Ecosystem::Alpine && p.layer == 1)
        );
    }
}
