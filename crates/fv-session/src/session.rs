//! Per-session data owned by the connection task.

use crate::state::{SessionState, TransitionError};
use std::time::SystemTime;

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

/// One streaming session: plain data plus the guarded state machine.
///
/// The connection task owns it; it does no IO and takes no locks. Publish changes to the
/// [`SessionManager`](crate::SessionManager) with
/// [`SessionHandle::publish`](crate::SessionHandle::publish) so `/status` sees them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    id: String,
    state: SessionState,
    /// Number of segments completed so far, which is also the 0-based index of the next one.
    /// A failed segment does not advance it.
    segment_idx: u32,
    /// Settings from `session_init_v2`, updated by toggles.
    pub settings: SessionSettings,
    /// Stored only (`generation_paused_updated`); generation is not paused by it.
    pub generation_paused: bool,
    /// Wall-clock creation time, for logs.
    pub created_at: SystemTime,
}

impl Session {
    /// A new session in [`SessionState::Initializing`] with default settings.
    pub fn new(id: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            state: SessionState::Initializing,
            segment_idx: 0,
            settings: SessionSettings::default(),
            generation_paused: false,
            created_at: SystemTime::now(),
        }
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn state(&self) -> SessionState {
        self.state
    }

    /// Completed segments so far = 0-based index of the next segment.
    pub fn segment_idx(&self) -> u32 {
        self.segment_idx
    }

    /// Moves to `to` if the edge is allowed (see [`SessionState`]). On error the state is
    /// unchanged. Pure: logs nothing.
    pub fn transition(&mut self, to: SessionState) -> Result<(), TransitionError> {
        if self.state.can_transition_to(to) {
            self.state = to;
            Ok(())
        } else {
            Err(TransitionError {
                from: self.state,
                to,
            })
        }
    }

    /// Records a successfully delivered segment and returns the new count. Failed segments
    /// must not call this (the state stays `Active` and the index is reused). Saturates at
    /// `u32::MAX` rather than wrapping.
    pub fn complete_segment(&mut self) -> u32 {
        self.segment_idx = self.segment_idx.saturating_add(1);
        self.segment_idx
    }

    /// True once `cap` segments have been delivered (checked before serving the next one).
    pub fn cap_reached(&self, cap: u32) -> bool {
        self.segment_idx >= cap
    }

    /// Stores the client's `session_init_v2` choices.
    pub fn apply_settings(&mut self, settings: SessionSettings) {
        self.settings = settings;
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
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let s = Session::new("abc");
        assert_eq!(s.id(), "abc");
        assert_eq!(s.state(), SessionState::Initializing);
        assert_eq!(s.segment_idx(), 0);
        assert!(!s.generation_paused);
        assert_eq!(s.settings, SessionSettings::default());
    }

    #[test]
    fn failed_transition_leaves_state_unchanged() {
        let mut s = Session::new("x");
        s.transition(SessionState::Rejected)
            .expect("init -> rejected");
        let err = s
            .transition(SessionState::Active)
            .expect_err("rejected is terminal");
        assert_eq!(err.from, SessionState::Rejected);
        assert_eq!(err.to, SessionState::Active);
        assert_eq!(s.state(), SessionState::Rejected);
        assert_eq!(
            err.to_string(),
            "illegal session state transition: rejected -> active"
        );
    }

    #[test]
    fn typical_lifecycle_with_a_failed_segment_stays_active() {
        let mut s = Session::new("x");
        for to in [
            SessionState::Queued,
            SessionState::GpuBinding,
            SessionState::Active,
        ] {
            s.transition(to).expect("happy path edge");
        }
        assert_eq!(s.complete_segment(), 1);
        // A worker_failed segment: no transition, no increment, still usable.
        assert_eq!(s.state(), SessionState::Active);
        assert_eq!(s.segment_idx(), 1);
        assert_eq!(s.complete_segment(), 2);
        assert!(s.cap_reached(2));
        assert!(!s.cap_reached(3));
        s.transition(SessionState::Complete)
            .expect("cap -> complete");
    }

    #[test]
    fn segment_counter_saturates() {
        let mut s = Session::new("x");
        s.segment_idx = u32::MAX;
        assert_eq!(s.complete_segment(), u32::MAX);
    }

    #[test]
    fn settings_and_toggles_are_stored() {
        let mut s = Session::new("x");
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
        assert_eq!(s.settings.client_id.as_deref(), Some("c1"));
        assert!(s.settings.single_clip_mode);

        s.apply_toggle(Toggle::SeedPrompts(vec!["b".into(), "c".into()]));
        s.apply_toggle(Toggle::Enhancement(false));
        s.apply_toggle(Toggle::AutoExtension(true));
        s.apply_toggle(Toggle::LoopGeneration(false));
        s.apply_toggle(Toggle::GenerationPaused(true));
        assert_eq!(s.settings.curated_prompts, vec!["b", "c"]);
        assert!(!s.settings.enhancement_enabled);
        assert!(s.settings.auto_extension_enabled);
        assert!(!s.settings.loop_generation_enabled);
        assert!(s.generation_paused);
        assert_eq!(s.state(), SessionState::Initializing);
        assert_eq!(s.segment_idx(), 0);
    }
}
