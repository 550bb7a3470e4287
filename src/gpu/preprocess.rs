//! A tiny WGSL preprocessor for kernel variants: `#ifdef NAME` / `#ifndef NAME` / `#else` /
//! `#endif` (nestable), `#include "file.wgsl"`, and `{{NAME}}` replaced by a define's value.
//! It also emits the `enable` directives a variant needs.

use std::collections::BTreeMap;

/// Named values that select a kernel variant; also the pipeline cache key.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct ShaderDefs(BTreeMap<String, String>);

impl ShaderDefs {
    pub fn set(&mut self, name: &str, value: impl ToString) -> &mut Self {
        self.0.insert(name.to_string(), value.to_string());
        self
    }

    pub fn with(mut self, name: &str, value: impl ToString) -> Self {
        self.set(name, value);
        self
    }

    pub fn has(&self, name: &str) -> bool {
        self.0.contains_key(name)
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    /// A stable string form, for cache keys and error messages.
    pub fn key(&self) -> String {
        self.0
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// Expands `src` for `defs`. `includes` maps file names to sources.
pub fn preprocess(
    src: &str,
    defs: &ShaderDefs,
    includes: &[(&str, &str)],
) -> Result<String, String> {
    let mut out = String::new();
    if defs.has("F16") {
        out.push_str("enable f16;\n");
    }
    // naga (native) rejects `enable subgroups;` while browsers require it.
    if defs.has("SUBGROUPS") && cfg!(target_arch = "wasm32") {
        out.push_str("enable subgroups;\n");
    }
    expand(src, defs, includes, &mut out, 0)?;
    Ok(out)
}

fn expand(
    src: &str,
    defs: &ShaderDefs,
    includes: &[(&str, &str)],
    out: &mut String,
    depth: usize,
) -> Result<(), String> {
    if depth > 8 {
        return Err("#include nested too deeply".into());
    }
    // Stack of (this branch active, parent active).
    let mut stack: Vec<(bool, bool)> = Vec::new();
    let active = |stack: &Vec<(bool, bool)>| stack.last().is_none_or(|&(a, p)| a && p);
    for (n, line) in src.lines().enumerate() {
        let t = line.trim_start();
        if let Some(name) = t.strip_prefix("#ifdef ") {
            let p = active(&stack);
            stack.push((defs.has(name.trim()), p));
        } else if let Some(name) = t.strip_prefix("#ifndef ") {
            let p = active(&stack);
            stack.push((!defs.has(name.trim()), p));
        } else if t.starts_with("#else") {
            let top = stack
                .last_mut()
                .ok_or(format!("line {}: #else without #ifdef", n + 1))?;
            top.0 = !top.0;
        } else if t.starts_with("#endif") {
            stack
                .pop()
                .ok_or(format!("line {}: #endif without #ifdef", n + 1))?;
        } else if let Some(file) = t.strip_prefix("#include ") {
            if active(&stack) {
                let file = file.trim().trim_matches('"');
                let inc = includes
                    .iter()
                    .find(|(f, _)| *f == file)
                    .ok_or(format!("line {}: unknown include {file}", n + 1))?;
                expand(inc.1, defs, includes, out, depth + 1)?;
            }
        } else if active(&stack) {
            let mut l = line.to_string();
            while let Some(s) = l.find("{{") {
                let e = l[s..]
                    .find("}}")
                    .ok_or(format!("line {}: unclosed {{{{", n + 1))?
                    + s;
                let name = l[s + 2..e].trim().to_string();
                let v = defs
                    .get(&name)
                    .ok_or(format!("line {}: {name} is not defined", n + 1))?
                    .to_string();
                l.replace_range(s..e + 2, &v);
            }
            out.push_str(&l);
            out.push('\n');
        }
    }
    if !stack.is_empty() {
        return Err("unterminated #ifdef".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variants_expand() {
        let src = "a\n#ifdef F16\nb {{N}}\n#ifndef X\nc\n#else\nd\n#endif\n#else\ne\n#endif\n#include \"inc\"\n";
        let defs = ShaderDefs::default().with("F16", 1).with("N", 4);
        let out = preprocess(src, &defs, &[("inc", "f")]).unwrap();
        assert_eq!(out, "enable f16;\na\nb 4\nc\nf\n");
        let out = preprocess(src, &ShaderDefs::default().with("N", 4), &[("inc", "f")]).unwrap();
        assert_eq!(out, "a\ne\nf\n");
        assert!(preprocess("#ifdef A\n", &defs, &[]).is_err());
        assert!(preprocess("{{MISSING}}", &defs, &[]).is_err());
    }
}
