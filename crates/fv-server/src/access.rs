//! Who may open `/v1/stream` and `/ws`: the optional shared token, the browser-origin allow-list, and
//! the per-address session limit (protocol-facts §18 item 4: upstream has none of them).

use crate::config::StreamingConfig;
use crate::error::Failure;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// Why an upgrade was refused before it became a WebSocket.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("missing or wrong token")]
    Unauthorized,
    #[error("origin {0:?} is not allowed")]
    Origin(String),
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let status = match self {
            Refusal::Unauthorized => StatusCode::UNAUTHORIZED,
            Refusal::Origin(_) => StatusCode::FORBIDDEN,
        };
        (status, self.to_string()).into_response()
    }
}

/// Checks the token and the origin of an upgrade request.
pub fn check(config: &StreamingConfig, headers: &HeaderMap, uri: &Uri) -> Result<(), Refusal> {
    check_token(config, headers, uri)?;
    if !config.allowed_origins.is_empty()
        && let Some(origin) = headers.get(header::ORIGIN)
    {
        let origin = origin.to_str().unwrap_or("<not text>");
        if !config.allowed_origins.iter().any(|o| o == origin) {
            return Err(Refusal::Origin(origin.to_string()));
        }
    }
    Ok(())
}

/// Checks the shared token (when one is configured): `Authorization: Bearer <token>` or
/// `?token=<token>`. Guards the WebSocket upgrades and the HTTP endpoints that change state.
pub fn check_token(
    config: &StreamingConfig,
    headers: &HeaderMap,
    uri: &Uri,
) -> Result<(), Refusal> {
    if let Some(expected) = &config.auth_token {
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        // Browsers cannot set headers on a WebSocket, so a query parameter is accepted too.
        let query = uri
            .query()
            .into_iter()
            .flat_map(|q| q.split('&'))
            .find_map(|kv| kv.strip_prefix("token="));
        let presented = bearer.or(query).unwrap_or_default();
        if !constant_time_eq(presented.as_bytes(), expected.as_bytes()) {
            return Err(Refusal::Unauthorized);
        }
    }
    Ok(())
}

/// Compares without an early exit, so response time does not leak how much of a token matched.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Sessions per client address. Behind a reverse proxy every client shares the proxy's address:
/// size the limit for that, or leave it at `max_sessions`.
#[derive(Debug)]
pub struct PerIpLimit {
    limit: usize,
    counts: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

/// One session's claim on its address's quota; released on drop.
#[derive(Debug)]
pub struct IpSlot {
    ip: IpAddr,
    counts: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

impl PerIpLimit {
    pub fn new(limit: usize) -> Self {
        Self {
            limit,
            counts: Arc::default(),
        }
    }

    pub fn admit(&self, ip: IpAddr) -> Result<IpSlot, Failure> {
        let mut counts = self
            .counts
            .lock()
            .map_err(|_| Failure::Internal("per-address table poisoned".into()))?;
        let n = counts.entry(ip).or_insert(0);
        if *n >= self.limit {
            return Err(Failure::TooManyFromAddress {
                ip,
                limit: self.limit,
            });
        }
        *n += 1;
        Ok(IpSlot {
            ip,
            counts: self.counts.clone(),
        })
    }
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        if let Ok(mut counts) = self.counts.lock()
            && let Some(n) = counts.get_mut(&self.ip)
        {
            *n -= 1;
            if *n == 0 {
                counts.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> StreamingConfig {
        StreamingConfig {
            auth_token: Some("s3cret".into()),
            allowed_origins: vec!["http://good.example".into()],
            ..StreamingConfig::default()
        }
    }

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(k.clone(), v.parse().expect("valid header value"));
        }
        h
    }

    #[test]
    fn token_by_header_or_query() {
        let c = config();
        let uri: Uri = "/v1/stream".parse().expect("uri");
        assert_eq!(
            check(&c, &HeaderMap::new(), &uri),
            Err(Refusal::Unauthorized)
        );
        let h = headers(&[(header::AUTHORIZATION, "Bearer s3cret")]);
        assert_eq!(check(&c, &h, &uri), Ok(()));
        let h = headers(&[(header::AUTHORIZATION, "Bearer s3cre")]);
        assert_eq!(check(&c, &h, &uri), Err(Refusal::Unauthorized));
        let q: Uri = "/v1/stream?a=1&token=s3cret".parse().expect("uri");
        assert_eq!(check(&c, &HeaderMap::new(), &q), Ok(()));
    }

    #[test]
    fn origins_are_checked_only_when_listed_and_present() {
        let c = StreamingConfig {
            auth_token: None,
            ..config()
        };
        let uri: Uri = "/v1/stream".parse().expect("uri");
        assert_eq!(check(&c, &HeaderMap::new(), &uri), Ok(()));
        let good = headers(&[(header::ORIGIN, "http://good.example")]);
        assert_eq!(check(&c, &good, &uri), Ok(()));
        let bad = headers(&[(header::ORIGIN, "http://evil.example")]);
        assert!(matches!(check(&c, &bad, &uri), Err(Refusal::Origin(_))));
        let open = StreamingConfig::default();
        assert_eq!(check(&open, &bad, &uri), Ok(()));
    }

    #[test]
    fn per_ip_slots_are_counted_and_released() {
        let limit = PerIpLimit::new(2);
        let a: IpAddr = "10.0.0.1".parse().expect("ip");
        let b: IpAddr = "10.0.0.2".parse().expect("ip");
        let s1 = limit.admit(a).expect("first");
        let _s2 = limit.admit(a).expect("second");
        assert!(limit.admit(a).is_err());
        let _other = limit.admit(b).expect("another address has its own quota");
        drop(s1);
        assert!(limit.admit(a).is_ok());
    }
}
