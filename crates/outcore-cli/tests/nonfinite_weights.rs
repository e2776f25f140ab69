//! NaN and Inf in quantized weights. Decision: loading succeeds (outcore does not scan tensor data
//! at load time; that would read every page of a model meant to be streamed), and a forward pass
//! never panics: `outcore run` on such a file exits 0 (the logits are NaN, the output is
//! meaningless) or 1 with an error, never 101 or a signal.

mod common;

use outcore_format::{GgmlType, GgufFile, LoadMode};

/// Quantizes the tiny fixture to Q8_0 and writes `scale` into the f16 `d` of every `stride`-th
/// block of every Q8_0 tensor.
fn poisoned(dir: &std::path::Path, scale: half_bits::F16, stride: usize) -> std::path::PathBuf {
    let q = dir.join("q8.gguf");
    if !q.exists() {
        let o = common::outcore()
            .arg("quantize")
            .arg(common::tiny_gguf())
            .arg(&q)
            .args(["--type", "q8_0", "--pure"])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let mut bytes = std::fs::read(&q).unwrap();
    let ranges: Vec<_> = {
        let f = GgufFile::open(&q, LoadMode::Read).unwrap();
        f.tensor_infos()
            .iter()
            .filter(|t| t.ty == GgmlType::Q8_0)
            .map(|t| f.tensor_range(&t.name).unwrap())
            .collect()
    };
    assert!(!ranges.is_empty(), "no Q8_0 tensors to poison");
    for r in ranges {
        for block in r.step_by(34 * stride) {
            bytes[block..block + 2].copy_from_slice(&scale.0.to_le_bytes());
        }
    }
    let p = dir.join(format!("poison-{:04x}-{stride}.gguf", scale.0));
    std::fs::write(&p, bytes).unwrap();
    p
}

/// f16 bit patterns (no `half` dependency needed for three constants).
mod half_bits {
    #[derive(Clone, Copy)]
    pub struct F16(pub u16);
    pub const NAN: F16 = F16(0x7e00);
    pub const INF: F16 = F16(0x7c00);
    pub const NEG_INF: F16 = F16(0xfc00);
}

#[test]
fn nan_and_inf_scales_never_panic() {
    let dir = tempfile::tempdir().unwrap();
    for scale in [half_bits::NAN, half_bits::INF, half_bits::NEG_INF] {
        for stride in [1, 7] {
            let p = poisoned(dir.path(), scale, stride);
            let i = common::outcore().arg("inspect").arg(&p).output().unwrap();
            assert!(
                i.status.success(),
                "inspect rejected a file with odd scales"
            );
            for temp in ["0", "0.8"] {
                let o = common::outcore()
                    .arg("run")
                    .arg("-m")
                    .arg(&p)
                    .args([
                        "--ids",
                        "1,5,9,13",
                        "-n",
                        "6",
                        "--ignore-eos",
                        "--temp",
                        temp,
                    ])
                    .output()
                    .unwrap();
                common::assert_no_panic(&o, &format!("run {} temp {temp}", p.display()));
                assert!(
                    matches!(o.status.code(), Some(0) | Some(1)),
                    "{}: {:?}",
                    p.display(),
                    o.status
                );
            }
        }
    }
}
