//! Filesystem stores: conformance, persistence across reopen, TTL (manual clock) and sweep,
//! caps, concurrent puts, unsafe ids.

mod support;

use fv_store::fs::{ManualClock, Sweeper};
use fv_store::{
    BlobLimits, BlobStore, FsBlobStore, FsOptions, FsSessionStore, SessionLimits, SessionStore,
    StoreError,
};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use support::conformance as c;

const TTL: Duration = Duration::from_secs(60);
const T0: u64 = 1_700_000_000_000;

fn options(root: &Path, clock: &Arc<ManualClock>) -> FsOptions {
    FsOptions {
        root: root.to_path_buf(),
        fsync: true,
        clock: clock.clone(),
    }
}

fn clock() -> Arc<ManualClock> {
    Arc::new(ManualClock::new(T0))
}

fn session_limits(capacity: usize) -> SessionLimits {
    SessionLimits {
        capacity,
        ttl: TTL,
        max_state_bytes: 4096,
    }
}

fn blob_limits(max_total_bytes: usize, max_blob_bytes: usize, max_blobs: usize) -> BlobLimits {
    BlobLimits {
        max_total_bytes,
        max_blob_bytes,
        max_blobs,
        ttl: TTL,
    }
}

fn sessions(root: &Path, capacity: usize) -> FsSessionStore {
    FsSessionStore::open(session_limits(capacity), options(root, &clock())).expect("open")
}

fn blobs(root: &Path, total: usize, max: usize, count: usize) -> FsBlobStore {
    FsBlobStore::open(blob_limits(total, max, count), options(root, &clock())).expect("open")
}

/// Every file under `dir`, recursively.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            out.extend(files(&path));
        } else {
            out.push(path);
        }
    }
    out.sort();
    out
}

#[tokio::test]
async fn sessions_conform() {
    let d = tempfile::tempdir().expect("tmp");
    c::session_put_get_replace_drop(&sessions(&d.path().join("a"), 8)).await;
    c::session_capacity_evicts_least_recently_put(&sessions(&d.path().join("b"), 3)).await;
}

#[tokio::test]
async fn blobs_conform() {
    let d = tempfile::tempdir().expect("tmp");
    let p = |n: &str| d.path().join(n);
    c::blob_put_get_drop(&blobs(&p("a"), 1000, 100, 100)).await;
    c::blob_total_bytes_cap(&blobs(&p("b"), 100, 40, 100)).await;
    c::blob_count_cap(&blobs(&p("c"), 1000, 100, 3)).await;
    c::blob_drop_session(&blobs(&p("d"), 1000, 100, 100)).await;
    c::blob_ids_are_checked(&blobs(&p("e"), 1000, 100, 100)).await;
}

#[tokio::test]
async fn state_size_cap() {
    let d = tempfile::tempdir().expect("tmp");
    let s = FsSessionStore::open(
        SessionLimits {
            max_state_bytes: 200,
            ..session_limits(4)
        },
        options(d.path(), &clock()),
    )
    .expect("open");
    let mut big = c::state(0);
    big.payload.insert("pad".into(), "x".repeat(200).into());
    let err = s.put_state("a", big).await.expect_err("too large");
    assert!(
        matches!(err, StoreError::StateTooLarge { max: 200, size } if size > 200),
        "{err:?}"
    );
    assert_eq!(s.get_state("a").await.expect("get"), None, "nothing stored");
    s.put_state("a", c::state(1))
        .await
        .expect("small state fits");
}

#[tokio::test]
async fn everything_survives_a_reopen_in_put_order() {
    let d = tempfile::tempdir().expect("tmp");
    let clock = clock();
    let (ids, first) = {
        let s = FsSessionStore::open(session_limits(3), options(d.path(), &clock)).expect("open");
        let b =
            FsBlobStore::open(blob_limits(100, 40, 10), options(d.path(), &clock)).expect("open");
        for id in ["a", "b", "c"] {
            s.put_state(id, c::state(1)).await.expect("put");
            clock.advance(Duration::from_millis(1));
        }
        let first = b.put("a", vec![1; 40], "image/png").await.expect("put");
        clock.advance(Duration::from_millis(1));
        let second = b.put("b", vec![2; 40], "m").await.expect("put");
        (vec![first.clone(), second], first)
    };
    let s = FsSessionStore::open(session_limits(3), options(d.path(), &clock)).expect("reopen");
    let b = FsBlobStore::open(blob_limits(100, 40, 10), options(d.path(), &clock)).expect("reopen");
    assert_eq!(s.len(), 3);
    assert_eq!(s.get_state("b").await.expect("get"), Some(c::state(1)));
    assert_eq!(b.len(), 2);
    assert_eq!(b.total_bytes(), 80);
    assert_eq!(b.get(&ids[1]).await.expect("get"), vec![2; 40]);
    let info = b.blob_info(&first).expect("info").expect("live");
    assert_eq!(
        (info.session_id.as_str(), info.mime.as_str(), info.len),
        ("a", "image/png", 40)
    );
    // The order came back from disk: the oldest is evicted first.
    s.put_state("d", c::state(0)).await.expect("put");
    assert_eq!(s.get_state("a").await.expect("get"), None);
    b.put("c", vec![3; 40], "m").await.expect("put");
    assert!(b.get(&first).await.is_err(), "oldest blob evicted");
    // Reopening with smaller caps sheds the oldest.
    drop(b);
    let b = FsBlobStore::open(blob_limits(40, 40, 10), options(d.path(), &clock)).expect("reopen");
    assert_eq!(b.len(), 1);
    assert_eq!(b.total_bytes(), 40);
    // … and blobs over a lowered per-blob cap, states over a lowered state cap.
    drop(b);
    let b = FsBlobStore::open(blob_limits(40, 30, 10), options(d.path(), &clock)).expect("reopen");
    assert!(b.is_empty());
    drop(s);
    let s = FsSessionStore::open(
        SessionLimits {
            max_state_bytes: 10,
            ..session_limits(3)
        },
        options(d.path(), &clock),
    )
    .expect("reopen");
    assert!(s.is_empty());
    assert_eq!(files(d.path()), Vec::<PathBuf>::new());
}

#[tokio::test]
async fn expired_entries_are_invisible_at_once_and_deleted_by_the_sweep() {
    let d = tempfile::tempdir().expect("tmp");
    let clock = clock();
    let s = FsSessionStore::open(session_limits(8), options(d.path(), &clock)).expect("open");
    let b =
        FsBlobStore::open(blob_limits(1000, 100, 100), options(d.path(), &clock)).expect("open");
    s.put_state("old", c::state(0)).await.expect("put");
    let old = b.put("old", vec![1; 10], "m").await.expect("put");
    clock.advance(TTL / 2);
    s.put_state("young", c::state(0)).await.expect("put");
    let young = b.put("young", vec![2; 10], "m").await.expect("put");
    clock.advance(TTL / 2 - Duration::from_millis(1));
    assert!(
        s.get_state("old").await.expect("get").is_some(),
        "1 ms before the TTL"
    );
    assert!(b.get(&old).await.is_ok());
    clock.advance(Duration::from_millis(1));
    assert_eq!(
        s.get_state("old").await.expect("get"),
        None,
        "expired at the TTL"
    );
    assert_eq!(b.get(&old).await.expect_err("expired"), c::not_found(&old));
    assert!(b.blob_info(&old).expect("info").is_none());
    assert_eq!(s.len(), 1);
    // Still on disk until swept.
    assert_eq!(files(&d.path().join("sessions")).len(), 2);
    assert_eq!(s.sweep().await.expect("sweep"), 1);
    assert_eq!(files(&d.path().join("sessions")).len(), 1);
    assert_eq!(b.sweep().await.expect("sweep"), 1);
    assert_eq!(files(&d.path().join("blobs")).len(), 1);
    assert_eq!(b.total_bytes(), 10);
    assert!(s.get_state("young").await.expect("get").is_some());
    assert!(b.get(&young).await.is_ok());
    // A reopen after everything expired deletes the files and starts empty.
    clock.advance(TTL);
    drop((s, b));
    let s = FsSessionStore::open(session_limits(8), options(d.path(), &clock)).expect("reopen");
    let b =
        FsBlobStore::open(blob_limits(1000, 100, 100), options(d.path(), &clock)).expect("reopen");
    assert!(s.is_empty() && b.is_empty());
    assert_eq!(files(d.path()), Vec::<PathBuf>::new());
}

#[tokio::test]
async fn the_sweeper_task_deletes_expired_files() {
    let d = tempfile::tempdir().expect("tmp");
    let clock = clock();
    let s = FsSessionStore::open(session_limits(8), options(d.path(), &clock)).expect("open");
    let b =
        FsBlobStore::open(blob_limits(1000, 100, 100), options(d.path(), &clock)).expect("open");
    s.put_state("a", c::state(0)).await.expect("put");
    b.put("a", vec![1; 10], "m").await.expect("put");
    let sweeper = Sweeper::spawn(Duration::from_millis(10), Some(&b), Some(&s));
    clock.advance(TTL);
    let mut left = files(d.path()).len();
    for _ in 0..500 {
        if left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        left = files(d.path()).len();
    }
    assert_eq!(left, 0, "sweeper removed both files");
    drop(sweeper);
}

#[tokio::test]
async fn unfinished_and_torn_files_are_never_visible() {
    let d = tempfile::tempdir().expect("tmp");
    let clock = clock();
    let id = {
        let b = FsBlobStore::open(blob_limits(1000, 100, 100), options(d.path(), &clock))
            .expect("open");
        b.put("s", vec![7; 50], "m").await.expect("put")
    };
    // A write that crashed before its rename leaves a temp file …
    std::fs::write(d.path().join("tmp-blobs/deadbeef.tmp"), b"FVBLOB01 half").expect("write");
    // … and a torn file (e.g. data lost in a power cut without fsync) under a live name.
    let torn = d.path().join("blobs").join(format!("{id}.blob"));
    let bytes = std::fs::read(&torn).expect("read");
    std::fs::write(&torn, &bytes[..bytes.len() - 10]).expect("truncate");
    let foreign = d.path().join("blobs/README");
    std::fs::write(&foreign, b"not ours").expect("write");
    let b =
        FsBlobStore::open(blob_limits(1000, 100, 100), options(d.path(), &clock)).expect("open");
    assert!(b.is_empty());
    assert_eq!(b.get(&id).await.expect_err("torn"), c::not_found(&id));
    assert_eq!(files(&d.path().join("tmp-blobs")), Vec::<PathBuf>::new());
    assert!(!torn.exists(), "torn file removed");
    assert!(foreign.exists(), "files that are not ours are left alone");
}

#[tokio::test]
async fn ids_never_reach_outside_the_root() {
    let d = tempfile::tempdir().expect("tmp");
    let root = d.path().join("root");
    let s = sessions(&root, 8);
    let b = blobs(&root, 1000, 100, 100);
    for id in ["../../escape", "/etc/passwd", "..", "a/../../b"] {
        s.put_state(id, c::state(0)).await.expect("put");
        b.put(id, vec![1], "m").await.expect("put");
    }
    for f in files(d.path()) {
        assert!(f.starts_with(&root), "{} is outside the root", f.display());
        let name = f.file_name().and_then(|n| n.to_str()).expect("utf-8 name");
        let stem = name.split('.').next().expect("stem");
        assert!(stem.bytes().all(|c| c.is_ascii_hexdigit()), "{name}");
    }
    assert_eq!(
        std::fs::read_dir(d.path()).expect("ls").count(),
        1,
        "only the root"
    );
    let err = b.get("../sessions/x").await.expect_err("traversal");
    assert_eq!(err.kind(), "invalid_id");
    let err = s
        .put_state(&"x".repeat(121), c::state(0))
        .await
        .expect_err("long id");
    assert_eq!(
        err.to_string(),
        format!(
            "invalid session id {:?}: must be at most 120 bytes",
            format!("{}…", "x".repeat(64))
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_puts_keep_the_caps_and_the_index_in_step_with_the_disk() {
    let d = tempfile::tempdir().expect("tmp");
    let b = Arc::new(blobs(d.path(), 1000, 100, 20));
    let s = Arc::new(sessions(d.path(), 5));
    let mut tasks = Vec::new();
    for t in 0..8u8 {
        let (b, s) = (Arc::clone(&b), Arc::clone(&s));
        tasks.push(tokio::spawn(async move {
            for i in 0..20u8 {
                b.put(&format!("s{t}"), vec![i; 30 + usize::from(i)], "m")
                    .await
                    .expect("put");
                s.put_state(&format!("s{}", (t + i) % 7), c::state(u64::from(i)))
                    .await
                    .expect("put state");
            }
        }));
    }
    for task in tasks {
        task.await.expect("task");
    }
    assert!(b.total_bytes() <= 1000);
    assert!(b.len() <= 20);
    assert_eq!(files(&d.path().join("blobs")).len(), b.len());
    let on_disk: u64 = files(&d.path().join("blobs"))
        .iter()
        .map(|f| std::fs::metadata(f).expect("stat").len())
        .sum();
    // Each file is its data plus a 38-byte header ("s<t>" owner, "m" mime).
    assert_eq!(
        on_disk as usize,
        b.total_bytes() + b.len() * (8 + 8 + 8 + 4 + 2 + 4 + 1)
    );
    assert_eq!(s.len(), 5);
    assert_eq!(files(&d.path().join("sessions")).len(), 5);
    assert_eq!(files(&d.path().join("tmp-blobs")).len(), 0);
}

#[test]
fn limits_are_validated() {
    let d = tempfile::tempdir().expect("tmp");
    let err = FsBlobStore::open(blob_limits(10, 11, 1), FsOptions::new(d.path())).expect_err("bad");
    assert_eq!(
        err.to_string(),
        "invalid store config: max_blob_bytes (11) must not exceed max_total_bytes (10)"
    );
    let err = FsSessionStore::open(
        SessionLimits {
            ttl: Duration::ZERO,
            ..SessionLimits::default()
        },
        FsOptions::new(d.path()),
    )
    .expect_err("bad");
    assert_eq!(
        err.to_string(),
        "invalid store config: ttl must be at least 1 ms"
    );
}

#[tokio::test]
async fn mime_is_capped() {
    let d = tempfile::tempdir().expect("tmp");
    let b = blobs(d.path(), 1000, 100, 10);
    let ok = "m".repeat(fv_store::fs::MAX_MIME_BYTES);
    b.put("s", vec![1], &ok).await.expect("255-byte mime");
    let err = b
        .put("s", vec![1], &format!("{ok}x"))
        .await
        .expect_err("256");
    assert_eq!(err.to_string(), "invalid mime: must be at most 255 bytes");
}
