//! The model layer's error type: one variant per thing that can be wrong with a model folder, an
//! adapter, or a request, each with a message that names the file or tensor at fault.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("reading {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("malformed config {path}: {message}")]
    Config { path: PathBuf, message: String },
    #[error("malformed safetensors file {path}: {message}")]
    Safetensors { path: PathBuf, message: String },
    #[error("missing tensor `{name}` (no such tensor in {where_})")]
    MissingTensor { name: String, where_: String },
    #[error("tensor `{name}` has shape {found:?} but the config wants {expected:?}")]
    TensorShape { name: String, expected: Vec<i64>, found: Vec<i64> },
    #[error("tensor `{name}` has unsupported dtype {dtype}")]
    TensorDtype { name: String, dtype: String },
    #[error("tokenizer {path}: {message}")]
    Tokenizer { path: PathBuf, message: String },
    #[error("tokenizer does not match the model: {0}")]
    VocabMismatch(String),
    #[error("chat template: {0}")]
    Template(String),
    #[error("adapter {path}: {message}")]
    Adapter { path: PathBuf, message: String },
    #[error("adapter {path} was made for another base model: {message}")]
    AdapterBase { path: PathBuf, message: String },
    #[error("invalid argument: {0}")]
    Invalid(String),
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
}

pub type Result<T, E = ModelError> = std::result::Result<T, E>;

pub(crate) fn io_err(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> ModelError {
    let path = path.into();
    move |source| ModelError::Io { path, source }
}
