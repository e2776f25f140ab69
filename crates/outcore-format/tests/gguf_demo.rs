//! The demo model parsed by our reader, compared with gguf-py.
mod common;

use outcore_format::{GgmlType, GgufFile, LoadMode};

#[test]
fn demo_model_counts_and_views() {
    let path = common::demo_model();
    let f = GgufFile::open(&path, LoadMode::Mmap).unwrap();
    assert_eq!(f.version, 3);
    assert_eq!(f.metadata.len(), 33);
    assert_eq!(f.tensor_infos().len(), 272);
    assert_eq!(f.alignment(), 32);
    assert_eq!(f.data_offset(), 1_785_664);
    let t = f.tensor("token_embd.weight").unwrap();
    assert_eq!(t.ty, GgmlType::Q8_0);
    assert_eq!(t.shape, &[576, 49152]);
    assert_eq!(t.bytes.len(), 30_081_024);
    assert_eq!(f.metadata.get_str("general.architecture").unwrap(), "llama");
    assert_eq!(
        f.metadata
            .get_str_array("tokenizer.ggml.tokens")
            .unwrap()
            .len(),
        49152
    );
}
