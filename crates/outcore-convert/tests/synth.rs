//! Synthetic models: the GGUF of a seed equals the GGUF converted from the safetensors of the
//! same seed; the donor's tokenizer survives both routes; k-quant mixes are applied and decode
//! close to the f32 weights.

use std::path::PathBuf;

use outcore_convert::codec::decode_row;
use outcore_convert::hf::Arch;
use outcore_convert::synth::{synth, SynthFormat, SynthOptions};
use outcore_convert::{convert_hf, ConvertOptions, FileType, ModeChoice, Quiet};
use outcore_format::{GgmlType, GgufFile, LoadMode};

fn demo_model() -> PathBuf {
    let p = std::env::var("OUTCORE_DEMO_MODEL")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(std::env::var("HOME").unwrap_or_default())
                .join(".cache/outcore/SmolLM2-135M-Instruct.Q4_1.gguf")
        });
    assert!(
        p.exists(),
        "demo model {} not found: run scripts/fetch-demo-model.sh",
        p.display()
    );
    p
}

fn opts(arch: Arch, ftype: FileType, format: SynthFormat, output: PathBuf) -> SynthOptions {
    SynthOptions {
        arch,
        params: "tiny".into(),
        ftype,
        output,
        format,
        shard_size: 1_000_000,
        seed: 42,
        donor: demo_model(),
        force: false,
        mode: ModeChoice::LowMemory,
        threads: 2,
    }
}

#[test]
fn gguf_equals_converted_safetensors() {
    let dir = tempfile::tempdir().unwrap();
    for arch in [Arch::Llama, Arch::Qwen2] {
        let hf = dir.path().join(format!("{arch:?}-hf"));
        synth(
            &opts(arch, FileType::F32, SynthFormat::Safetensors, hf.clone()),
            &Quiet,
        )
        .unwrap();
        assert!(
            hf.join("model.safetensors.index.json").exists(),
            "sharded at 1 MB"
        );
        let direct = dir.path().join(format!("{arch:?}.gguf"));
        synth(
            &opts(arch, FileType::F32, SynthFormat::Gguf, direct.clone()),
            &Quiet,
        )
        .unwrap();
        let conv = dir.path().join(format!("{arch:?}.conv.gguf"));
        let co = ConvertOptions {
            input: hf.clone(),
            output: conv.clone(),
            ftype: FileType::F32,
            force: false,
            mode: ModeChoice::Auto,
            threads: 2,
            pure: false,
            name: None,
            no_tokenizer: false,
            tokenizer_pre: None,
        };
        convert_hf(&co, &Quiet).unwrap();
        let (a, b) = (
            GgufFile::open(&direct, LoadMode::Read).unwrap(),
            GgufFile::open(&conv, LoadMode::Read).unwrap(),
        );
        let names_a: Vec<_> = a
            .tensors()
            .map(|t| (t.name.to_string(), t.ty, t.shape.to_vec()))
            .collect();
        let names_b: Vec<_> = b
            .tensors()
            .map(|t| (t.name.to_string(), t.ty, t.shape.to_vec()))
            .collect();
        assert_eq!(names_a, names_b, "{arch:?}");
        for t in a.tensors() {
            assert!(
                b.tensor(t.name).unwrap().bytes == t.bytes,
                "{arch:?} {}",
                t.name
            );
        }
        let demo = GgufFile::open(demo_model(), LoadMode::Mmap).unwrap();
        for (k, v) in demo
            .metadata
            .iter()
            .filter(|(k, _)| k.starts_with("tokenizer."))
            // Only llama models carry add_space_prefix (as llama.cpp's converter writes it).
            .filter(|(k, _)| arch == Arch::Llama || *k != "tokenizer.ggml.add_space_prefix")
        {
            assert_eq!(a.metadata.get(k), Some(v), "synth gguf {k}");
            assert_eq!(b.metadata.get(k), Some(v), "converted {k}");
        }
        let arch_name = a
            .metadata
            .get_str("general.architecture")
            .unwrap()
            .to_string();
        assert_eq!(
            a.metadata
                .get_u32(&format!("{arch_name}.embedding_length"))
                .unwrap(),
            256
        );
        // Refuses to overwrite without --force.
        assert!(synth(
            &opts(arch, FileType::F32, SynthFormat::Gguf, direct.clone()),
            &Quiet
        )
        .is_err());
        assert!(synth(
            &opts(arch, FileType::F32, SynthFormat::Safetensors, hf),
            &Quiet
        )
        .is_err());
    }
}

#[test]
fn k_quant_mix_decodes_close_to_f32() {
    let dir = tempfile::tempdir().unwrap();
    let f32p = dir.path().join("f32.gguf");
    synth(
        &opts(Arch::Llama, FileType::F32, SynthFormat::Gguf, f32p.clone()),
        &Quiet,
    )
    .unwrap();
    for (ft, tol) in [
        (FileType::Q4_K_M, 0.15),
        (FileType::Q5_K_M, 0.08),
        (FileType::Q6_K, 0.04),
    ] {
        let qp = dir.path().join(format!("{}.gguf", ft.name()));
        synth(
            &opts(Arch::Llama, ft, SynthFormat::Gguf, qp.clone()),
            &Quiet,
        )
        .unwrap();
        let (f, q) = (
            GgufFile::open(&f32p, LoadMode::Read).unwrap(),
            GgufFile::open(&qp, LoadMode::Read).unwrap(),
        );
        if ft == FileType::Q4_K_M {
            assert_eq!(q.tensor("blk.0.attn_q.weight").unwrap().ty, GgmlType::Q4_K);
            assert_eq!(q.tensor("blk.0.attn_v.weight").unwrap().ty, GgmlType::Q4_K);
            assert_eq!(q.tensor("blk.1.attn_v.weight").unwrap().ty, GgmlType::Q6_K);
            assert_eq!(
                q.tensor("blk.1.ffn_down.weight").unwrap().ty,
                GgmlType::Q6_K
            );
            assert_eq!(q.tensor("output.weight").unwrap().ty, GgmlType::Q6_K);
            assert_eq!(q.tensor("token_embd.weight").unwrap().ty, GgmlType::Q4_K);
        }
        // The 49152-row embedding and output are left out of the error check to keep the test fast.
        for t in f
            .tensors()
            .filter(|t| t.shape.len() == 2 && t.name.starts_with("blk."))
        {
            let u = q.tensor(t.name).unwrap();
            let n = t.row_len();
            let (mut a, mut b) = (vec![0f32; n], vec![0f32; n]);
            let (mut err, mut norm) = (0f64, 0f64);
            for r in 0..t.n_rows() {
                decode_row(t.ty, t.row(r), &mut a, t.name).unwrap();
                decode_row(u.ty, u.row(r), &mut b, t.name).unwrap();
                for (x, y) in a.iter().zip(&b) {
                    err += ((x - y) as f64).powi(2);
                    norm += (*x as f64).powi(2);
                }
            }
            let rel = (err / norm).sqrt();
            assert!(
                rel < tol,
                "{} {} ({}): relative rms error {rel}",
                ft.name(),
                t.name,
                u.ty
            );
        }
    }
}
