//! [`Background`]: a `serve(shutdown)` future on its own task, stopped gracefully or aborted.

use anyhow::Context;
use tokio::sync::oneshot;

/// A `serve(shutdown)` future on its own task, with the sender of its `shutdown`: stopped
/// gracefully by [`Background::shutdown`], aborted when dropped. Behind
/// [`crate::router::TestRouter`] and fv-testkit's `TestServer`.
#[derive(Debug)]
pub struct Background<E> {
    /// Names the task in the error when it panicked.
    what: &'static str,
    stop: Option<oneshot::Sender<()>>,
    join: Option<tokio::task::JoinHandle<Result<(), E>>>,
}

impl<E> Background<E> {
    /// Starts the graceful shutdown without waiting for it.
    pub fn stop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

impl<E> Background<E>
where
    E: std::error::Error + Send + Sync + 'static,
{
    /// Spawns `serve(shutdown)`, where `shutdown` resolves on [`Background::stop`] or drop.
    pub fn spawn<F, Fut>(what: &'static str, serve: F) -> Self
    where
        F: FnOnce(std::pin::Pin<Box<dyn Future<Output = ()> + Send>>) -> Fut,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel::<()>();
        let join = tokio::spawn(serve(Box::pin(async move {
            let _ = rx.await;
        })));
        Self {
            what,
            stop: Some(tx),
            join: Some(join),
        }
    }

    /// Shuts down gracefully and waits until the task has returned, with its error.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        self.stop();
        if let Some(join) = self.join.take() {
            join.await
                .with_context(|| format!("{} task panicked", self.what))??;
        }
        Ok(())
    }
}

impl<E> Drop for Background<E> {
    fn drop(&mut self) {
        self.stop();
        if let Some(join) = self.join.take() {
            join.abort();
        }
    }
}
