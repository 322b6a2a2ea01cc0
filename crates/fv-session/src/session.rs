//! One admitted session: its slot in the [`SessionManager`], its state machine, its settings.

use crate::error::SessionError;
use crate::manager::{Expiry, SessionLimits, SessionManager};
use crate::state::{SessionState, TransitionError};
use std::future::Future;
use std::sync::Arc;
use std::time::SystemTime;
use tokio::sync::watch;
use tokio::time::Instant;

/// Creates a fresh session id: a v4 UUID as 32 lowercase hex digits (no dashes), the form
/// FastVideo uses for its ids.
pub fn new_session_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// What the client chose in `session_init_v2`, as plain values (the protocol crate parses the
/// frame; this crate does not depend on its types).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionSettings {
    /// Client-chosen id, stored for logs.
    pub client_id: Option<String>,
    /// Echoed back in `ltx2_stream_start.preset`.
    pub preset: Option<String>,
    /// Display name of the preset, stored only.
    pub preset_label: Option<String>,
    /// Seed prompts; replaced by `seed_prompts_updated`.
    pub curated_prompts: Vec<String>,
    /// Prompt enhancement requested.
    pub enhancement_enabled: bool,
    /// Automatic prompt extension requested.
    pub auto_extension_enabled: bool,
    /// Loop generation requested.
    pub loop_generation_enabled: bool,
    /// The client wants a single clip.
    pub single_clip_mode: bool,
}

/// A client update that only changes stored settings (FastVideo's "toggle" messages).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Toggle {
    /// `seed_prompts_updated`: replaces the curated prompts.
    SeedPrompts(Vec<String>),
    /// `enhancement_updated`.
    Enhancement(bool),
    /// `auto_extension_updated`.
    AutoExtension(bool),
    /// `loop_generation_updated`.
    LoopGeneration(bool),
    /// `generation_paused_updated`.
    GenerationPaused(bool),
}

/// One admitted streaming session, owned by its connection task.
///
/// It is the single source of truth for the session: the slot it holds in the
/// [`SessionManager`] (freed when it is dropped), its [`SessionState`] (changed only through
/// [`transition`](Self::transition), which checks the edge and publishes the new state for
/// `/status` in the same step), its segment count (bounded by
/// [`SessionLimits::segment_cap`]), its settings, and its timers (reported through
/// [`touch`](Self::touch), [`set_busy`](Self::set_busy),
/// [`mark_initialized`](Self::mark_initialized); the manager's verdict arrives through
/// [`expired`](Self::expired)).
///
/// Created by [`SessionManager::admit`]. It does no IO; every method is a short, lock-guarded
/// update of the manager's table.
#[derive(Debug)]
pub struct Session {
    manager: Arc<SessionManager>,
    id: String,
    expiry: watch::Receiver<Option<Expiry>>,
    state: SessionState,
    /// Number of segments completed so far, which is also the 0-based index of the next one.
    /// A failed segment does not advance it.
    segment_idx: u32,
    settings: SessionSettings,
    generation_paused: bool,
    created_at: SystemTime,
}

impl Session {
    pub(crate) fn admitted(
        manager: Arc<SessionManager>,
        id: String,
        expiry: watch::Receiver<Option<Expiry>>,
    ) -> Self {
        Self {
            manager,
            id,
            expiry,
            state: SessionState::Initializing,
            segment_idx: 0,
            settings: SessionSettings::default(),
            generation_paused: false,
            created_at: SystemTime::now(),
        }
    }

    /// The session id (32 lowercase hex digits).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The limits the session runs under (its manager's).
    pub fn limits(&self) -> &SessionLimits {
        self.manager.limits()
    }

    /// Where the session is in its life.
    pub fn state(&self) -> SessionState {
        self.state
    }

    /// Completed segments so far = 0-based index of the next segment.
    pub fn segment_idx(&self) -> u32 {
        self.segment_idx
    }

    /// Wall-clock admission time, for logs.
    pub fn created_at(&self) -> SystemTime {
        self.created_at
    }

    /// Moves to `to` if the edge is allowed (see [`SessionState`]) and publishes it to the
    /// manager (`/status`; a terminal state stops the timers). On error nothing changes and
    /// the refused edge is returned for the caller to report.
    pub fn transition(&mut self, to: SessionState) -> Result<(), TransitionError> {
        if !self.state.can_transition_to(to) {
            return Err(TransitionError {
                from: self.state,
                to,
            });
        }
        self.state = to;
        self.manager.update(&self.id, |e| e.state = to);
        Ok(())
    }

    /// True once [`SessionLimits::segment_cap`] segments have been delivered; no further
    /// segment may start.
    pub fn cap_reached(&self) -> bool {
        self.segment_idx >= self.limits().segment_cap
    }

    /// Records a delivered segment and returns the new count. Refused with
    /// [`SessionError::CapReached`] once the cap is reached (a segment past the cap must not
    /// have been started), and with [`SessionError::NotActive`] unless the session is
    /// [`Active`](SessionState::Active). Failed segments must not call this: the index is
    /// reused.
    pub fn complete_segment(&mut self) -> Result<u32, SessionError> {
        if self.state != SessionState::Active {
            return Err(SessionError::NotActive { state: self.state });
        }
        if self.cap_reached() {
            return Err(SessionError::CapReached {
                cap: self.limits().segment_cap,
            });
        }
        self.segment_idx += 1;
        let idx = self.segment_idx;
        self.manager.update(&self.id, |e| e.segment_idx = idx);
        Ok(idx)
    }

    /// Continues a stream that delivered `completed` segments in an earlier session (a resume):
    /// the next segment is `completed`, and the cap counts them. Only before the session
    /// becomes active; refused with [`SessionError::CapReached`] past the cap.
    pub fn resume_from(&mut self, completed: u32) -> Result<(), SessionError> {
        if matches!(self.state, SessionState::Active) || self.state.is_terminal() {
            return Err(SessionError::NotActive { state: self.state });
        }
        let cap = self.limits().segment_cap;
        if completed > cap {
            return Err(SessionError::CapReached { cap });
        }
        self.segment_idx = completed;
        self.manager.update(&self.id, |e| e.segment_idx = completed);
        Ok(())
    }

    /// Starts counting delivered segments from 0 again (a server-driven protocol's new
    /// rollout or cap restart: its segment cap counts segments since then). The session's
    /// state does not change.
    pub fn restart_segment_count(&mut self) {
        self.segment_idx = 0;
        self.manager.update(&self.id, |e| e.segment_idx = 0);
    }

    /// The client's choices from `session_init_v2`, as updated by toggles.
    pub fn settings(&self) -> &SessionSettings {
        &self.settings
    }

    /// Stores the client's `session_init_v2` choices.
    pub fn apply_settings(&mut self, settings: SessionSettings) {
        self.settings = settings;
    }

    /// Whether the client paused generation (`generation_paused_updated`).
    pub fn generation_paused(&self) -> bool {
        self.generation_paused
    }

    /// Applies a toggle message. Toggles never change the state or the segment index.
    pub fn apply_toggle(&mut self, toggle: Toggle) {
        match toggle {
            Toggle::SeedPrompts(prompts) => self.settings.curated_prompts = prompts,
            Toggle::Enhancement(on) => self.settings.enhancement_enabled = on,
            Toggle::AutoExtension(on) => self.settings.auto_extension_enabled = on,
            Toggle::LoopGeneration(on) => self.settings.loop_generation_enabled = on,
            Toggle::GenerationPaused(paused) => self.generation_paused = paused,
        }
    }

    /// Client activity (any frame, valid or not): restarts the idle timer. Before
    /// [`mark_initialized`](Self::mark_initialized) it does not extend the init timeout.
    pub fn touch(&self) {
        let now = Instant::now();
        self.manager.update(&self.id, |e| e.last_activity = now);
    }

    /// Marks the server as working for this session (queued or generating): no timer runs
    /// while busy. Clearing it restarts the idle timer from now.
    pub fn set_busy(&self, busy: bool) {
        let now = Instant::now();
        self.manager.update(&self.id, |e| {
            e.busy = busy;
            if !busy {
                e.last_activity = now;
            }
        });
    }

    /// `session_init_v2` accepted: switches from the init timeout to the idle timeout, whose
    /// timer starts now.
    pub fn mark_initialized(&self) {
        let now = Instant::now();
        self.manager.update(&self.id, |e| {
            e.initialized = true;
            e.last_activity = now;
        });
    }

    /// Resolves once the manager has expired this session. Cancel-safe and `'static`: use it
    /// in a `select!` next to the socket read; an expiry that already happened resolves
    /// immediately.
    pub fn expired(&self) -> impl Future<Output = Expiry> + Send + 'static + use<> {
        let mut rx = self.expiry.clone();
        async move {
            // Copy the value out at once: the borrow guard must not live across an await.
            let reason = rx.wait_for(Option::is_some).await.ok().and_then(|v| *v);
            match reason {
                Some(reason) => reason,
                // Unreachable while the session lives (its entry holds the sender and
                // wait_for only returns `Some`); never resolving is the safe answer.
                None => std::future::pending().await,
            }
        }
    }

    /// The expiry reason, if the session has been expired.
    pub fn expiry(&self) -> Option<Expiry> {
        *self.expiry.borrow()
    }

    /// Expires this session now with `reason`. Returns false if it had already expired (the
    /// first reason is kept).
    pub fn expire_now(&self, reason: Expiry) -> bool {
        self.manager.expire_one(&self.id, reason)
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.manager.remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_segment_count_restarts_and_the_cap_counts_from_there() {
        let m = manager(2);
        let mut s = m.admit().expect("a slot");
        for to in [
            SessionState::Queued,
            SessionState::GpuBinding,
            SessionState::Active,
        ] {
            s.transition(to).expect("allowed edge");
        }
        s.complete_segment().expect("below the cap");
        s.complete_segment().expect("below the cap");
        assert!(s.cap_reached());
        s.restart_segment_count();
        assert!(!s.cap_reached());
        assert_eq!(s.segment_idx(), 0);
        assert_eq!(m.snapshot()[0].segment_idx, 0);
        assert_eq!(s.complete_segment().expect("below the cap"), 1);
        assert_eq!(s.state(), SessionState::Active);
    }

    fn manager(cap: u32) -> Arc<SessionManager> {
        SessionManager::new(SessionLimits {
            segment_cap: cap,
            ..SessionLimits::default()
        })
        .expect("valid limits")
    }

    fn active(m: &Arc<SessionManager>) -> Session {
        let mut s = m.admit().expect("slot");
        for to in [
            SessionState::Queued,
            SessionState::GpuBinding,
            SessionState::Active,
        ] {
            s.transition(to).expect("happy path edge");
        }
        s
    }

    #[test]
    fn ids_are_32_lowercase_hex_and_unique() {
        let a = new_session_id();
        let b = new_session_id();
        assert_eq!(a.len(), 32);
        assert!(
            a.bytes()
                .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
        );
        assert_ne!(a, b);
    }

    #[test]
    fn new_session_starts_initializing_at_segment_zero() {
        let m = manager(6);
        let s = m.admit().expect("slot");
        assert_eq!(s.state(), SessionState::Initializing);
        assert_eq!(s.segment_idx(), 0);
        assert!(!s.generation_paused());
        assert_eq!(s.settings(), &SessionSettings::default());
    }

    #[test]
    fn failed_transition_leaves_state_unchanged_and_unpublished() {
        let m = manager(6);
        let mut s = m.admit().expect("slot");
        s.transition(SessionState::Rejected)
            .expect("init -> rejected");
        let err = s
            .transition(SessionState::Active)
            .expect_err("rejected is terminal");
        assert_eq!(err.from, SessionState::Rejected);
        assert_eq!(err.to, SessionState::Active);
        assert_eq!(s.state(), SessionState::Rejected);
        assert_eq!(m.snapshot()[0].state, SessionState::Rejected);
        assert_eq!(
            err.to_string(),
            "illegal session state transition: rejected -> active"
        );
    }

    #[test]
    fn every_change_is_published_as_it_happens() {
        let m = manager(6);
        let mut s = m.admit().expect("slot");
        s.transition(SessionState::Queued).expect("edge");
        assert_eq!(m.snapshot()[0].state, SessionState::Queued);
        s.transition(SessionState::GpuBinding).expect("edge");
        s.transition(SessionState::Active).expect("edge");
        assert_eq!(s.complete_segment().expect("under the cap"), 1);
        let row = &m.snapshot()[0];
        assert_eq!((row.state, row.segment_idx), (SessionState::Active, 1));
    }

    #[test]
    fn the_cap_is_enforced_by_the_session() {
        let m = manager(2);
        let mut s = active(&m);
        assert!(!s.cap_reached());
        assert_eq!(s.complete_segment().expect("1 of 2"), 1);
        assert_eq!(s.complete_segment().expect("2 of 2"), 2);
        assert!(s.cap_reached());
        let err = s.complete_segment().expect_err("past the cap");
        assert!(matches!(err, SessionError::CapReached { cap: 2 }), "{err}");
        assert_eq!(s.segment_idx(), 2);
        assert_eq!(m.snapshot()[0].segment_idx, 2);
    }

    #[test]
    fn segments_complete_only_while_active() {
        let m = manager(6);
        let mut s = m.admit().expect("slot");
        let err = s.complete_segment().expect_err("not active yet");
        assert!(matches!(
            err,
            SessionError::NotActive {
                state: SessionState::Initializing
            }
        ));
        let mut s = active(&m);
        s.transition(SessionState::Complete).expect("edge");
        assert!(s.complete_segment().is_err());
        assert_eq!(s.segment_idx(), 0);
    }

    #[test]
    fn a_resumed_session_continues_its_count_under_the_cap() {
        let m = manager(3);
        let mut s = m.admit().expect("slot");
        assert!(matches!(
            s.resume_from(4),
            Err(SessionError::CapReached { cap: 3 })
        ));
        s.resume_from(2).expect("under the cap");
        assert_eq!((s.segment_idx(), m.snapshot()[0].segment_idx), (2, 2));
        for to in [
            SessionState::Queued,
            SessionState::GpuBinding,
            SessionState::Active,
        ] {
            s.transition(to).expect("edge");
        }
        assert_eq!(s.complete_segment().expect("3 of 3"), 3);
        assert!(s.cap_reached());
        assert!(s.resume_from(0).is_err(), "not once active");
    }

    #[test]
    fn dropping_the_session_frees_its_slot() {
        let m = manager(6);
        let s = m.admit().expect("slot");
        assert_eq!(m.active_count(), 1);
        drop(s);
        assert_eq!(m.active_count(), 0);
    }

    #[test]
    fn settings_and_toggles_are_stored() {
        let m = manager(6);
        let mut s = m.admit().expect("slot");
        s.apply_settings(SessionSettings {
            client_id: Some("c1".into()),
            preset: Some("p".into()),
            preset_label: Some("Preset".into()),
            curated_prompts: vec!["a".into()],
            enhancement_enabled: true,
            auto_extension_enabled: false,
            loop_generation_enabled: true,
            single_clip_mode: true,
        });
        assert_eq!(s.settings().client_id.as_deref(), Some("c1"));
        assert!(s.settings().single_clip_mode);

        s.apply_toggle(Toggle::SeedPrompts(vec!["b".into(), "c".into()]));
        s.apply_toggle(Toggle::Enhancement(false));
        s.apply_toggle(Toggle::AutoExtension(true));
        s.apply_toggle(Toggle::LoopGeneration(false));
        s.apply_toggle(Toggle::GenerationPaused(true));
        assert_eq!(s.settings().curated_prompts, vec!["b", "c"]);
        assert!(!s.settings().enhancement_enabled);
        assert!(s.settings().auto_extension_enabled);
        assert!(!s.settings().loop_generation_enabled);
        assert!(s.generation_paused());
        assert_eq!(s.state(), SessionState::Initializing);
        assert_eq!(s.segment_idx(), 0);
    }
}
