//! The backends that run services: local models and programs, and upstream providers.

pub mod chat;
pub mod chat_stream;
pub mod documents;
pub mod embed;
pub mod fetch_input;
pub mod image_input;
pub mod input;
pub mod loading;
pub mod local_llm;
pub mod nsfw;
pub mod ocr;
pub mod onnx;
pub mod piper;
pub mod speech;
pub mod whisper;

/// Where a long task reports its progress: steps done, steps in all (30-second windows of
/// audio, pages of a PDF).
pub type ProgressFn = Box<dyn FnMut(usize, usize) + Send>;

/// Why a backend could not produce a result.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BackendError {
    /// The input cannot be processed; the message says what to fix.
    #[error("{0}")]
    BadInput(String),
    /// The backend is not installed or configured here.
    #[error("{0}")]
    Unavailable(String),
    /// An upstream provider failed or could not be reached.
    #[error("{0}")]
    Upstream(String),
    /// The backend failed on good input.
    #[error("{0}")]
    Failed(String),
}

impl BackendError {
    /// Whether running the same input again may succeed (an upstream or a transient fault),
    /// as opposed to input or configuration that will fail the same way.
    pub fn is_retryable(&self) -> bool {
        matches!(self, BackendError::Upstream(_) | BackendError::Failed(_))
    }
}
