//! Loading and unloading adapters while other clients are being served.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use serde_json::{json, Value};

use crate::harness::{assets, Server};

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for f in std::fs::read_dir(from).unwrap() {
        let f = f.unwrap();
        std::fs::copy(f.path(), to.join(f.file_name())).unwrap();
    }
}

fn chat(model: &str) -> Value {
    json!({"model": model, "temperature": 0, "max_tokens": 12,
           "messages": [{"role": "user", "content": "Is the sky blue? Answer true or false."}]})
}

/// Load under traffic, serve with the new adapter (a copy of `boolq` under another name
/// answers exactly as `boolq` does), refuse bad loads with vLLM's status codes, unload
/// (deferred while a request uses it), 404 afterwards. Traffic on `piqa` never changes.
#[test]
fn load_and_unload_under_traffic() {
    let Some(a) = assets() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    copy_dir(&a.adapters.join("boolq"), &root.join("boolq-copy"));
    copy_dir(&a.adapters.join("boolq"), &root.join("second"));
    copy_dir(&a.adapters.join("boolq"), &root.join("dora"));
    let cfg = root.join("dora/adapter_config.json");
    let mut c: Value = serde_json::from_str(&std::fs::read_to_string(&cfg).unwrap()).unwrap();
    c["use_dora"] = json!(true);
    std::fs::write(&cfg, c.to_string()).unwrap();
    let tiny = dlp_tests::fixtures("tiny-llama").unwrap();
    copy_dir(&tiny.join("adapters/qv_r8"), &root.join("other-base"));
    // A llama.cpp LoRA GGUF is read (here one for another family, refused as such) and a
    // file that is neither a folder nor a GGUF is refused as that.
    let arcee = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/gguf-lora/tiny-arcee.all_r8.f32.gguf");
    std::fs::copy(arcee, root.join("arcee.gguf")).unwrap();
    std::fs::write(root.join("notes.txt"), "not an adapter").unwrap();
    std::fs::create_dir(tmp.path().join("outside")).unwrap();
    #[cfg(unix)]
    std::os::unix::fs::symlink(tmp.path().join("outside"), root.join("escape")).unwrap();

    let mut args = a.model_args();
    args.extend([
        "--allow-runtime-adapters".into(),
        "--adapter-root".into(),
        root.display().to_string(),
    ]);
    let s = Server::start(&args);
    let piqa =
        s.ok("/v1/chat/completions", &chat("piqa"))["choices"][0]["message"]["content"].clone();
    let boolq =
        s.ok("/v1/chat/completions", &chat("boolq"))["choices"][0]["message"]["content"].clone();

    let stop = AtomicBool::new(false);
    let served = AtomicUsize::new(0);
    std::thread::scope(|sc| {
        sc.spawn(|| {
            while !stop.load(Ordering::SeqCst) {
                let r = s.ok("/v1/chat/completions", &chat("piqa"));
                assert_eq!(
                    r["choices"][0]["message"]["content"], piqa,
                    "traffic changed"
                );
                served.fetch_add(1, Ordering::SeqCst);
            }
        });
        let load = |name: &str, path: &str| {
            s.post(
                "/v1/load_lora_adapter",
                &json!({"lora_name": name, "lora_path": path}),
            )
        };
        let unix_now = || {
            let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
            t.unwrap().as_secs()
        };
        let before = unix_now();
        let r = load("copy", "boolq-copy");
        assert_eq!(r.status, 200, "{}", r.body);
        let models = s.get("/v1/models").json();
        let copy = models["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["id"] == "copy")
            .expect("listed");
        assert_eq!(copy["parent"], "SmolLM2-135M-Instruct.Q4_1");
        // Its model object was created by the load, not with the server.
        let created = copy["created"].as_u64().unwrap();
        assert!((before..=unix_now()).contains(&created), "{copy}");
        let r = s.ok("/v1/chat/completions", &chat("copy"));
        assert_eq!(r["choices"][0]["message"]["content"], boolq);

        // vLLM's status codes, and the field named.
        for (name, path, status, words) in [
            ("copy", "second", 400, &["already been loaded"][..]),
            ("x", "missing", 404, &["no adapter"][..]),
            ("x", "../outside", 403, &[".."][..]),
            ("x", "escape", 403, &["outside --adapter-root"][..]),
            ("x", "/etc", 403, &["outside --adapter-root"][..]),
            ("x", "dora", 400, &["use_dora"][..]),
            ("x", "other-base", 400, &["shape"][..]),
            (
                "x",
                "arcee.gguf",
                400,
                &["an adapter for a `arcee` model"][..],
            ),
            (
                "x",
                "notes.txt",
                400,
                &["is neither a directory", "nor a GGUF file"][..],
            ),
            ("auto", "second", 400, &["taken"][..]),
            ("", "second", 400, &["1 to 128"][..]),
        ] {
            let r = load(name, path);
            assert_eq!(r.status, status, "{name} {path}: {}", r.body);
            let msg = r.json()["error"]["message"].as_str().unwrap().to_string();
            for w in words {
                assert!(msg.contains(w), "{name} {path}: {msg:?} lacks {w:?}");
            }
        }
        let r = s.post("/v1/load_lora_adapter", &json!({"lora_name": "x"}));
        assert_eq!(r.status, 400);
        assert_eq!(r.json()["error"]["param"], "lora_path");
        // Fields of the wrong type or unknown ones are named, as in the completion bodies.
        for (body, param) in [
            (json!({"lora_name": 1, "lora_path": "second"}), "lora_name"),
            (
                json!({"lora_name": "x", "lora_path": "second", "foo": 1}),
                "foo",
            ),
        ] {
            let r = s.post("/v1/load_lora_adapter", &body);
            assert_eq!(r.status, 400, "{body}: {}", r.body);
            assert_eq!(r.json()["error"]["param"], param, "{body}: {}", r.body);
        }
        let r = s.post("/v1/unload_lora_adapter", &json!({"lora_name": ["x"]}));
        assert_eq!(
            (r.status, r.json()["error"]["param"].clone()),
            (400, json!("lora_name"))
        );

        // Unload: gone from the list, 404 for requests, 404 for a second unload.
        let unload = |name: &str| s.post("/v1/unload_lora_adapter", &json!({"lora_name": name}));
        let routed = |name: &str| format!("dlp_adapter_routed_total{{adapter=\"{name}\"}}");
        assert!(s.metric(&routed("copy")) >= 1.0);
        let r = unload("copy");
        assert_eq!(r.status, 200, "{}", r.body);
        // Its series goes with it (unused, it is unloaded before the answer).
        assert!(!s.get("/metrics").body.contains(&routed("copy")));
        let r = s.post("/v1/chat/completions", &chat("copy"));
        assert_eq!(r.status, 404, "{}", r.body);
        assert_eq!(unload("copy").status, 404);
        assert!(!s.get("/v1/models").body.contains("\"copy\""));

        // Unloading an adapter in use waits for its request, which finishes unharmed.
        assert_eq!(load("second", "second").status, 200);
        let body = json!({"model": "second", "temperature": 0, "max_tokens": 40,
                          "messages": [{"role": "user", "content": "Describe the sea in detail."}]});
        let alone = s.ok("/v1/chat/completions", &body)["choices"][0]["message"]["content"].clone();
        let h = sc.spawn({
            let body = body.clone();
            let s = &s;
            move || s.ok("/v1/chat/completions", &body)
        });
        // Submitted: the second use of `second` is counted (the first was `alone`).
        while s.metric(&routed("second")) < 2.0 {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let r = unload("second");
        assert_eq!(r.status, 200, "{}", r.body);
        // Again while its request runs (or after it ended): a 404 that never lists it as
        // loaded, and says it is on its way out while it is.
        let again = unload("second");
        assert_eq!(again.status, 404, "{}", again.body);
        let message = serde_json::from_str::<Value>(&again.body).unwrap()["error"]["message"]
            .as_str()
            .unwrap()
            .to_string();
        let loaded = message.split("loaded: ").nth(1).unwrap();
        assert!(!loaded.split(", ").any(|n| n == "second"), "{message}");
        assert!(
            message.contains("is being unloaded already") || message.contains("cannot be found"),
            "{message}"
        );
        let done = h.join().unwrap();
        assert_eq!(done["choices"][0]["message"]["content"], alone);
        assert_eq!(s.post("/v1/chat/completions", &chat("second")).status, 404);
        // Unloaded once its request is done, with its series.
        let t0 = std::time::Instant::now();
        while s.get("/metrics").body.contains(&routed("second")) {
            assert!(t0.elapsed().as_secs() < 30, "the series of `second` stayed");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        stop.store(true, Ordering::SeqCst);
    });
    assert!(served.load(Ordering::SeqCst) >= 1);
    assert_eq!(s.metric("dlp_adapters_loaded"), 8.0);
}
