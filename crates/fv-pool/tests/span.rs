//! The caller's tracing span travels with a run and is entered on the worker thread.
//! Own test binary: it installs a global subscriber (a bare span registry).
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use fv_core::{
    CancelToken, GenerateError, GenerationRequest, GenerationResult, GenerationSink, Generator,
};
use fv_pool::{GpuPool, InProcessPool, RunEvent};
use std::sync::{Arc, Mutex};
use tracing_subscriber::registry::{LookupSpan, Registry};

/// Names of the current span and its ancestors on this thread, outermost first.
fn entered_names() -> Vec<String> {
    let Some(id) = tracing::Span::current().id() else {
        return Vec::new();
    };
    tracing::dispatcher::get_default(|dispatch| {
        let registry = dispatch
            .downcast_ref::<Registry>()
            .expect("the test installs a Registry");
        registry
            .span(&id)
            .map(|span| {
                span.scope()
                    .from_root()
                    .map(|s| s.name().to_owned())
                    .collect()
            })
            .unwrap_or_default()
    })
}

/// Records the spans entered on its thread while generating.
struct SpanProbe(Arc<Mutex<Vec<String>>>);

impl Generator for SpanProbe {
    fn generate(
        &mut self,
        _request: &GenerationRequest,
        sink: &mut dyn GenerationSink,
        _cancel: &CancelToken,
    ) -> Result<GenerationResult, GenerateError> {
        *self.0.lock().unwrap() = entered_names();
        sink.step(1, 1);
        Ok(GenerationResult::default())
    }
}

#[tokio::test]
async fn the_session_span_is_entered_on_the_worker_thread() {
    tracing::subscriber::set_global_default(Registry::default()).unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let pool = InProcessPool::new(vec![Box::new(SpanProbe(seen.clone()))], config()).unwrap();
    let (tx, _rx) = updates();
    let mut lease = pool.acquire("s1", tx).await.unwrap();

    let session = tracing::info_span!("session", session_id = "s1");
    let mut run = {
        let _entered = session.enter();
        lease.run(request("x", 1, 1)).unwrap()
    };
    assert!(matches!(
        drain(&mut run).await.last(),
        Some(RunEvent::Done(Ok(_)))
    ));
    assert_eq!(*seen.lock().unwrap(), vec!["session", "generate"]);
}
