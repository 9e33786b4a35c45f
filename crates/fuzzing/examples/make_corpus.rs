//! Writes the seed corpora of every fuzz target ([`isoswitch_fuzzing::corpus::seeds`])
//! to `fuzz/corpus/<target>/seed-NNNN`, replacing earlier `seed-*` files and keeping
//! what fuzzing added. `cargo run -p isoswitch-fuzzing --example make_corpus [DIR]`
//! (default: the repository's `fuzz/corpus`).

use std::path::PathBuf;

fn main() -> std::io::Result<()> {
    let root = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus"));
    for t in isoswitch_fuzzing::TARGETS {
        let dir = root.join(t.name);
        std::fs::create_dir_all(&dir)?;
        for p in isoswitch_fuzzing::inputs(&dir)? {
            if p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("seed-"))
            {
                std::fs::remove_file(p)?;
            }
        }
        let seeds = isoswitch_fuzzing::corpus::seeds(t.name);
        let mut reached = 0;
        for (i, s) in seeds.iter().enumerate() {
            std::fs::write(dir.join(format!("seed-{i:04}")), s)?;
            reached += usize::from((t.run)(s));
        }
        println!(
            "{:24} {:4} seeds, {:4} reach the main property",
            t.name,
            seeds.len(),
            reached
        );
    }
    Ok(())
}
