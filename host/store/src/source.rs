//! The manifest source: Kubernetes objects read from files.
//!
//! A file holds YAML (one or several `---`-separated documents) or JSON (one
//! value, or several values one after another). A document of kind `List`
//! (or any kind ending in `List`) with an `items` list stands for its items.
//! Empty documents are skipped. Every object remembers its [`Origin`].

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

/// Where an object was read from.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Origin {
    /// The file.
    pub path: PathBuf,
    /// The document's index in the file, from 0 (empty documents count).
    pub document: usize,
    /// The index inside a `List` document (the innermost one if nested).
    pub item: Option<usize>,
}

impl fmt::Display for Origin {
    /// `path, document N` or `path, document N, item M`, counting from 1.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}, document {}", self.path.display(), self.document + 1)?;
        if let Some(item) = self.item {
            write!(f, ", item {}", item + 1)?;
        }
        Ok(())
    }
}

/// One object read from a manifest, with its origin.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    /// Where it was read from.
    pub origin: Origin,
    /// The object, as written (not yet defaulted).
    pub object: Value,
}

/// An error together with the origin of the object it concerns; displays as
/// `origin: error`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{origin}: {error}")]
pub struct Located<E: std::error::Error> {
    /// Where the object came from.
    pub origin: Origin,
    /// What went wrong with it.
    pub error: E,
}

/// A manifest that could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// A file or directory could not be read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A document is not valid YAML or JSON.
    #[error("{}, document {}: {message}", path.display(), document + 1)]
    Syntax {
        /// The file.
        path: PathBuf,
        /// The document's index in the file, from 0.
        document: usize,
        /// The parser's message (with line and column where known).
        message: String,
    },
    /// A document (or List item) is not an object.
    #[error("{origin}: expected a Kubernetes object (a map), found {found}")]
    NotAnObject {
        /// Where it was found.
        origin: Origin,
        /// The JSON type found.
        found: &'static str,
    },
    /// A List whose `items` is not a list.
    #[error("{origin}: `items` of a {kind} must be a list")]
    BadList {
        /// Where it was found.
        origin: Origin,
        /// The List's kind.
        kind: String,
    },
}

/// The file name endings read from directories.
pub const EXTENSIONS: [&str; 3] = ["yaml", "yml", "json"];

/// Reads every object of a file, or of every `*.yaml`, `*.yml` and `*.json`
/// file under a directory (recursively, in path order). Names starting with
/// `.` are skipped in directories (editor files, and the `..data` links of
/// mounted ConfigMaps, which would otherwise duplicate every file).
pub fn load_path(path: &Path) -> Result<Vec<Document>, SourceError> {
    let meta = std::fs::metadata(path).map_err(|source| io(path, source))?;
    if !meta.is_dir() {
        return load_file(path);
    }
    let mut files = Vec::new();
    collect_files(path, &mut files)?;
    files.sort();
    let mut documents = Vec::new();
    for file in files {
        documents.extend(load_file(&file)?);
    }
    Ok(documents)
}

fn io(path: &Path, source: std::io::Error) -> SourceError {
    SourceError::Io { path: path.to_path_buf(), source }
}

fn collect_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), SourceError> {
    let entries = std::fs::read_dir(dir).map_err(|source| io(dir, source))?;
    for entry in entries {
        let entry = entry.map_err(|source| io(dir, source))?;
        let path = entry.path();
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        // Follows symlinks, as a mounted ConfigMap's files are links.
        let meta = std::fs::metadata(&path).map_err(|source| io(&path, source))?;
        if meta.is_dir() {
            collect_files(&path, out)?;
        } else if has_manifest_extension(&path) {
            out.push(path);
        }
    }
    Ok(())
}

/// True for a file name the directory source reads (`.yaml`, `.yml`, `.json`;
/// names starting with `.` are not read).
pub fn is_manifest_file(path: &Path) -> bool {
    let hidden = path.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.'));
    !hidden && has_manifest_extension(path)
}

fn has_manifest_extension(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| EXTENSIONS.iter().any(|known| e.eq_ignore_ascii_case(known)))
}

/// Reads every object of one file (JSON if it ends in `.json`, else YAML).
pub fn load_file(path: &Path) -> Result<Vec<Document>, SourceError> {
    let text = std::fs::read_to_string(path).map_err(|source| io(path, source))?;
    let documents = parse_str(&text, path)?;
    tracing::debug!(path = %path.display(), objects = documents.len(), "manifest read");
    Ok(documents)
}

/// Parses manifest text; `path` names it in origins and chooses the syntax
/// (JSON if it ends in `.json`, else YAML, which also reads JSON).
pub fn parse_str(text: &str, path: &Path) -> Result<Vec<Document>, SourceError> {
    let is_json = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("json"));
    let values = if is_json { json_documents(text, path)? } else { yaml_documents(text, path)? };
    let mut out = Vec::new();
    for (document, value) in values.into_iter().enumerate() {
        let origin = Origin { path: path.to_path_buf(), document, item: None };
        expand(value, origin, &mut out)?;
    }
    Ok(out)
}

fn yaml_documents(text: &str, path: &Path) -> Result<Vec<Value>, SourceError> {
    let mut values = Vec::new();
    for (document, de) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let value = Value::deserialize(de).map_err(|e| SourceError::Syntax {
            path: path.to_path_buf(),
            document,
            message: e.to_string(),
        })?;
        values.push(value);
    }
    Ok(values)
}

fn json_documents(text: &str, path: &Path) -> Result<Vec<Value>, SourceError> {
    let mut values = Vec::new();
    for (document, value) in serde_json::Deserializer::from_str(text).into_iter().enumerate() {
        let value: Value = value.map_err(|e| SourceError::Syntax {
            path: path.to_path_buf(),
            document,
            message: e.to_string(),
        })?;
        values.push(value);
    }
    Ok(values)
}

/// Pushes `value` (or its items, if it is a List) onto `out`; skips empty
/// documents.
fn expand(value: Value, origin: Origin, out: &mut Vec<Document>) -> Result<(), SourceError> {
    let list_kind = match &value {
        Value::Null => return Ok(()),
        Value::Object(map) if map.is_empty() => return Ok(()),
        Value::Object(map) => map
            .get("kind")
            .and_then(Value::as_str)
            .filter(|k| k.ends_with("List") && map.contains_key("items"))
            .map(str::to_string),
        other => {
            return Err(SourceError::NotAnObject { origin, found: crate::error::type_name(other) })
        }
    };
    let Some(kind) = list_kind else {
        out.push(Document { origin, object: value });
        return Ok(());
    };
    let items = match value {
        Value::Object(mut map) => map.remove("items"),
        _ => None,
    };
    match items {
        Some(Value::Array(items)) => {
            for (index, item) in items.into_iter().enumerate() {
                let origin = Origin { item: Some(index), ..origin.clone() };
                expand(item, origin, out)?;
            }
            Ok(())
        }
        Some(Value::Null) => Ok(()),
        _ => Err(SourceError::BadList { origin, kind }),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn names(docs: &[Document]) -> Vec<String> {
        docs.iter().map(|d| d.object["metadata"]["name"].as_str().unwrap().to_string()).collect()
    }

    #[test]
    fn multi_document_yaml_skips_empty_documents() {
        let text = "---\napiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n---\n---\n# only a comment\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: b}\n";
        let docs = parse_str(text, Path::new("x.yaml")).unwrap();
        assert_eq!(names(&docs), ["a", "b"]);
        assert_eq!(docs[0].origin.document, 0);
        assert!(docs[1].origin.document > 1, "document index counts empty documents");
        assert_eq!(docs[1].origin.item, None);
    }

    #[test]
    fn lists_are_expanded_with_item_origins() {
        let text = r#"
apiVersion: v1
kind: List
items:
  - {apiVersion: v1, kind: Namespace, metadata: {name: a}}
  - apiVersion: v1
    kind: PodList
    items:
      - {apiVersion: v1, kind: Pod, metadata: {name: p}}
  - {apiVersion: networking.k8s.io/v1, kind: NetworkPolicyList, items: []}
"#;
        let docs = parse_str(text, Path::new("l.yml")).unwrap();
        assert_eq!(names(&docs), ["a", "p"]);
        assert_eq!(docs[0].origin.item, Some(0));
        assert_eq!(docs[1].origin.to_string(), "l.yml, document 1, item 1");
        // A kind ending in List without items is an ordinary object.
        let docs = parse_str("{kind: FooList, metadata: {name: z}}", Path::new("f.yaml")).unwrap();
        assert_eq!(names(&docs), ["z"]);
        let err = parse_str("{kind: List, items: 3}", Path::new("f.yaml")).unwrap_err();
        assert!(err.to_string().contains("items"), "{err}");
    }

    #[test]
    fn json_streams_and_json_lists() {
        let text = r#"{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"a"}}
{"apiVersion":"v1","kind":"List","items":[{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"}}]}"#;
        let docs = parse_str(text, Path::new("x.json")).unwrap();
        assert_eq!(names(&docs), ["a", "p"]);
        assert_eq!(docs[1].origin.document, 1);
    }

    #[test]
    fn syntax_errors_name_file_and_document() {
        let err = parse_str("a: 1\n---\na: [\n", Path::new("bad.yaml")).unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("bad.yaml, document 2"), "{text}");
        let err = parse_str("- 1\n", Path::new("s.yaml")).unwrap_err();
        assert!(matches!(err, SourceError::NotAnObject { found: "list", .. }), "{err}");
    }

    #[test]
    fn yaml_values_stay_strings() {
        let docs = parse_str(
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\nspec: {isolation: yes}\n",
            Path::new("n.yaml"),
        )
        .unwrap();
        // YAML 1.2: an unquoted `yes` is a string.
        assert_eq!(docs[0].object["spec"]["isolation"], json!("yes"));
    }

    #[test]
    fn directories_are_read_recursively_in_path_order() {
        let dir = std::env::temp_dir().join(format!("palisade-store-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("b/nested")).unwrap();
        std::fs::create_dir_all(dir.join(".hidden")).unwrap();
        let ns = |n: &str| format!("{{apiVersion: v1, kind: Namespace, metadata: {{name: {n}}}}}");
        std::fs::write(dir.join("b/nested/z.yml"), ns("z")).unwrap();
        std::fs::write(dir.join("a.yaml"), ns("a")).unwrap();
        std::fs::write(
            dir.join("c.json"),
            r#"{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"c"}}"#,
        )
        .unwrap();
        std::fs::write(dir.join("readme.txt"), "not a manifest").unwrap();
        std::fs::write(dir.join(".hidden/h.yaml"), ns("h")).unwrap();
        let docs = load_path(&dir).unwrap();
        assert_eq!(names(&docs), ["a", "z", "c"]);
        assert_eq!(load_path(&dir.join("a.yaml")).unwrap().len(), 1);
        assert!(matches!(load_path(&dir.join("missing")), Err(SourceError::Io { .. })));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
