//! [`ReplicaUrl`]: a replica's base url, parsed and normalized (`router.replicas[].url`).

use std::fmt;

/// A replica's base url, parsed: `http://host[:port]`, normalized without a trailing slash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaUrl {
    normalized: String,
    authority: String,
    host: String,
    port: u16,
}

impl ReplicaUrl {
    /// Parses a `router.replicas[].url`. The error says what is wrong in words.
    pub fn parse(url: &str) -> Result<Self, String> {
        if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(format!("must not contain whitespace (got {url:?})"));
        }
        if url.starts_with("https://") {
            return Err(format!(
                "https:// replicas are not supported: this router speaks plain HTTP and \
                 WebSocket to its replicas; use http:// on a private network (got {url:?})"
            ));
        }
        let Some(rest) = url.strip_prefix("http://") else {
            return Err(format!("must start with http:// (got {url:?})"));
        };
        if rest.contains('?') {
            return Err(format!("must not have a query (got {url:?})"));
        }
        if rest.contains('#') {
            return Err(format!("must not have a fragment (got {url:?})"));
        }
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        // A lone trailing slash is what people write; upstream kept it and probed `//health`.
        if !path.is_empty() && path != "/" {
            return Err(format!(
                "must not have a path (got {path:?}); the router always connects to /v1/stream"
            ));
        }
        if authority.is_empty() {
            return Err(format!("has no host (got {url:?})"));
        }
        if authority.contains('@') {
            return Err(format!("must not contain user info (got {url:?})"));
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let Some((host, after)) = v6.split_once(']') else {
                return Err(format!("has an unclosed [ in the host (got {url:?})"));
            };
            let port = match after {
                "" => None,
                p => match p.strip_prefix(':') {
                    Some(p) => Some(p),
                    None => return Err(format!("has junk after the IPv6 host (got {url:?})")),
                },
            };
            (host, port)
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        if host.is_empty() {
            return Err(format!("has no host (got {url:?})"));
        }
        let host_ok = host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | ':'));
        if !host_ok {
            return Err(format!("has an invalid host {host:?}"));
        }
        let port = match port {
            None => 80,
            Some(p) => match p.parse::<u16>() {
                Ok(n) if n > 0 => n,
                _ => return Err(format!("has an invalid port {p:?} (expected 1 to 65535)")),
            },
        };
        Ok(Self {
            normalized: format!("http://{authority}"),
            authority: authority.to_owned(),
            host: host.to_owned(),
            port,
        })
    }

    /// `http://host[:port]`, no trailing slash.
    pub fn as_str(&self) -> &str {
        &self.normalized
    }

    /// `host[:port]` as written (IPv6 in brackets).
    pub fn authority(&self) -> &str {
        &self.authority
    }

    /// The host to connect to (IPv6 without brackets).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port to connect to (80 when the url has none).
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl fmt::Display for ReplicaUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.normalized)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_normalized_and_checked() {
        let u = ReplicaUrl::parse("http://a:8000/").unwrap();
        assert_eq!(u.as_str(), "http://a:8000");
        assert_eq!((u.host(), u.port()), ("a", 8000));
        let u = ReplicaUrl::parse("http://[::1]:9").unwrap();
        assert_eq!((u.host(), u.port(), u.authority()), ("::1", 9, "[::1]:9"));
        assert_eq!(ReplicaUrl::parse("http://h").unwrap().port(), 80);
        for bad in [
            "a:8000",
            "https://a",
            "http://",
            "http://a/x",
            "http://a?q=1",
            "http://a#f",
            "http://u@a",
            "http://a:0",
            "http://a:99999",
            "http://a b",
            "http://[::1",
        ] {
            assert!(ReplicaUrl::parse(bad).is_err(), "{bad}");
        }
    }
}
