//! ONNX Runtime, loaded at run time from its shared library (the `onnxruntime` 1.31.1 wheel's
//! `libonnxruntime.so.1.31.1`, which `scripts/install-models.sh` puts in
//! `models/onnxruntime/`), for the models shipped as ONNX (open_nsfw, Piper voices).
//!
//! ONNX Runtime allows one environment per process: the first load wins and every session
//! shares it.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use ort::environment::Environment;
use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;

/// Where `scripts/install-models.sh` puts the library, under the models directory.
pub const LIBRARY_FILE: &str = "onnxruntime/libonnxruntime.so.1.31.1";

/// The environment variable naming the library, when the config does not.
pub const LIBRARY_ENV: &str = "ORT_DYLIB_PATH";

static ENVIRONMENT: OnceLock<Result<Environment, String>> = OnceLock::new();

/// The library to load: `configured`, else `$ORT_DYLIB_PATH`, else [`LIBRARY_FILE`] under
/// `models_dir`.
pub fn library_path(configured: Option<&Path>, models_dir: &Path) -> PathBuf {
    configured
        .map(Path::to_owned)
        .or_else(|| std::env::var_os(LIBRARY_ENV).map(PathBuf::from))
        .unwrap_or_else(|| models_dir.join(LIBRARY_FILE))
}

/// The process's ONNX Runtime environment, loading the library at `library` the first time.
pub fn environment(library: &Path) -> Result<Environment, String> {
    ENVIRONMENT
        .get_or_init(|| {
            if !library.is_file() {
                return Err(format!(
                    "the ONNX Runtime library is not installed ({} is missing): run \
                     scripts/install-models.sh, or set {LIBRARY_ENV}",
                    library.display()
                ));
            }
            ort::init_from(library)
                .map_err(|e| format!("cannot load {}: {e}", library.display()))?
                .with_name("x402-gateway")
                .with_telemetry(false)
                .build()
                .map_err(|e| format!("cannot start ONNX Runtime: {e}"))
        })
        .clone()
}

/// A session on the model at `model`, using `threads` threads for one run.
pub fn session(library: &Path, model: &Path, threads: usize) -> Result<Session, String> {
    if !model.is_file() {
        return Err(format!(
            "{} is missing: run scripts/install-models.sh",
            model.display()
        ));
    }
    let environment = environment(library)?;
    let failed = |e: ort::Error| format!("cannot load {}: {e}", model.display());
    Session::builder(&environment)
        .map_err(failed)?
        .with_optimization_level(GraphOptimizationLevel::Level3)
        .map_err(|e| failed(e.into()))?
        .with_intra_threads(threads)
        .map_err(|e| failed(e.into()))?
        .with_inter_threads(1)
        .map_err(|e| failed(e.into()))?
        .commit_from_file(model)
        .map_err(failed)
}
