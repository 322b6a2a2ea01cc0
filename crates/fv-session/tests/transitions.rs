//! Every (from, to) pair of the session state machine, checked against an explicit table.

use fv_session::{
    Session, SessionLimits, SessionManager, SessionState, SessionState::*, TransitionError,
};
use std::sync::Arc;

/// Allowed non-self edges, written out independently of the implementation.
const ALLOWED: &[(SessionState, SessionState)] = &[
    (Initializing, Queued),
    (Initializing, GpuBinding),
    (Initializing, Rejected),
    (Initializing, Error),
    (Initializing, Timeout),  // deviation: init timeout
    (Initializing, Complete), // deviation: client left before init
    (Queued, GpuBinding),
    (Queued, Error),
    (Queued, Timeout),
    (Queued, Rejected),
    (Queued, Complete), // deviation: client left while queued
    (GpuBinding, Active),
    (GpuBinding, Error),
    (GpuBinding, Timeout),
    (GpuBinding, Complete), // deviation: client left while binding
    (Active, Complete),
    (Active, Error),
    (Active, Timeout),
];

/// Drives a fresh session into `state` through allowed edges.
fn session_in(manager: &Arc<SessionManager>, state: SessionState) -> Session {
    let mut s = manager.admit().expect("a slot");
    let path: &[SessionState] = match state {
        Initializing => &[],
        Queued => &[Queued],
        GpuBinding => &[GpuBinding],
        Active => &[GpuBinding, Active],
        Complete => &[GpuBinding, Active, Complete],
        Error => &[Error],
        Timeout => &[Timeout],
        Rejected => &[Rejected],
    };
    for &step in path {
        s.transition(step).expect("setup path uses allowed edges");
    }
    assert_eq!(s.state(), state);
    s
}

#[test]
fn every_pair_matches_the_table() {
    let manager = SessionManager::new(SessionLimits::default()).expect("valid limits");
    let mut checked = 0;
    for from in SessionState::ALL {
        for to in SessionState::ALL {
            let expected = from == to || ALLOWED.contains(&(from, to));
            assert_eq!(
                from.can_transition_to(to),
                expected,
                "can_transition_to {from} -> {to}"
            );
            let mut s = session_in(&manager, from);
            let result = s.transition(to);
            if expected {
                assert_eq!(result, Ok(()), "{from} -> {to} should be allowed");
                assert_eq!(s.state(), to);
                assert_eq!(manager.snapshot()[0].state, to, "published with the change");
            } else {
                assert_eq!(result, Err(TransitionError { from, to }));
                assert_eq!(s.state(), from, "failed transition must not change state");
                assert_eq!(manager.snapshot()[0].state, from, "nothing published");
            }
            checked += 1;
        }
    }
    assert_eq!(checked, 64);
}

#[test]
fn terminal_states_have_no_exits() {
    for from in SessionState::ALL {
        let exits = SessionState::ALL
            .iter()
            .filter(|&&to| to != from && from.can_transition_to(to))
            .count();
        assert_eq!(from.is_terminal(), exits == 0, "{from}");
    }
    let terminal: Vec<_> = SessionState::ALL
        .into_iter()
        .filter(|s| s.is_terminal())
        .collect();
    assert_eq!(terminal, vec![Complete, Error, Timeout, Rejected]);
}

#[test]
fn names_are_snake_case_on_the_wire() {
    for state in SessionState::ALL {
        let json = serde_json::to_value(state).expect("serialize state");
        assert_eq!(json, serde_json::Value::String(state.as_str().to_string()));
        assert_eq!(state.to_string(), state.as_str());
        let back: SessionState = serde_json::from_value(json).expect("deserialize state");
        assert_eq!(back, state);
    }
    assert_eq!(GpuBinding.as_str(), "gpu_binding");
}
