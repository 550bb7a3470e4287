//! Source rules for the WGSL kernels that no compiler enforces for us.
#![cfg(not(target_arch = "wasm32"))]

use std::path::Path;

/// A `var` declared without an initializer inside a nested block (a loop body, mostly) must get
/// a fresh zero value each time it is reached; naga does that, but Chromium's Tint + SwiftShader
/// kept the previous iteration's value, which broke attention past 128 keys in the browser. So
/// every such declaration spells out its initializer (`var d = array<vec4<f32>, R>();`).
#[test]
fn nested_vars_have_initializers() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("shaders");
    let mut bad = Vec::new();
    let mut files = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "wgsl") {
            continue;
        }
        files += 1;
        let src = std::fs::read_to_string(&path).unwrap();
        let mut depth = 0i32;
        for (n, line) in src.lines().enumerate() {
            let code = line.split("//").next().unwrap();
            let t = code.trim_start();
            // `var<workgroup>` and friends are module-scope; `var x = ...` has an initializer.
            if depth > 1 && t.starts_with("var ") && !t.contains('=') {
                bad.push(format!("{}:{}: {}", path.file_name().unwrap().to_string_lossy(), n + 1, t.trim()));
            }
            depth += code.matches('{').count() as i32 - code.matches('}').count() as i32;
        }
        assert_eq!(depth, 0, "{}: unbalanced braces", path.display());
    }
    assert!(files >= 10, "found {files} shaders in {}", dir.display());
    assert!(bad.is_empty(), "declarations without an initializer in nested blocks:\n{}", bad.join("\n"));
}
