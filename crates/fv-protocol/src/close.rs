//! WebSocket close codes (RFC 6455 §7.4.1) and the reason strings this server sends with them.
//!
//! Unlike upstream, which dropped TCP (1006) on most session ends, every end of a session
//! sends a close frame with one of these codes.

/// Normal end: segment cap reached, session timed out, or the client closed.
pub const NORMAL: u16 = 1000;
/// The server is shutting down (sent after the in-flight segment finished).
pub const GOING_AWAY: u16 = 1001;
/// The first frame was not an acceptable `session_init_v2`.
pub const UNSUPPORTED: u16 = 1003;
/// A text frame that is not valid UTF-8.
pub const INVALID_PAYLOAD: u16 = 1007;
/// The client violated a policy (reserved for origin/auth/per-IP rules).
pub const POLICY: u16 = 1008;
/// A client frame exceeded the size limit.
pub const TOO_BIG: u16 = 1009;
/// Unexpected server error.
pub const INTERNAL: u16 = 1011;
/// No capacity right now; the client may retry later.
pub const TRY_AGAIN_LATER: u16 = 1013;

/// RFC 6455 limits a close reason to 123 bytes (125-byte control payload minus the code).
pub const MAX_REASON_BYTES: usize = 123;

/// 1003: the first frame failed to parse or validate (including a bad `initial_image`).
pub const REASON_INVALID_INIT: &str = "invalid_init";
/// 1003: the first frame was a valid message of another type.
pub const REASON_EXPECTED_SESSION_INIT_V2: &str = "expected_session_init_v2";
/// 1013: the server is at its session limit.
pub const REASON_SESSION_REJECTED: &str = "session_rejected";
/// 1013: no worker became available (acquire timeout or full queue).
pub const REASON_GPU_UNAVAILABLE: &str = "gpu_unavailable";
/// 1013: router only, no replica is healthy.
pub const REASON_NO_HEALTHY_REPLICA: &str = "no_healthy_replica";
/// 1000: the session reached its segment cap.
pub const REASON_SEGMENT_CAP: &str = "segment_cap";
/// 1000: no `session_init_v2` within the init timeout, or no client frame within the idle
/// timeout.
pub const REASON_SESSION_TIMEOUT: &str = "session_timeout";
/// 1001: the server is shutting down.
pub const REASON_SERVER_SHUTDOWN: &str = "server_shutdown";
/// 1008: the prompt safety filter blocked a prompt of the init (Dreamverse's wording).
pub const REASON_PROMPT_BLOCKED: &str = "Prompt blocked";
/// 1000 on `/ws`: the session's wall-clock limit is over (Dreamverse's wording).
pub const REASON_PRODUCT_SESSION_TIMEOUT: &str = "Session timeout";
/// 1003 on `/ws`: the init's `initial_image` is not valid (Dreamverse's wording).
pub const REASON_INVALID_INITIAL_IMAGE: &str = "Invalid initial image";
/// 1000 on `/ws`: the client sent `leave`.
pub const REASON_CLIENT_LEFT: &str = "client_left";

/// Every reason string above, for checks and docs.
pub const ALL_REASONS: [&str; 12] = [
    REASON_INVALID_INIT,
    REASON_EXPECTED_SESSION_INIT_V2,
    REASON_SESSION_REJECTED,
    REASON_GPU_UNAVAILABLE,
    REASON_NO_HEALTHY_REPLICA,
    REASON_SEGMENT_CAP,
    REASON_SESSION_TIMEOUT,
    REASON_SERVER_SHUTDOWN,
    REASON_PROMPT_BLOCKED,
    REASON_PRODUCT_SESSION_TIMEOUT,
    REASON_INVALID_INITIAL_IMAGE,
    REASON_CLIENT_LEFT,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_fit_in_a_close_frame() {
        for reason in ALL_REASONS {
            assert!(reason.len() <= MAX_REASON_BYTES, "{reason}");
            assert!(reason.is_ascii(), "{reason}");
        }
    }

    #[test]
    fn codes_are_rfc6455_values() {
        assert_eq!(
            [
                NORMAL,
                GOING_AWAY,
                UNSUPPORTED,
                POLICY,
                TOO_BIG,
                INTERNAL,
                TRY_AGAIN_LATER
            ],
            [1000, 1001, 1003, 1008, 1009, 1011, 1013]
        );
    }
}
