//! The filesystem [`Source`] of `.res` files: reads files and expands `include` globs
//! relative to the including file, naming files canonically so each is read once.

use replicator_core::config::Source;
use replicator_core::config::syntax::join_relative;

/// Reads configuration files from the filesystem.
#[derive(Debug, Clone, Copy, Default)]
pub struct FsSource;

impl Source for FsSource {
    fn expand(&self, pattern: &str, from: &str) -> Result<Vec<String>, String> {
        let full = join_relative(pattern, from);
        let mut out = Vec::new();
        for entry in glob::glob(&full).map_err(|e| format!("bad pattern: {e}"))? {
            let path = entry.map_err(|e| e.to_string())?;
            if path.is_dir() {
                continue;
            }
            let canon = std::fs::canonicalize(&path).unwrap_or(path);
            out.push(canon.to_string_lossy().into_owned());
        }
        out.sort();
        Ok(out)
    }

    fn read(&self, path: &str) -> Result<String, String> {
        let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
        String::from_utf8(bytes).map_err(|e| {
            format!(
                "not UTF-8 text (invalid byte at offset {})",
                e.utf8_error().valid_up_to()
            )
        })
    }
}

/// Loads the configuration at `path`.
pub fn load(
    path: &str,
) -> Result<replicator_core::config::Loaded, replicator_core::config::ConfigError> {
    replicator_core::config::load(path, &FsSource)
}
