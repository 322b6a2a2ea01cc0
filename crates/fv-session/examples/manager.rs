//! What a server's connection task does with `fv-session`, without a network or a GPU.
//!
//! * a `SessionManager` with small limits and a background reaper (timeouts of a few hundred
//!   milliseconds so the example ends quickly);
//! * admission: slots, `Full`, and a slot freed when its `Session` drops;
//! * the init timeout and the idle timeout firing through `Session::expired`;
//! * a session's life: settings, `initial_image` decoding and persisting, state transitions,
//!   segments up to the cap, an illegal transition reported as an error;
//! * the per-session JSONL log, written to a temporary directory and printed at the end;
//! * shutdown.
//!
//! Run with `cargo run -p fv-session --example manager`; it finishes in under a second.

use base64::Engine as _;
use fv_session::{
    Expiry, MAX_INIT_IMAGE_BYTES, SegmentRecord, Session, SessionError, SessionLimits,
    SessionLogger, SessionManager, SessionSettings, SessionState, Toggle, decode_initial_image,
};
use serde_json::json;
use std::time::Duration;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    // Limits are validated; each error names the field and the value.
    let bad = SessionLimits {
        max_sessions: 0,
        ..SessionLimits::default()
    };
    if let Err(e) = SessionManager::new(bad) {
        println!("rejected limits: {e}");
    }

    let limits = SessionLimits {
        max_sessions: 2,
        segment_cap: 2,
        idle_timeout: Duration::from_millis(150),
        init_timeout: Duration::from_millis(100),
    };
    let manager = SessionManager::new(limits)?;
    // Servers use DEFAULT_REAP_PERIOD (1 s); a short period keeps this example quick.
    let reaper = manager.spawn_reaper(Duration::from_millis(10));

    let logs = tempfile::tempdir()?;
    let logger = SessionLogger::new(Some(logs.path().join("sessions")));

    // --- admission -------------------------------------------------------------------------
    // `admit` runs at accept time, before the first frame is read.
    let mut first = manager.admit()?;
    let silent = manager.admit()?;
    println!("admitted {} and {}", short(&first), short(&silent));
    match manager.admit() {
        Err(e @ SessionError::Full { .. }) => println!("third socket refused: {e}"),
        other => return Err(format!("expected Full, got {other:?}").into()),
    }

    // --- a full session --------------------------------------------------------------------
    run_session(&manager, &mut first, &logger, logs.path()).await?;
    // A finished session's connection task closes the socket and drops its session.
    let first_id = first.id().to_owned();
    drop(first);

    // --- init timeout ----------------------------------------------------------------------
    // `silent` never sends session_init_v2. Its connection task would select on the socket
    // and on `expired()`; here only the timer can win.
    let reason = silent.expired().await;
    println!("{} expired: {reason}", short(&silent));
    print_snapshot(&manager);
    // An expired session keeps its slot until its `Session` drops.
    let late = manager.admit()?;
    println!(
        "admitted {}; slots held: {}",
        short(&late),
        manager.active_count()
    );
    match manager.admit() {
        Err(e) => println!("while the expired session lives: {e}"),
        Ok(h) => return Err(format!("admitted {} past the limit", h.id()).into()),
    }
    drop(silent);
    let idle = manager.admit()?;
    println!("session dropped, slot freed; admitted {}", short(&idle));
    drop(late);

    // --- idle timeout ----------------------------------------------------------------------
    // `idle` initializes, then the client goes quiet. `touch` on every frame would keep it
    // alive; `set_busy(true)` while generating suspends the timer.
    idle.mark_initialized();
    idle.set_busy(true);
    tokio::time::sleep(Duration::from_millis(200)).await;
    println!(
        "{} busy for 200 ms (longer than the idle timeout), expired: {:?}",
        short(&idle),
        idle.expiry()
    );
    idle.set_busy(false);
    tokio::select! {
        reason = idle.expired() => println!("{} expired: {reason}", short(&idle)),
        () = tokio::time::sleep(Duration::from_secs(2)) => {
            return Err("the idle timeout did not fire".into());
        }
    }
    // It never generated, so it ends with zero segments.
    logger.open(idle.id()).session_end("idle_timeout", 0);
    drop(idle);

    // --- shutdown --------------------------------------------------------------------------
    let straggler = manager.admit()?;
    manager.shutdown();
    match manager.admit() {
        Err(e @ SessionError::ShuttingDown) => println!("after shutdown: {e}"),
        other => return Err(format!("expected ShuttingDown, got {other:?}").into()),
    }
    let told = manager.expire_all(Expiry::Shutdown);
    println!(
        "expire_all told {told} session(s) to end; {}: {:?}",
        short(&straggler),
        straggler.expiry()
    );
    drop(straggler);
    // shutdown() also stops the reaper task.
    reaper.await?;
    println!("reaper stopped; {} slots held", manager.active_count());

    // --- the logs --------------------------------------------------------------------------
    let path = logger
        .path_for(&first_id)
        .ok_or("logging is enabled, so there is a path")?;
    println!("--- {}", path.display());
    for line in std::fs::read_to_string(&path)?.lines() {
        println!("{line}");
    }
    Ok(())
}

/// The connection task of one session, from `session_init_v2` to the segment cap.
async fn run_session(
    manager: &SessionManager,
    session: &mut Session,
    logger: &SessionLogger,
    tmp: &std::path::Path,
) -> Result<(), BoxError> {
    let log = logger.open(session.id());
    session.touch();

    // session_init_v2 arrived: store its settings, switch to the idle timeout, log the start.
    session.apply_settings(SessionSettings {
        client_id: Some("example-client".into()),
        preset: Some("cinematic".into()),
        curated_prompts: vec!["a cat".into(), "a dog".into()],
        ..SessionSettings::default()
    });
    session.mark_initialized();
    log.session_start(session.settings());

    // Its initial_image: decode and validate, then write it where the generator can read it.
    let tiny_png = [b"\x89PNG\r\n\x1a\n".as_slice(), b"not really pixels"].concat();
    let field = json!({
        "mime": "image/png",
        "name": "C:\\Users\\me\\cat.png",
        "data": base64::engine::general_purpose::STANDARD.encode(&tiny_png),
    });
    let image = decode_initial_image(&field, MAX_INIT_IMAGE_BYTES)?
        .ok_or("a non-empty object is an image")?;
    println!(
        "initial image: {:?} {} bytes, name {:?}",
        image.kind(),
        image.len(),
        image.name()
    );
    // Blocking file IO: inside a server, run it on the blocking pool.
    let dir = tmp.join("images");
    let persisted = tokio::task::spawn_blocking(move || image.persist(Some(&dir))).await??;
    println!(
        "persisted to {} (deleted on drop)",
        persisted
            .path()
            .file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default()
    );
    // A bad image is refused with a message that names the field; send it to the client.
    let gif = json!({ "mime": "image/gif", "data": "R0lGODlh" });
    if let Err(e) = decode_initial_image(&gif, MAX_INIT_IMAGE_BYTES) {
        println!("bad image: {e}");
        log.error("invalid_initial_image", &e.to_string());
    }

    // Queue for a worker, bind it, serve segments. Each change is what /status shows.
    for state in [
        SessionState::Queued,
        SessionState::GpuBinding,
        SessionState::Active,
    ] {
        session.transition(state)?;
    }
    println!("snapshot once {} is active:", short(session));
    print_snapshot(manager);

    let cap = session.limits().segment_cap;
    while !session.cap_reached() {
        session.set_busy(true);
        // A generator would run here, with `persisted.path()` as its image_path.
        tokio::time::sleep(Duration::from_millis(20)).await;
        let segment_idx = session.segment_idx();
        session.complete_segment()?;
        session.set_busy(false);
        log.segment(&SegmentRecord {
            segment_idx,
            prompt: session
                .settings()
                .curated_prompts
                .get(segment_idx as usize)
                .cloned()
                .unwrap_or_default(),
            generate_ms: 20.0,
            e2e_ms: 21.5,
            frames: 121,
            bytes: 48_000,
            ..SegmentRecord::default()
        });
        println!(
            "segment {segment_idx} delivered ({}/{cap})",
            session.segment_idx()
        );
        // Toggles only change stored settings.
        session.apply_toggle(Toggle::Enhancement(true));
    }
    // One past the cap is refused by the session itself.
    if let Err(e) = session.complete_segment() {
        println!("{e}");
    }
    session.transition(SessionState::Complete)?;
    log.session_end("segment_cap", session.segment_idx());

    // Complete is terminal: the error says which edge was refused, and the state is unchanged.
    match session.transition(SessionState::Active) {
        Err(e) => {
            let e = SessionError::from(e);
            println!("{e} (still {})", session.state());
        }
        Ok(()) => return Err("complete -> active was allowed".into()),
    }

    let image_path = persisted.path().to_path_buf();
    drop(persisted);
    println!("image file removed: {}", !image_path.exists());
    Ok(())
}

fn print_snapshot(manager: &SessionManager) {
    for s in manager.snapshot() {
        println!(
            "  {}: {} segments={} initialized={} busy={} expired={:?}",
            s.id.get(..8).unwrap_or(&s.id),
            s.state,
            s.segment_idx,
            s.initialized,
            s.busy,
            s.expired
        );
    }
}

fn short(session: &Session) -> &str {
    session.id().get(..8).unwrap_or(session.id())
}
