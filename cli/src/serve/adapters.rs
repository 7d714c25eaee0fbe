//! Runtime adapters: vLLM's `load_lora_adapter` / `unload_lora_adapter` bodies, adapter names,
//! and paths confined to `--adapter-root` (no `..`, no symbolic link leading out).

use std::io::ErrorKind;
use std::path::{Component, Path, PathBuf};

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::response::IntoResponse;
use serde::Deserialize;

use super::body::bytes;
use super::error::ApiError;
use super::http::{AppResult, AppState};
use super::worker::Cmd;

/// `POST /v1/load_lora_adapter`, checked.
pub struct LoadRequest {
    /// `lora_name`.
    pub name: String,
    /// `lora_path`.
    pub path: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LoadBody {
    lora_name: Option<String>,
    lora_path: Option<String>,
    load_inplace: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UnloadBody {
    lora_name: Option<String>,
    lora_int_id: Option<i64>,
}

/// Parses a load request.
pub fn load_request(body: &[u8]) -> Result<LoadRequest, ApiError> {
    let b: LoadBody = super::api::parse(body)?;
    if b.load_inplace == Some(true) {
        return Err(ApiError::bad_param(
            "load_inplace",
            "`load_inplace` is not supported: unload the adapter first",
        ));
    }
    let name = b
        .lora_name
        .ok_or_else(|| ApiError::bad_param("lora_name", "`lora_name` is required"))?;
    let path = b.lora_path.ok_or_else(|| {
        ApiError::bad_param(
            "lora_path",
            "`lora_path` is required (a PEFT adapter directory or a llama.cpp LoRA GGUF under --adapter-root)",
        )
    })?;
    Ok(LoadRequest { name, path })
}

/// Parses an unload request; returns the name.
pub fn unload_request(body: &[u8]) -> Result<String, ApiError> {
    let b: UnloadBody = super::api::parse(body)?;
    let _ = b.lora_int_id;
    b.lora_name
        .ok_or_else(|| ApiError::bad_param("lora_name", "`lora_name` is required"))
}

/// An adapter name must be usable as a `model` value and a metrics label
/// ([`crate::adapter_args::adapter_name_fault`], `--adapter`'s rules), and neither `auto` nor the base
/// model's name.
pub fn check_name(name: &str, base: &str) -> Result<(), ApiError> {
    let bad = |why: &str| ApiError::bad_param("lora_name", format!("`lora_name` `{name}` {why}"));
    crate::adapter_args::adapter_name_fault(name).map_err(bad)?;
    if name == "auto" {
        return Err(bad("is taken: `auto` is the router"));
    }
    if name == base {
        return Err(bad("is taken: it is the base model's name"));
    }
    Ok(())
}

/// Resolves `given` (relative to `root`, or absolute inside it) to a canonical adapter
/// directory or LoRA GGUF under `root` (itself canonical). 403 for a path that leads out of the root, by
/// `..` or through a symbolic link (the directory or the adapter's files); 404 when nothing
/// is there.
pub fn confine(root: &Path, given: &str) -> Result<PathBuf, ApiError> {
    let p = Path::new(given);
    if given.is_empty() {
        return Err(ApiError::bad_param("lora_path", "`lora_path` is empty"));
    }
    if p.components().any(|c| matches!(c, Component::ParentDir)) {
        return Err(ApiError::forbidden(format!(
            "`lora_path` `{given}` contains `..`; adapters are loaded from under --adapter-root only"
        ))
        .param("lora_path"));
    }
    let full = if p.is_absolute() {
        p.to_path_buf()
    } else {
        root.join(p)
    };
    let outside = || {
        ApiError::forbidden(format!(
            "`lora_path` `{given}` lies outside --adapter-root; adapters are loaded from under it only"
        ))
        .param("lora_path")
    };
    if !full.starts_with(root) {
        return Err(outside());
    }
    let canon = match full.canonicalize() {
        Ok(c) => c,
        Err(e) if e.kind() == ErrorKind::NotFound => {
            return Err(ApiError::not_found(format!(
                "no adapter at `lora_path` `{given}` (nothing there under --adapter-root)"
            ))
            .param("lora_path"))
        }
        Err(e) => {
            return Err(ApiError::bad_param(
                "lora_path",
                format!("`lora_path` `{given}`: {e}"),
            ))
        }
    };
    if !canon.starts_with(root) {
        return Err(outside());
    }
    if !canon.is_dir() && !dlp_engine::loader::gguf::is_gguf_file(&canon) {
        let why = dlp_engine::loader::peft::NOT_AN_ADAPTER;
        return Err(ApiError::bad_param(
            "lora_path",
            format!("`lora_path` `{given}` {why}"),
        ));
    }
    for f in ["adapter_config.json", "adapter_model.safetensors"] {
        if let Ok(c) = canon.join(f).canonicalize() {
            if !c.starts_with(root) {
                return Err(outside());
            }
        }
    }
    Ok(canon)
}

/// `POST /v1/load_lora_adapter`: loads an adapter (PEFT folder or LoRA GGUF) from under `--adapter-root` (off the
/// async threads) and hands it to the engine, which serves it from its next step.
pub(super) async fn load(
    State(st): State<Arc<AppState>>,
    b: Result<Bytes, BytesRejection>,
) -> AppResult {
    let root = st.adapter_root.clone().ok_or_else(|| {
        ApiError::forbidden("runtime adapter loading is off: start the server with --allow-runtime-adapters --adapter-root DIR")
    })?;
    let req = load_request(&bytes(b)?)?;
    check_name(&req.name, &st.base_name)?;
    if st
        .adapters
        .read()
        .expect("not poisoned")
        .iter()
        .any(|(n, _, _)| *n == req.name)
    {
        return Err(ApiError::bad_param(
            "lora_name",
            format!("the adapter `{}` has already been loaded", req.name),
        ));
    }
    let dir = confine(&root, &req.path)?;
    let st2 = st.clone();
    let (name, dir2) = (req.name.clone(), dir.clone());
    let adapter = tokio::task::spawn_blocking(move || {
        dlp_engine::loader::peft::PeftAdapter::load(&name, &dir2, &st2.config)
    })
    .await
    .map_err(|e| ApiError::internal(format!("loading the adapter failed: {e}")))?
    .map_err(|e| {
        ApiError::bad_param("lora_path", format!("invalid adapter `{}`: {e}", req.name))
    })?;
    let (reply, answer) = tokio::sync::oneshot::channel();
    st.tx
        .send(Cmd::Load {
            adapter,
            dir: dir.clone(),
            reply,
        })
        .map_err(|_| ApiError::unavailable("the engine has stopped"))?;
    answer
        .await
        .map_err(|_| ApiError::unavailable("the engine has stopped"))??;
    st.adapters.write().expect("not poisoned").push((
        req.name.clone(),
        dir.display().to_string(),
        super::http::unix_now(),
    ));
    Ok(format!("Success: LoRA adapter '{}' added successfully.", req.name).into_response())
}

/// `POST /v1/unload_lora_adapter`: the engine refuses new requests for it at once and frees
/// its slot when the requests already running with it finish.
pub(super) async fn unload(
    State(st): State<Arc<AppState>>,
    b: Result<Bytes, BytesRejection>,
) -> AppResult {
    if st.adapter_root.is_none() {
        return Err(ApiError::forbidden(
            "runtime adapter unloading is off: start the server with --allow-runtime-adapters --adapter-root DIR",
        ));
    }
    let name = unload_request(&bytes(b)?)?;
    let (reply, answer) = tokio::sync::oneshot::channel();
    st.tx
        .send(Cmd::Unload {
            name: name.clone(),
            reply,
        })
        .map_err(|_| ApiError::unavailable("the engine has stopped"))?;
    let gone = answer
        .await
        .map_err(|_| ApiError::unavailable("the engine has stopped"))??;
    st.adapters
        .write()
        .expect("not poisoned")
        .retain(|(n, _, _)| *n != name);
    Ok(if gone {
        format!("Success: LoRA adapter '{name}' removed successfully.")
    } else {
        format!("Success: LoRA adapter '{name}' removed; requests already running with it finish first, new ones are refused.")
    }
    .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_stay_under_the_root() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root").canonicalize().unwrap_or_else(|_| {
            std::fs::create_dir(tmp.path().join("root")).unwrap();
            tmp.path().join("root").canonicalize().unwrap()
        });
        std::fs::create_dir(root.join("a")).unwrap();
        std::fs::create_dir(tmp.path().join("outside")).unwrap();
        assert_eq!(confine(&root, "a").unwrap(), root.join("a"));
        assert_eq!(
            confine(&root, root.join("a").to_str().unwrap()).unwrap(),
            root.join("a")
        );
        assert_eq!(confine(&root, "../outside").unwrap_err().status, 403);
        assert_eq!(confine(&root, "a/../a").unwrap_err().status, 403);
        assert_eq!(
            confine(&root, tmp.path().join("outside").to_str().unwrap())
                .unwrap_err()
                .status,
            403
        );
        assert_eq!(confine(&root, "missing").unwrap_err().status, 404);
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(tmp.path().join("outside"), root.join("link")).unwrap();
            assert_eq!(confine(&root, "link").unwrap_err().status, 403);
            std::os::unix::fs::symlink("/etc/hostname", root.join("a/adapter_config.json"))
                .unwrap();
            assert_eq!(confine(&root, "a").unwrap_err().status, 403);
        }
    }

    #[test]
    fn names() {
        assert!(check_name("math-2", "base").is_ok());
        for bad in ["", "auto", "base", "a b", "x\n", "a,b", "a=b"] {
            assert_eq!(check_name(bad, "base").unwrap_err().status, 400, "{bad:?}");
        }
    }
}
