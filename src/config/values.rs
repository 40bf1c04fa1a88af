//! Value rules that several sections of a cluster file (and promfed.toml)
//! share: a URL, a path relative to the file, a Kubernetes name, a port by
//! number or name; and
//! the value types they share (`PortRef`, `ClientCert`), here so that the
//! sections depend on this module and not on each other.

use std::borrow::Cow;
use std::path::{Path, PathBuf};

use url::Url;

use super::names;
use super::quoting;
use super::toml_fields::{Problems, Spanned, StringOrInteger};

pub type Key = Option<Spanned<String>>;

/// An endpoints port, by number or by name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PortRef {
    Number(u16),
    Name(String),
}

/// As a proxy path or a message names it: `9100` or `http-metrics`.
impl std::fmt::Display for PortRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PortRef::Number(n) => write!(f, "{n}"),
            PortRef::Name(name) => f.write_str(name),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClientCert {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

/// The value of any URL key (`api_server`, `[federate] url`, `[prometheus]
/// url`, `[alertmanager] url`), parsed; each key then checks its scheme and
/// parts. A user name or password is refused here, for every key alike:
/// in a URL it would be copied into messages, the journal, status.json,
/// the last good definitions and the generated configuration, none of
/// which is kept like a credential. `hint` says where this key's
/// credentials go instead.
pub fn url(p: &mut Problems, key: &str, value: &Spanned<String>, hint: &str) -> Option<Url> {
    let refuse = |p: &mut Problems| {
        p.at(
            value.span.clone(),
            key,
            format!(
                "{} holds a user name or password: promfed takes no credentials in a URL (they would be copied into messages, logs and generated files); {hint}",
                shown_url(&value.value)
            ),
        );
    };
    if writes_userinfo(&value.value) {
        refuse(p);
        return None;
    }
    match Url::parse(&value.value) {
        Ok(u) if !u.username().is_empty() || u.password().is_some() => {
            refuse(p);
            None
        }
        Ok(u) => Some(u),
        Err(e) => {
            p.at(
                value.span.clone(),
                key,
                format!("{} is not a valid URL: {e}", shown_url(&value.value)),
            );
            None
        }
    }
}

/// Whether the text, as written, has an `@` before its path: a user name
/// or password, whatever a URL parser makes of the rest (`user:pw@host`
/// without a scheme parses as the scheme `user`).
fn writes_userinfo(text: &str) -> bool {
    let after_scheme = text.split_once("://").map_or(text, |(_, rest)| rest);
    after_scheme
        .split(['/', '?', '#', '\\'])
        .next()
        .is_some_and(|authority| authority.contains('@'))
}

/// A URL as messages quote it: in backquotes, with any user name and
/// password masked (`https://***@host`); only "the URL" when masking
/// cannot be sure to hide them.
pub fn shown_url(text: &str) -> String {
    match quoting::mask_userinfo(text) {
        Some(Cow::Owned(masked)) => format!("`{masked}`"),
        Some(Cow::Borrowed(plain)) if !plain.contains('@') => format!("`{plain}`"),
        _ => "the URL".to_string(),
    }
}

/// A file path, relative to the cluster file's folder `dir`.
pub fn path_in(p: &mut Problems, dir: &Path, key: &str, value: &Key) -> Option<PathBuf> {
    let s = value.as_ref()?;
    if s.value.is_empty() {
        p.at(s.span.clone(), key, "must not be empty");
        return None;
    }
    Some(dir.join(&s.value))
}

/// A namespace or service name: it goes into API paths, so only a
/// Kubernetes name passes; `default` when unset.
pub fn kubernetes_name(p: &mut Problems, key: &str, value: &Key, default: &str) -> Option<String> {
    match value {
        None => Some(default.to_string()),
        Some(s) if names::is_label(&s.value) => Some(s.value.clone()),
        Some(s) => {
            p.at(
                s.span.clone(),
                key,
                format!(
                    "`{}` is not a Kubernetes name (lowercase letters, digits and `-`)",
                    s.value
                ),
            );
            None
        }
    }
}

/// Plain URL path characters and no `.` or `..` segment: a path that
/// goes into a proxy path cannot leave it for another API path.
pub fn is_plain_path(p: &str) -> bool {
    p.len() <= 1024
        && p.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/-._~".contains(c))
        && !p
            .split('/')
            .any(|segment| segment == "." || segment == "..")
}

/// A port by number (1-65535) or by name (a Kubernetes port name, as
/// Services and EndpointSlices list them); `default` when unset.
pub fn port(
    p: &mut Problems,
    key: &str,
    value: &Option<Spanned<StringOrInteger>>,
    default: u16,
) -> Option<PortRef> {
    let Some(s) = value else {
        return Some(PortRef::Number(default));
    };
    match &s.value {
        StringOrInteger::Integer(n) => match u16::try_from(*n) {
            Ok(n) if n > 0 => Some(PortRef::Number(n)),
            _ => {
                p.at(
                    s.span.clone(),
                    key,
                    format!("{n} is not a port number (1-65535)"),
                );
                None
            }
        },
        StringOrInteger::String(name) if names::is_label(name) => Some(PortRef::Name(name.clone())),
        StringOrInteger::String(name) if name.is_empty() => {
            p.at(s.span.clone(), key, "must not be empty");
            None
        }
        StringOrInteger::String(name) => {
            p.at(
                s.span.clone(),
                key,
                format!("`{name}` is not a port number or a Kubernetes port name"),
            );
            None
        }
    }
}
