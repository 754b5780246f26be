//! Rendering the CustomResourceDefinitions as YAML, for `vtmove crds` and the committed `crds/`
//! directory.

use std::path::{Path, PathBuf};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

use super::keyspace::Keyspace;
use super::movetables::MoveTablesWorkflow;
use super::schema::reflow_descriptions;

/// First line of every rendered CRD file, so nobody edits one by hand.
pub const HEADER: &str =
    "# Generated from vtmove's Rust types by `vtmove crds --output-dir crds`. Do not edit.\n";

/// Failure to render or write the CRDs.
#[derive(Debug, thiserror::Error)]
pub enum CrdError {
    /// A CRD could not be serialized as YAML.
    #[error("failed to render CRD {name} as YAML")]
    Render {
        /// The CRD's name.
        name: String,
        /// The serializer's error.
        #[source]
        source: serde_saphyr::SerializeError,
    },
    /// A CRD file could not be written.
    #[error("failed to write {}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// One rendered CRD.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CrdFile {
    /// File name under `crds/`: `<plural>.<group>.yaml`.
    pub file_name: String,
    /// The file's content: [`HEADER`] then the YAML document.
    pub yaml: String,
}

/// vtmove's CRDs: kube's [`CustomResourceExt::crd`] for each resource, with the descriptions
/// reflowed into paragraphs (see [`reflow_descriptions`]). This is what `crds/` holds.
pub fn crds() -> Vec<CustomResourceDefinition> {
    let mut crds = vec![MoveTablesWorkflow::crd(), Keyspace::crd()];
    for crd in &mut crds {
        reflow_descriptions(crd);
    }
    crds
}

fn render(crd: &CustomResourceDefinition) -> Result<String, CrdError> {
    serde_saphyr::to_string(crd).map_err(|source| CrdError::Render {
        name: crd.metadata.name.clone().unwrap_or_default(),
        source,
    })
}

/// Each CRD as the file `vtmove crds --output-dir` writes for it.
pub fn crd_files() -> Result<Vec<CrdFile>, CrdError> {
    crds()
        .iter()
        .map(|crd| {
            let name = crd.metadata.name.clone().unwrap_or_default();
            Ok(CrdFile {
                file_name: format!("{name}.yaml"),
                yaml: format!("{HEADER}{}", render(crd)?),
            })
        })
        .collect()
}

/// All CRDs as one multi-document YAML stream, as `vtmove crds` prints it.
pub fn crd_yaml() -> Result<String, CrdError> {
    let mut out = String::from(HEADER);
    for (i, crd) in crds().iter().enumerate() {
        if i > 0 {
            out.push_str("---\n");
        }
        out.push_str(&render(crd)?);
    }
    Ok(out)
}

/// Writes one file per CRD into `dir` (created if missing) and returns the paths written.
pub fn write_crds(dir: &Path) -> Result<Vec<PathBuf>, CrdError> {
    std::fs::create_dir_all(dir).map_err(|source| CrdError::Write {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut written = Vec::new();
    for file in crd_files()? {
        let path = dir.join(&file.file_name);
        std::fs::write(&path, &file.yaml).map_err(|source| CrdError::Write {
            path: path.clone(),
            source,
        })?;
        written.push(path);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_follow_the_crd_names() {
        let names: Vec<_> = crd_files()
            .unwrap()
            .into_iter()
            .map(|f| f.file_name)
            .collect();
        assert_eq!(
            names,
            [
                "movetablesworkflows.vtmove.dev.yaml",
                "keyspaces.vtmove.dev.yaml"
            ]
        );
    }

    #[test]
    fn stream_holds_both_documents() {
        let yaml = crd_yaml().unwrap();
        assert!(yaml.starts_with(HEADER));
        assert_eq!(yaml.matches("\n---\n").count(), 1);
        let docs: Vec<CustomResourceDefinition> = serde_saphyr::from_multiple(&yaml).unwrap();
        assert_eq!(docs, crds());
    }

    #[test]
    fn writes_files() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("nested");
        let written = write_crds(&out).unwrap();
        assert_eq!(written.len(), 2);
        for (path, file) in written.iter().zip(crd_files().unwrap()) {
            assert_eq!(std::fs::read_to_string(path).unwrap(), file.yaml);
        }
    }
}
