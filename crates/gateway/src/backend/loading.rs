//! A model loaded on a thread of its own while the gateway serves: requests that come
//! meanwhile wait for it; `/health` and `/catalog` say it is loading, or why it failed.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::watch;

use super::BackendError;
use super::local_llm::LoadState;

/// Where a background load is.
#[derive(Debug)]
enum Slot<T> {
    Loading,
    Ready(Arc<T>, u64),
    Failed(String),
}

impl<T> Clone for Slot<T> {
    fn clone(&self) -> Self {
        match self {
            Slot::Loading => Slot::Loading,
            Slot::Ready(model, ms) => Slot::Ready(Arc::clone(model), *ms),
            Slot::Failed(why) => Slot::Failed(why.clone()),
        }
    }
}

/// A load not begun yet: begun by the first [`Loading::get`].
type Deferred = Arc<std::sync::Mutex<Option<Box<dyn FnOnce() + Send>>>>;

/// A handle on a model loading (or loaded) in the background (cheap to clone).
pub struct Loading<T> {
    name: Arc<str>,
    slot: watch::Receiver<Slot<T>>,
    deferred: Deferred,
}

impl<T> Clone for Loading<T> {
    fn clone(&self) -> Self {
        Self {
            name: Arc::clone(&self.name),
            slot: self.slot.clone(),
            deferred: Arc::clone(&self.deferred),
        }
    }
}

impl<T> std::fmt::Debug for Loading<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Loading")
            .field("name", &self.name)
            .field("state", &self.state())
            .finish()
    }
}

impl<T: Send + Sync + 'static> Loading<T> {
    /// Runs `load` on a new thread named after `name`.
    pub fn start(
        name: &str,
        load: impl FnOnce() -> Result<T, String> + Send + 'static,
    ) -> Result<Self, String> {
        let (sender, slot) = watch::channel(Slot::Loading);
        Self::spawn(name, sender, load)?;
        Ok(Self {
            name: name.into(),
            slot,
            deferred: Arc::default(),
        })
    }

    /// Runs `load` on a new thread named after `name` when the model is first asked for
    /// ([`Loading::get`]), not before: a model few requests use costs nothing until then.
    pub fn on_first_use(
        name: &str,
        load: impl FnOnce() -> Result<T, String> + Send + 'static,
    ) -> Self {
        let (sender, slot) = watch::channel(Slot::Loading);
        let thread_name = name.to_owned();
        let begin = move || {
            let fail = sender.clone();
            if let Err(why) = Self::spawn(&thread_name, sender, load) {
                let _ = fail.send(Slot::Failed(why));
            }
        };
        Self {
            name: name.into(),
            slot,
            deferred: Arc::new(std::sync::Mutex::new(Some(Box::new(begin)))),
        }
    }

    fn spawn(
        name: &str,
        sender: watch::Sender<Slot<T>>,
        load: impl FnOnce() -> Result<T, String> + Send + 'static,
    ) -> Result<(), String> {
        let thread_name = name.to_owned();
        std::thread::Builder::new()
            .name(format!("load {name}"))
            .spawn(move || {
                let started = Instant::now();
                let outcome = match load() {
                    Ok(model) => {
                        let ms = started.elapsed().as_millis() as u64;
                        tracing::info!(model = %thread_name, load_ms = ms, "model loaded");
                        Slot::Ready(Arc::new(model), ms)
                    }
                    Err(why) => {
                        tracing::warn!(model = %thread_name, %why, "model cannot be loaded");
                        Slot::Failed(why)
                    }
                };
                let _ = sender.send(outcome);
            })
            .map(|_| ())
            .map_err(|e| format!("cannot start loading {name}: {e}"))
    }
}

impl<T> Loading<T> {
    /// The model's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn deferred(&self) -> std::sync::MutexGuard<'_, Option<Box<dyn FnOnce() + Send>>> {
        self.deferred
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether it waits for its first use, is loading, loaded or failed.
    pub fn state(&self) -> LoadState {
        if self.deferred().is_some() {
            return LoadState::OnFirstUse;
        }
        match &*self.slot.borrow() {
            Slot::Loading => LoadState::Loading,
            Slot::Ready(_, load_ms) => LoadState::Ready { load_ms: *load_ms },
            Slot::Failed(why) => LoadState::Failed(why.clone()),
        }
    }

    /// The model, once loaded (waits while it loads).
    pub async fn get(&self) -> Result<Arc<T>, BackendError> {
        let begin = self.deferred().take();
        if let Some(begin) = begin {
            begin();
        }
        let mut slot = self.slot.clone();
        let ready = slot
            .wait_for(|s| !matches!(s, Slot::Loading))
            .await
            .map(|s| s.clone());
        match ready {
            Ok(Slot::Ready(model, _)) => Ok(model),
            Ok(Slot::Failed(why)) => Err(BackendError::Unavailable(format!(
                "{} cannot be loaded: {why}",
                self.name
            ))),
            _ => Err(BackendError::Unavailable(format!(
                "{} stopped loading",
                self.name
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn requests_wait_for_the_model_and_learn_why_it_failed() {
        let (go, wait) = std::sync::mpsc::channel::<()>();
        let model = Loading::start("test model", move || {
            wait.recv().unwrap();
            Ok(42)
        })
        .unwrap();
        assert_eq!(model.state(), LoadState::Loading);
        go.send(()).unwrap();
        assert_eq!(*model.get().await.unwrap(), 42);
        assert!(matches!(model.state(), LoadState::Ready { .. }));

        let broken = Loading::<u8>::start("broken", || Err("no file".into())).unwrap();
        let error = broken.get().await.unwrap_err();
        assert!(
            error
                .to_string()
                .contains("broken cannot be loaded: no file")
        );
        assert_eq!(broken.state(), LoadState::Failed("no file".into()));
    }
}
