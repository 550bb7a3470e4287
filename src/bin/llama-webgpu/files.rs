//! Model files: `synth` (a synthetic Llama 3.x GGUF) and `split` (gguf-split shards).

use crate::args::SynthArgs;
use llama_webgpu::gguf::GgufFile;
use llama_webgpu::tools::synth::{self, QuantMix, Shape, SynthOptions};
use llama_webgpu::{Error, Result};
use std::path::PathBuf;

pub(crate) fn split(model: &PathBuf, prefix: &str, max: &str) -> Result<()> {
    let max = synth::parse_size(max)
        .ok_or_else(|| Error::InvalidArgument(format!("bad --split-max-size '{max}'")))?;
    let m = GgufFile::open(model)?;
    let shards = llama_webgpu::gguf::split_into_shards(
        m.header(),
        |n| m.tensor(n).expect("tensor listed in the header").data,
        prefix,
        max,
    );
    for (name, bytes) in &shards {
        std::fs::write(name, bytes).map_err(|e| Error::InvalidArgument(format!("writing {name}: {e}")))?;
        println!("{name}  {} bytes", bytes.len());
    }
    Ok(())
}

pub(crate) fn synth(a: SynthArgs) -> Result<()> {
    let shape = Shape::preset(&a.shape)
        .ok_or_else(|| Error::InvalidArgument(format!("unknown shape '{}'", a.shape)))?;
    let shape = match a.layers {
        None => shape,
        Some(n) => {
            let all = shape.n_layer;
            shape.with_layers(n).ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "--layers {n}: the {} shape has 1 to {all} layers",
                    a.shape
                ))
            })?
        }
    };
    let arch = llama_webgpu::model::Arch::from_name(&a.arch)
        .ok_or_else(|| Error::InvalidArgument(format!("unknown architecture '{}'", a.arch)))?;
    let shape = shape.for_arch(arch);
    let mix = QuantMix::parse(&a.ty)
        .ok_or_else(|| Error::InvalidArgument(format!("unknown type '{}'", a.ty)))?;
    // The shape's own vocabulary and chat template (its family's), unless given.
    let vocab = a.vocab.unwrap_or_else(|| synth::cache_model(shape.vocab_file));
    let template_path = a.chat_template.clone().or_else(|| {
        let p = vocab.with_file_name(shape.chat_template_file);
        p.exists().then_some(p)
    });
    let read_template = |p: &PathBuf| {
        std::fs::read_to_string(p)
            .map_err(|e| Error::InvalidArgument(format!("chat template {}: {e}", p.display())))
    };
    let chat_template = template_path.as_ref().map(read_template).transpose()?;
    if chat_template.is_none() {
        eprintln!("note: no chat template found; the file will have none");
    }
    let split_max_bytes = match &a.split_max_size {
        Some(s) => Some(synth::parse_size(s).ok_or_else(|| {
            Error::InvalidArgument(format!(
                "--split-max-size '{s}': expected bytes or a number with K, M or G"
            ))
        })?),
        None => None,
    };
    let opts = SynthOptions {
        seed: a.seed,
        context_length: a.context,
        chat_template,
        split_max_bytes,
        ..SynthOptions::new(shape, mix, vocab)
    };
    let t0 = web_time::Instant::now();
    let mb = |b: u64| b as f64 / 1e6;
    let report = synth::write_with(&opts, &a.output, |path, bytes| {
        println!("wrote {} ({:.1} MB)", path.display(), mb(bytes));
    })?;
    println!(
        "{} {}: {} tensors, {} parameters ({:.2} B), {} file{}, {} bytes ({:.2} GiB) in {:.1} s",
        opts.shape.name,
        mix.label(),
        report.n_tensors,
        report.n_params,
        report.n_params as f64 / 1e9,
        report.files.len(),
        if report.files.len() == 1 { "" } else { "s" },
        report.total_bytes(),
        report.total_bytes() as f64 / (1u64 << 30) as f64,
        t0.elapsed().as_secs_f64()
    );
    for (ty, (n, elems, bytes)) in &report.types {
        println!(
            "  {:<5} {n:>4} tensors {elems:>13} elements {:>10.1} MB",
            ty.name(),
            mb(*bytes)
        );
    }
    Ok(())
}
