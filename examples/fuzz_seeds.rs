//! Writes the fuzz targets' seed inputs (`momentd::fuzzing::seeds`) under `fuzz/seeds/TARGET/`,
//! one file each, named by their content's hash so writing again changes nothing.
fn main() -> std::io::Result<()> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds");
    for (target, bytes) in momentd::fuzzing::seeds() {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir)?;
        let name = format!("{:016x}", xxhash_rust::xxh3::xxh3_64(&bytes));
        std::fs::write(dir.join(name), bytes)?;
    }
    Ok(())
}
