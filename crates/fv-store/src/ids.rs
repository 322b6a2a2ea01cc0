//! Id rules shared by the filesystem and Redis stores.
//!
//! Blob ids are made by the stores (32 lowercase hex digits, a v4 UUID), so anything else is
//! refused before it reaches a path or a key: `../etc/passwd` can never name a file. Session
//! ids come from the server and may hold any bytes; the filesystem store hex-encodes them into
//! file names, so they are capped to keep a name within the usual 255-byte limit.

use crate::StoreError;

/// Longest session id the filesystem and Redis stores accept, in bytes. Hex-encoded plus a
/// 5-byte extension it stays under the 255-byte file name limit of common filesystems.
pub const MAX_SESSION_ID_BYTES: usize = 120;

/// Length of a blob id: a v4 UUID as 32 lowercase hex digits.
pub const BLOB_ID_LEN: usize = 32;

/// A fresh, unique blob id.
pub(crate) fn new_blob_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// Refuses ids this crate's stores could not have made.
pub(crate) fn check_blob_id(id: &str) -> Result<(), StoreError> {
    let ok = id.len() == BLOB_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if ok {
        Ok(())
    } else {
        Err(StoreError::InvalidId {
            what: "blob",
            id: truncate(id),
            reason: "must be 32 lowercase hex digits",
        })
    }
}

pub(crate) fn check_session_id(id: &str) -> Result<(), StoreError> {
    let reason = if id.is_empty() {
        "must not be empty"
    } else if id.len() > MAX_SESSION_ID_BYTES {
        "must be at most 120 bytes"
    } else {
        return Ok(());
    };
    Err(StoreError::InvalidId {
        what: "session",
        id: truncate(id),
        reason,
    })
}

/// Lowercase hex of the id's bytes: a file name made only of `[0-9a-f]`.
pub(crate) fn hex(id: &str) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(id.len() * 2);
    for b in id.bytes() {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 0x0f)] as char);
    }
    out
}

/// Keeps error messages short when a caller passes a huge id.
fn truncate(id: &str) -> String {
    const SHOWN: usize = 64;
    if id.len() <= SHOWN {
        return id.to_string();
    }
    let mut end = SHOWN;
    while !id.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &id[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blob_ids() {
        let id = new_blob_id();
        assert!(check_blob_id(&id).is_ok());
        for bad in [
            "",
            "..",
            "../../etc/passwd",
            "0123456789abcdef0123456789abcde/",
            "0123456789ABCDEF0123456789ABCDEF",
            "0123456789abcdef0123456789abcdef0",
        ] {
            let err = check_blob_id(bad).expect_err(bad);
            assert_eq!(err.kind(), "invalid_id");
        }
    }

    #[test]
    fn session_ids() {
        assert!(check_session_id("a").is_ok());
        assert!(check_session_id(&"x".repeat(MAX_SESSION_ID_BYTES)).is_ok());
        let long = "é".repeat(100);
        let err = check_session_id(&long).expect_err("too long");
        assert!(
            err.to_string().contains("must be at most 120 bytes"),
            "{err}"
        );
        assert!(err.to_string().len() < 200, "message is truncated: {err}");
        assert!(check_session_id("").is_err());
        assert_eq!(hex("a/.."), "612f2e2e");
        assert_eq!(hex(&"\u{ff}".repeat(60)).len(), 240);
    }
}
