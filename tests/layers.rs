//! The layers of `src/lib.rs`'s map are the rule for imports: a module may
//! use only modules on an earlier line of the map, never one on a later line
//! (an import from a lower layer up to a higher one) nor a sibling on its
//! own line. The map is the one statement of the layers; this test reads it
//! and every source file, so the map and the code cannot drift apart.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The layer of each top-level module: the index of the map's bullet that
/// first names it as `` [`module`] ``.
fn layers(lib: &str) -> BTreeMap<String, usize> {
    let mut layers = BTreeMap::new();
    let mut layer = 0;
    for line in lib.lines().take_while(|l| l.starts_with("//!")) {
        let text = line.trim_start_matches("//!");
        if text.starts_with(" - ") {
            layer += 1;
        }
        for part in text.split("[`").skip(1) {
            let name = part.split('`').next().unwrap_or("");
            if !name.is_empty() && name.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
                layers.entry(name.to_string()).or_insert(layer);
            }
        }
    }
    layers
}

/// Every `.rs` file under `dir`.
fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("a readable source folder") {
        let path = entry.expect("a folder entry").path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level modules a file's code names as `crate::module`, outside
/// comments.
fn imports(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or("");
        for part in code.split("crate::").skip(1) {
            let name: String = part
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                .collect();
            // A `#[macro_export]` macro lives at the crate's root: not a module.
            let is_macro = part[name.len()..].starts_with('!');
            if !name.is_empty() && !is_macro {
                found.push(name);
            }
        }
    }
    found
}

#[test]
fn no_module_imports_one_on_its_own_or_a_later_line_of_the_map_in_lib_rs() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let lib = std::fs::read_to_string(root.join("lib.rs")).expect("src/lib.rs");
    let layers = layers(&lib);
    let mut files = Vec::new();
    sources(&root, &mut files);
    let mut faults = Vec::new();
    let mut checked = 0;
    for file in &files {
        let relative = file.strip_prefix(&root).expect("under src");
        let first = relative.components().next().expect("a path");
        let module = first
            .as_os_str()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_string();
        if module == "lib" || module == "main" {
            continue;
        }
        let own = *layers
            .get(&module)
            .unwrap_or_else(|| panic!("src/{module} is not on lib.rs's map"));
        let text = std::fs::read_to_string(file).expect("a readable source file");
        for used in imports(&text) {
            if used == module {
                continue;
            }
            checked += 1;
            match layers.get(&used) {
                Some(&layer) if layer < own => {}
                Some(_) => faults.push(format!(
                    "{} uses crate::{used}, which is not on an earlier line of the map",
                    relative.display()
                )),
                None => faults.push(format!(
                    "{} uses crate::{used}, which is not on the map",
                    relative.display()
                )),
            }
        }
    }
    assert!(
        checked > 100,
        "only {checked} imports were read: is the test reading src?"
    );
    assert!(faults.is_empty(), "{}", faults.join("\n"));
}

#[test]
fn the_map_reader_finds_an_upward_import() {
    let lib = "//! - [`low`]: below.\n//! - [`high`]: above.\n";
    let layers = layers(lib);
    assert!(layers["low"] < layers["high"]);
    assert_eq!(
        imports("use crate::high::Thing; crate::a_macro!(); // crate::ignored"),
        ["high"]
    );
}
