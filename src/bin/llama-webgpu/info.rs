//! `info`: what a model file is, and what loading it would take on this device.

use crate::args::{Backend, DeviceArgs};
use llama_webgpu::gguf::GgufFile;
use llama_webgpu::gpu::{format_bytes, GpuContext};
use llama_webgpu::model::memory::{uploaded_bytes, MemoryPlan};
use llama_webgpu::model::ModelConfig;
use llama_webgpu::Result;
use serde_json::json;
use std::path::PathBuf;
use std::sync::Arc;

/// Adapter, features and limits as JSON, or why there is no GPU.
pub(crate) fn gpu_json(device: &DeviceArgs) -> serde_json::Value {
    if device.backend == Backend::Cpu {
        return json!(null);
    }
    gpu_json_of(&device.gpu())
}

pub(crate) fn gpu_json_of(gpu: &Result<Arc<GpuContext>>) -> serde_json::Value {
    match gpu {
        Ok(ctx) => json!({
            "adapter": ctx.adapter_info.name,
            "backend": format!("{:?}", ctx.adapter_info.backend),
            "driver": ctx.adapter_info.driver_info,
            "f16": ctx.features.f16,
            "subgroups": ctx.features.subgroups,
            "subgroup_size": [ctx.features.subgroup_min_size, ctx.features.subgroup_max_size],
            "int_dot_available": ctx.features.int_dot,
            // Whether decode steps run the packed-integer products (--int-dot, or the default).
            "int_dot": ctx.tuning.int_dot_for(&ctx.features),
            // Whether greedy decode steps are queued before the last token is read back.
            "chain_steps": ctx.chain_steps(),
            "max_buffer_size": ctx.limits.max_buffer_size,
            "max_storage_buffer_binding_size": ctx.limits.max_storage_buffer_binding_size,
            "max_compute_invocations_per_workgroup": ctx.limits.max_compute_invocations_per_workgroup,
            "tuning": {
                "matvec_threads": ctx.tuning.matvec_threads_per_row,
                "matvec_rows": ctx.tuning.matvec_rows_per_invocation,
                "naga_loop_bounding": ctx.tuning.naga_loop_bounding,
                "prefill_kernel": ctx.tuning.matvec_prefill.map(|m| if m { "matvec" } else { "tiled" }),
                "swiglu": ctx.tuning.fuse_swiglu.map(|f| if f { "fused" } else { "separate" }),
                "norm": ctx.tuning.fuse_norm.map(|f| if f { "fused" } else { "separate" }),
                "join": ctx.tuning.join_products.map(|f| if f { "fused" } else { "separate" }),
                "int_dot": ctx.tuning.int_dot.map(|f| if f { "on" } else { "off" }),
                "chain": ctx.tuning.chain_steps.map(|f| if f { "on" } else { "off" }),
            },
        }),
        Err(e) => json!({"error": e.to_string(), "code": e.code()}),
    }
}

pub(crate) fn info(path: &PathBuf, as_json: bool, device: &DeviceArgs) -> Result<()> {
    let model = GgufFile::open(path)?;
    let meta = model.metadata();
    let mut types: std::collections::BTreeMap<String, (usize, u64, u64)> = Default::default();
    let mut n_params = 0u64;
    for t in model.tensors() {
        let e = types
            .entry(t.info.ggml_type.name().to_string())
            .or_default();
        e.0 += 1;
        e.1 += t.info.n_elements();
        e.2 += t.info.size;
        n_params += t.info.n_elements();
    }
    let arch = meta
        .str_opt("general.architecture")?
        .unwrap_or("(none)")
        .to_string();
    let cfg =
        ModelConfig::from_gguf(meta, |n| model.tensor(n).map(|t| t.info)).ok();
    let shards: Vec<String> = model
        .shard_paths()
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    let gpu = (device.backend != Backend::Cpu).then(|| device.gpu());
    // What loading would take on this GPU at the default context (as the loader plans it).
    let memory = match (&cfg, &gpu) {
        (Some(c), Some(Ok(ctx))) => {
            let weights = uploaded_bytes(model.tensors().map(|t| t.info));
            let (limits, shape) = (ctx.memory_limits(), c.shape);
            // Without a requested context the plan picks one that fits, so this cannot fail.
            let context = MemoryPlan::resolve_context(&limits, &shape, None).unwrap_or(1);
            let p = MemoryPlan::new(&limits, &shape, weights, context);
            json!({
                "weights": p.weights, "kv_cache": p.kv_cache, "activations": p.activations, "total": p.total(),
                "context_size": p.context_size, "max_context_size": p.max_context_size,
            })
        }
        _ => json!(null),
    };
    let value = json!({
        "file": path.display().to_string(),
        "shards": shards,
        "file_size": model.file_size(),
        "gguf_version": model.header().version,
        "architecture": arch,
        "name": meta.str_opt("general.name")?.unwrap_or(""),
        "n_tensors": model.tensors().count(),
        "n_params": n_params,
        "tensor_types": types.iter().map(|(k, v)| (k.clone(), json!({"tensors": v.0, "elements": v.1, "bytes": v.2}))).collect::<serde_json::Map<_, _>>(),
        "hparams": cfg.as_ref().map(|c| json!({
            "n_vocab": c.shape.n_vocab, "n_embd": c.shape.n_embd, "n_layer": c.shape.n_layer, "n_head": c.shape.n_head,
            "n_head_kv": c.shape.n_head_kv, "head_dim": c.shape.head_dim, "n_ff": c.shape.n_ff, "context_length": c.shape.context_length,
            "rope_theta": c.rope_theta, "rms_eps": c.rms_eps, "tied_output": c.tied_output,
            "rope_scaling": format!("{:?}", c.rope_scaling),
        })),
        "gpu": gpu.as_ref().map_or(json!(null), gpu_json_of),
        "memory": memory,
        "tokenizer": meta.str_opt("tokenizer.ggml.model")?.map(|m| json!({
            "model": m,
            "pre": meta.str_opt("tokenizer.ggml.pre").ok().flatten(),
            "n_tokens": meta.get("tokenizer.ggml.tokens").and_then(|v| v.as_array()).map(|a| a.len()),
        })),
    });
    if as_json {
        println!("{value}");
        return Ok(());
    }
    println!(
        "file:         {} ({} shard{})",
        path.display(),
        shards.len(),
        if shards.len() == 1 { "" } else { "s" }
    );
    println!(
        "file size:    {} bytes ({:.1} MiB)",
        model.file_size(),
        model.file_size() as f64 / (1 << 20) as f64
    );
    println!(
        "architecture: {arch}   name: {}",
        value["name"].as_str().unwrap_or("")
    );
    println!("parameters:   {n_params} ({:.1} M)", n_params as f64 / 1e6);
    if let Some(c) = &cfg {
        println!(
            "sizes:        vocab {} · embd {} · layers {} · heads {}/{} (dim {}) · ffn {} · ctx {} · rope θ {} {:?}{}",
            c.shape.n_vocab, c.shape.n_embd, c.shape.n_layer, c.shape.n_head, c.shape.n_head_kv, c.shape.head_dim, c.shape.n_ff, c.shape.context_length, c.rope_theta, c.rope_scaling,
            if c.tied_output { " · tied output" } else { "" }
        );
    }
    match &value["gpu"] {
        serde_json::Value::Null => {}
        g if g.get("error").is_some() => println!("gpu:          unavailable: {}", g["error"].as_str().unwrap_or("")),
        g => println!(
            "gpu:          {} ({}) · f16 {} · subgroups {} · max binding {} MiB · max buffer {} MiB",
            g["adapter"].as_str().unwrap_or(""),
            g["backend"].as_str().unwrap_or(""),
            g["f16"],
            g["subgroups"],
            g["max_storage_buffer_binding_size"].as_u64().unwrap_or(0) >> 20,
            g["max_buffer_size"].as_u64().unwrap_or(0) >> 20
        ),
    }
    if !memory.is_null() {
        let b = |k: &str| format_bytes(memory[k].as_u64().unwrap_or(0));
        println!(
            "memory plan:  {} = weights {} + KV cache {} + activations {} at the default context of {} (this device's limits allow up to {})",
            b("total"), b("weights"), b("kv_cache"), b("activations"), memory["context_size"], memory["max_context_size"]
        );
    }
    println!("tensor types:");
    for (k, (n, elems, bytes)) in &types {
        println!(
            "  {k:<8} {n:>5} tensors {elems:>13} elements {:>10.1} MiB",
            *bytes as f64 / (1 << 20) as f64
        );
    }
    Ok(())
}
