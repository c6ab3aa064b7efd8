//! The CIB on disk: a versioned JSON envelope with a checksum, or Pacemaker XML.
//!
//! ```text
//! {"format":"tandem-cib","format_version":1,"crc32":"8d1f0c2a","base_version":{..}|null,"cib":{..}}
//! ```
//! `crc32` covers the canonical (compact) JSON of `cib`; `load` recomputes it so a torn or
//! corrupted file is refused instead of silently scheduled. An operator who edits the file by
//! hand removes the `crc32` field (it is optional on load) and the next save writes it again.
//! `base_version` is the cluster's version when `clusterctl cluster cib FILE` fetched it:
//! `cluster cib-push FILE` sends it as the expected version, so a push over a cluster that
//! changed meanwhile is refused (see [`crate::control::accept_push`]).
//!
//! Files starting with `<` are Pacemaker CIB XML (what `pcs cluster cib` writes); they load
//! through [`crate::xml`], and a file loaded as XML is saved back as XML.

use super::{Cib, CibVersion};
use serde::{Deserialize, Serialize};

pub const CIB_FILE_FORMAT: &str = "tandem-cib";
pub const CIB_FILE_FORMAT_VERSION: u32 = 1;

/// Which format a file was read in, so that `-f FILE` edits keep it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CibFormat {
    Native,
    PacemakerXml,
}

#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("not a tandem CIB file: {0}")]
    Syntax(String),
    #[error("format '{0}' is not a tandem CIB (expected '{CIB_FILE_FORMAT}')")]
    WrongFormat(String),
    #[error(
        "format version {0} is newer than this clusterctl understands ({CIB_FILE_FORMAT_VERSION})"
    )]
    TooNew(u32),
    #[error(
        "checksum mismatch (file says {stored}, content has {actual}): the file is damaged; if you edited it by hand, delete the \"crc32\" field"
    )]
    Checksum { stored: String, actual: String },
    #[error("Pacemaker XML: {0}")]
    Xml(#[from] crate::xml::XmlError),
    #[error(transparent)]
    Invalid(#[from] super::ValidationError),
}

/// A CIB as stored in a file, with the version it was fetched at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CibFile {
    pub cib: Cib,
    pub base_version: Option<CibVersion>,
    pub format: CibFormat,
}

#[derive(Serialize, Deserialize)]
struct Envelope {
    format: String,
    format_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    crc32: Option<String>,
    #[serde(default)]
    base_version: Option<CibVersion>,
    cib: serde_json::Value,
}

fn checksum(cib: &Cib) -> String {
    let canonical = serde_json::to_vec(cib).expect("a CIB always serialises");
    format!("{:08x}", crc32fast::hash(&canonical))
}

impl CibFile {
    pub fn new(cib: Cib) -> CibFile {
        CibFile {
            cib,
            base_version: None,
            format: CibFormat::Native,
        }
    }

    /// Parses file content (native JSON or Pacemaker XML) and validates the CIB.
    pub fn from_bytes(bytes: &[u8]) -> Result<CibFile, FileError> {
        let text =
            std::str::from_utf8(bytes).map_err(|e| FileError::Syntax(format!("not UTF-8: {e}")))?;
        let trimmed = text.trim_start();
        if trimmed.starts_with('<') {
            let imported = crate::xml::import(trimmed)?;
            imported.cib.validate()?;
            return Ok(CibFile {
                cib: imported.cib,
                base_version: None,
                format: CibFormat::PacemakerXml,
            });
        }
        let env: Envelope =
            serde_json::from_str(text).map_err(|e| FileError::Syntax(e.to_string()))?;
        if env.format != CIB_FILE_FORMAT {
            return Err(FileError::WrongFormat(env.format));
        }
        if env.format_version > CIB_FILE_FORMAT_VERSION {
            return Err(FileError::TooNew(env.format_version));
        }
        let cib: Cib =
            serde_json::from_value(env.cib).map_err(|e| FileError::Syntax(format!("cib: {e}")))?;
        if let Some(stored) = env.crc32 {
            let actual = checksum(&cib);
            if !stored.eq_ignore_ascii_case(&actual) {
                return Err(FileError::Checksum { stored, actual });
            }
        }
        cib.validate()?;
        Ok(CibFile {
            cib,
            base_version: env.base_version,
            format: CibFormat::Native,
        })
    }

    /// Serialises in the file's format (pretty JSON with checksum, or Pacemaker XML).
    pub fn to_bytes(&self) -> Vec<u8> {
        match self.format {
            CibFormat::PacemakerXml => crate::xml::export(&self.cib, None).into_bytes(),
            CibFormat::Native => {
                let env = Envelope {
                    format: CIB_FILE_FORMAT.into(),
                    format_version: CIB_FILE_FORMAT_VERSION,
                    crc32: Some(checksum(&self.cib)),
                    base_version: self.base_version,
                    cib: serde_json::to_value(&self.cib).expect("a CIB always serialises"),
                };
                let mut out = serde_json::to_vec_pretty(&env).expect("envelope serialises");
                out.push(b'\n');
                out
            }
        }
    }
}

impl Cib {
    /// Native file bytes of this CIB (what the daemon persists under its state dir).
    pub fn to_file_bytes(&self) -> Vec<u8> {
        CibFile::new(self.clone()).to_bytes()
    }
    /// Loads native or Pacemaker XML bytes, checking the checksum and validating.
    pub fn from_file_bytes(bytes: &[u8]) -> Result<Cib, FileError> {
        CibFile::from_bytes(bytes).map(|f| f.cib)
    }
}
