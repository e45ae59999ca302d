//! `leitwerk-inference-server`: serves ONNX models over the Open Inference Protocol v2.

use std::{process::ExitCode, time::Duration};

use clap::Parser;
use leitwerk_crds::command::ServerArgs;
use leitwerk_inference_server::generator::Generator;
use leitwerk_inference_server::retrieval::Retrieval;
use leitwerk_inference_server::{Batching, Server, load_models, load_onnxruntime, serve};

/// Exit status of a configuration error (no usable ONNX Runtime library, a model that does
/// not load, an address in use).
const CONFIG_ERROR: u8 = 1;

/// The environment variable with the token feedback callers must send (`Authorization:
/// Bearer <token>`); the operator sets it from the feedback Secret of the Model or
/// Experiment. Never a flag, which `ps` would show.
const FEEDBACK_TOKEN_ENV: &str = "LEITWERK_FEEDBACK_TOKEN";

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}

#[tokio::main]
async fn main() -> ExitCode {
    // The command line is a contract with the operator, one type in `leitwerk_crds::command`.
    let args = ServerArgs::parse();
    // ONNX Runtime: required to serve models; for embeddings, used when it loads (candle
    // embeds otherwise).
    let environment = if args.models.is_empty() && args.onnxruntime.is_none() {
        None
    } else {
        match load_onnxruntime(args.onnxruntime.as_deref()) {
            Ok(env) => {
                eprintln!(
                    "leitwerk-inference-server: loaded ONNX Runtime ({})",
                    ort::info()
                );
                Some(env)
            }
            Err(problem) if args.models.is_empty() => {
                eprintln!("leitwerk-inference-server: embedding on candle: {problem}");
                None
            }
            Err(problem) => {
                eprintln!("leitwerk-inference-server: {problem}");
                return ExitCode::from(CONFIG_ERROR);
            }
        }
    };
    let models = match &environment {
        None => Vec::new(),
        Some(_) if args.models.is_empty() => Vec::new(),
        Some(environment) => match load_models(environment, &args.models).await {
            Ok(m) => m,
            Err(problem) => {
                eprintln!("leitwerk-inference-server: {problem}");
                return ExitCode::from(CONFIG_ERROR);
            }
        },
    };
    let retrieval = match &args.embedding_model_dir {
        Some(dir) => {
            match Retrieval::load(
                dir,
                &args.indexes,
                args.search_mode,
                environment.as_ref(),
                args.embedding_gpu,
            )
            .await
            {
                Ok(r) => Some(r),
                Err(problem) => {
                    eprintln!("leitwerk-inference-server: {problem}");
                    return ExitCode::from(CONFIG_ERROR);
                }
            }
        }
        None => None,
    };
    let generator = match &args.generator_model {
        Some(path) => {
            let path = path.clone();
            match tokio::task::spawn_blocking(move || Generator::load(&path)).await {
                Ok(Ok(g)) => Some(g),
                Ok(Err(problem)) => {
                    eprintln!("leitwerk-inference-server: --generator-model: {problem}");
                    return ExitCode::from(CONFIG_ERROR);
                }
                Err(problem) => {
                    eprintln!("leitwerk-inference-server: --generator-model: {problem}");
                    return ExitCode::from(CONFIG_ERROR);
                }
            }
        }
        None => None,
    };
    let batching = (args.max_batch_size > 1).then(|| Batching {
        max_batch_size: args.max_batch_size,
        max_delay: Duration::from_millis(args.max_batch_delay_ms),
    });
    let mut names: Vec<String> = models
        .iter()
        .map(|m| format!("{} {}", m.name, m.version))
        .collect();
    if let Some(r) = &retrieval {
        let on = if r.on_gpu() { "GPU" } else { "CPU" };
        names.push(format!("embeddings ({}, {on})", r.engine()));
        if args.embedding_gpu
            && let Some(why) = r.gpu_fallback()
        {
            eprintln!("leitwerk-inference-server: --embedding-gpu: embedding on the CPU: {why}");
        }
        names.extend(
            r.served()
                .into_iter()
                .map(|(n, v, chunks)| format!("index {n} {v} ({chunks} chunks)")),
        );
    }
    let server = Server::with_labels(
        models,
        batching,
        args.feedback_capacity,
        &args
            .metric_labels
            .iter()
            .map(|l| (l.0.clone(), l.1.clone()))
            .collect::<Vec<_>>(),
    );
    match std::env::var(FEEDBACK_TOKEN_ENV) {
        Ok(token) if !token.is_empty() => {
            let _ = server.feedback_token.set(token);
        }
        _ => eprintln!(
            "leitwerk-inference-server: {FEEDBACK_TOKEN_ENV} is not set: anyone holding a prediction id may report its outcome"
        ),
    }
    if let Some(r) = retrieval {
        server.set_retrieval(r);
    }
    if let Some(url) = &args.shadow {
        match leitwerk_inference_server::shadow::Shadow::new(url, args.shadow_threshold) {
            Ok(shadow) => {
                let shadow = shadow.with_model(args.shadow_model.clone());
                names.push(format!("shadow mode (mirroring to {url})"));
                let _ = server.shadow.set(std::sync::Arc::new(shadow));
            }
            Err(problem) => {
                eprintln!("leitwerk-inference-server: {problem}");
                return ExitCode::from(CONFIG_ERROR);
            }
        }
    }
    if let Some(g) = generator {
        names.push(format!("generator {}", g.name));
        let _ = server.generator.set(std::sync::Arc::new(g));
    }
    let state = server.clone();
    let drain = Duration::from_secs(args.drain_seconds);
    let shutdown = async move {
        shutdown_signal().await;
        state
            .ready
            .store(false, std::sync::atomic::Ordering::Relaxed);
        eprintln!(
            "leitwerk-inference-server: shutting down: readiness fails now; serving {}s more while endpoints drop this pod, then finishing in-flight requests",
            drain.as_secs()
        );
        tokio::time::sleep(drain).await;
    };
    let result = serve(server, args.http_addr, args.grpc_addr, shutdown, |http, grpc| {
        eprintln!("leitwerk-inference-server: serving {} on http://{http} (REST, /metrics) and {grpc} (gRPC)", names.join(", "));
    })
    .await;
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(problem) => {
            eprintln!("leitwerk-inference-server: {problem}");
            ExitCode::from(CONFIG_ERROR)
        }
    }
}
