//! Low-rank compression end to end: a compressed tiny model loads (factor pairs bound by role),
//! runs, and its logits approach the original's as the rank grows; calibration runs too.

use std::path::{Path, PathBuf};

use outcore_convert::calibrate::Calibrator;
use outcore_convert::lowrank::{compress, CompressOptions, RankSpec, SvdOptions};
use outcore_convert::Quiet;
use outcore_engine::model::{LoadOptions, Model};
use outcore_format::{GgmlType, GgufFile, LoadMode};

fn fixtures() -> PathBuf {
    if let Ok(p) = std::env::var("OUTCORE_FIXTURES") {
        return PathBuf::from(p);
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures")
}

fn tiny() -> PathBuf {
    fixtures().join("tiny-llama/tiny-llama.f32.gguf")
}

fn logits(path: &Path) -> Vec<f32> {
    let m = Model::load(
        path,
        &LoadOptions {
            n_threads: 2,
            ..Default::default()
        },
    )
    .unwrap();
    let mut st = m.new_state(16);
    m.forward_all(&mut st, &[1, 17, 300, 42, 7, 99, 250, 3])
        .unwrap()
}

fn rel(a: &[f32], b: &[f32]) -> f64 {
    let num: f64 = a.iter().zip(b).map(|(x, y)| ((x - y) as f64).powi(2)).sum();
    let den: f64 = b.iter().map(|y| (*y as f64).powi(2)).sum();
    (num / den).sqrt()
}

fn run(out: &Path, rank: usize, calib: Option<&Calibrator>) {
    let opts = CompressOptions {
        input: tiny(),
        output: out.to_path_buf(),
        force: true,
        svd: SvdOptions {
            rank: RankSpec::Rank(rank),
            iters: 4,
            ..Default::default()
        },
        pattern: None,
        ty: GgmlType::F32,
        parallel: None,
    };
    let r = compress(&opts, calib, &Quiet).unwrap();
    assert_eq!(r.tensors.len(), 3 * 7);
}

#[test]
fn compressed_tiny_model_runs_and_converges_with_rank() {
    let dir = tempfile::tempdir().unwrap();
    let base = logits(&tiny());
    let mut errs = Vec::new();
    // Random full-rank weights have flat spectra: errors only fall clearly near full rank. At 40
    // the 64x64 attention matrices are kept (no saving), at 64 every tensor is.
    for rank in [8, 40, 64] {
        let out = dir.path().join(format!("r{rank}.gguf"));
        run(&out, rank, None);
        let f = GgufFile::open(&out, LoadMode::Mmap).unwrap();
        assert_eq!(f.tensor("blk.0.ffn_up.weight.lr_a").is_some(), rank < 64);
        assert_eq!(f.tensor("blk.0.ffn_up.weight").is_none(), rank < 64);
        assert_eq!(
            f.metadata().get_str("outcore.lowrank.method").unwrap(),
            "plain"
        );
        let l = logits(&out);
        assert!(l.iter().all(|x| x.is_finite()));
        errs.push(rel(&l, &base));
    }
    assert!(errs[0] > errs[1] && errs[1] > errs[2], "{errs:?}");
    assert!(errs[2] < 1e-6, "{errs:?}");
}

#[test]
fn calibrated_compression_runs() {
    let dir = tempfile::tempdir().unwrap();
    let text: String = (0..200).map(|i| format!("{} ", i * 7 % 13)).collect();
    // The tiny model has no tokenizer: the text route says so; token ids work.
    assert!(Calibrator::new(&tiny(), &text, 256, 64).is_err());
    let toks: Vec<u32> = (0..512u32).map(|i| (i * 37 + 11) % 512).collect();
    let cal = Calibrator::from_tokens(&tiny(), toks, 64).unwrap();
    let base = logits(&tiny());
    let (p, c) = (dir.path().join("p.gguf"), dir.path().join("c.gguf"));
    run(&p, 12, None);
    run(&c, 12, Some(&cal));
    let f = GgufFile::open(&c, LoadMode::Mmap).unwrap();
    assert_eq!(
        f.metadata().get_str("outcore.lowrank.method").unwrap(),
        "calibrated"
    );
    let (ep, ec) = (rel(&logits(&p), &base), rel(&logits(&c), &base));
    eprintln!("rank 12 logits error: plain {ep:.4}, calibrated {ec:.4}");
    assert!(ec.is_finite());
}
