//! Parses `os-release` files (freedesktop.org format: `KEY=value` lines, values optionally
//! in single or double quotes) into a [`Distro`].

use crate::Distro;

/// The distribution described by an `os-release` file; `None` when it has no assignment
/// at all. `ID` defaults to `linux`, as the format says.
pub fn parse(data: &[u8]) -> Option<Distro> {
    let text = String::from_utf8_lossy(data);
    let mut distro = Distro::default();
    let mut any = false;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let value = unquote(value.trim());
        any = true;
        let slot = match key.trim() {
            "ID" => {
                distro.id = value;
                continue;
            }
            "VERSION_ID" => &mut distro.version_id,
            "VERSION_CODENAME" => &mut distro.codename,
            "PRETTY_NAME" => &mut distro.pretty_name,
            _ => continue,
        };
        *slot = (!value.is_empty()).then_some(value);
    }
    if !any {
        return None;
    }
    if distro.id.is_empty() {
        distro.id = "linux".to_owned();
    }
    Some(distro)
}

/// A shell-like value: `"…"` with `\"`, `\\`, `` \` `` and `\$` escapes, `'…'` literal, or
/// bare.
fn unquote(value: &str) -> String {
    if let Some(inner) = value.strip_prefix('"') {
        let mut out = String::new();
        let mut chars = inner.chars();
        while let Some(c) = chars.next() {
            match c {
                '"' => break,
                '\\' => match chars.next() {
                    Some(escaped @ ('"' | '\\' | '`' | '$')) => out.push(escaped),
                    Some(other) => {
                        out.push('\\');
                        out.push(other);
                    }
                    None => out.push('\\'),
                },
                c => out.push(c),
            }
        }
        out
    } else if let Some(inner) = value.strip_prefix('\'') {
        inner.split('\'').next().unwrap_or_default().to_owned()
    } else {
        value.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debian_bookworm() {
        let data = br#"PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"
NAME="Debian GNU/Linux"
VERSION_ID="12"
VERSION="12 (bookworm)"
VERSION_CODENAME=bookworm
ID=debian
HOME_URL="https://www.debian.org/"
"#;
        assert_eq!(
            parse(data),
            Some(Distro {
                id: "debian".into(),
                version_id: Some("12".into()),
                codename: Some("bookworm".into()),
                pretty_name: Some("Debian GNU/Linux 12 (bookworm)".into()),
            })
        );
    }

    #[test]
    fn alpine_and_quotes() {
        let data = b"NAME=\"Alpine Linux\"\nID=alpine\nVERSION_ID=3.19.1\n\
PRETTY_NAME='Alpine Linux v3.19'\n# comment\n";
        let distro = parse(data).unwrap();
        assert_eq!(distro.id, "alpine");
        assert_eq!(distro.version_id.as_deref(), Some("3.19.1"));
        assert_eq!(distro.pretty_name.as_deref(), Some("Alpine Linux v3.19"));
        assert_eq!(distro.codename, None);
    }

    #[test]
    fn escapes_and_defaults() {
        let distro = parse(b"PRETTY_NAME=\"A \\\"B\\\" \\$C\"\n").unwrap();
        assert_eq!(distro.id, "linux");
        assert_eq!(distro.pretty_name.as_deref(), Some("A \"B\" $C"));
        assert_eq!(parse(b"\n# nothing\n"), None);
    }

    #[test]
    fn rhel_ubi() {
        let data = br#"NAME="Red Hat Enterprise Linux"
VERSION="9.3 (Plow)"
ID="rhel"
ID_LIKE="fedora"
VERSION_ID="9.3"
PRETTY_NAME="Red Hat Enterprise Linux 9.3 (Plow)"
"#;
        let distro = parse(data).unwrap();
        assert_eq!(distro.id, "rhel");
        assert_eq!(distro.version_id.as_deref(), Some("9.3"));
    }
}
