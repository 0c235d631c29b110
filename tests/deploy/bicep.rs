//! A Bicep file parsed with tree-sitter-bicep, and the few facts the checks read from its tree:
//! syntax errors (ERROR and MISSING nodes), parameters, resource types, variables, string
//! literals, object properties, the app settings reachable from `appSettings` and the
//! string lists of a property (the custom role's `actions`). No regular expressions: every
//! fact comes from the parse tree.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use tree_sitter::{Node, Parser, Tree};

/// A parsed file with no syntax error.
pub struct Bicep {
    pub path: PathBuf,
    pub source: String,
    tree: Tree,
}

/// One `{ name: '…', value: … }` app setting and the `var` it is declared in.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Setting {
    pub name: String,
    pub var: Option<String>,
}

/// Parses `source`; the error names the file, line and column of the first ERROR or MISSING
/// node and quotes the line around it.
pub fn parse(path: &Path, source: &str) -> Result<Bicep, String> {
    let mut parser = Parser::new();
    parser
        .set_language(&tree_sitter_bicep::LANGUAGE.into())
        .map_err(|e| format!("loading the Bicep grammar: {e}"))?;
    let tree = parser
        .parse(source, None)
        .ok_or_else(|| format!("{}: the parser gave no tree", path.display()))?;
    if let Some(bad) = first_bad_node(tree.root_node()) {
        let at = bad.start_position();
        let line = source.lines().nth(at.row).unwrap_or_default().trim();
        let what = if bad.is_missing() {
            format!("missing `{}`", bad.kind())
        } else {
            let text = &source[bad.byte_range()];
            let text: String = text.chars().take(60).collect();
            format!("unexpected `{}`", text.trim())
        };
        return Err(format!(
            "{}:{}:{}: syntax error ({what}) in: {line}",
            path.display(),
            at.row + 1,
            at.column + 1
        ));
    }
    Ok(Bicep {
        path: path.to_path_buf(),
        source: source.to_string(),
        tree,
    })
}

/// Reads and parses a file.
pub fn parse_file(path: &Path) -> Result<Bicep, String> {
    let source = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    parse(path, &source)
}

/// The first ERROR or MISSING node in document order.
fn first_bad_node(node: Node<'_>) -> Option<Node<'_>> {
    if node.is_error() || node.is_missing() {
        return Some(node);
    }
    if !node.has_error() {
        return None;
    }
    let mut cursor = node.walk();
    let children: Vec<Node<'_>> = node.children(&mut cursor).collect();
    children.into_iter().find_map(first_bad_node)
}

/// Every node of the subtree, in document order.
fn descendants(node: Node<'_>) -> Vec<Node<'_>> {
    let mut out = vec![node];
    let mut i = 0;
    while i < out.len() {
        let mut cursor = out[i].walk();
        let children: Vec<Node<'_>> = out[i].named_children(&mut cursor).collect();
        out.extend(children);
        i += 1;
    }
    out.sort_by_key(|n| n.start_byte());
    out
}

fn named_children(node: Node<'_>) -> Vec<Node<'_>> {
    let mut cursor = node.walk();
    node.named_children(&mut cursor).collect()
}

impl Bicep {
    fn root(&self) -> Node<'_> {
        self.tree.root_node()
    }

    pub fn text(&self, node: Node<'_>) -> &str {
        &self.source[node.byte_range()]
    }

    /// 1-based line of a node.
    pub fn line(&self, node: Node<'_>) -> usize {
        node.start_position().row + 1
    }

    /// The value of a string literal without interpolation, escapes resolved.
    pub fn string_literal(&self, node: Node<'_>) -> Option<String> {
        if node.kind() != "string" {
            return None;
        }
        let text = self.text(node);
        if text.starts_with("'''") {
            return Some(text.trim_start_matches("'''").trim_end_matches("'''").to_string());
        }
        let mut out = String::new();
        let mut cursor = node.walk();
        for part in node.children(&mut cursor) {
            match part.kind() {
                "'" => {}
                "string_content" => out.push_str(self.text(part)),
                "escape_sequence" => {
                    let escaped = self.text(part).trim_start_matches('\\');
                    out.push_str(match escaped {
                        "n" => "\n",
                        "r" => "\r",
                        "t" => "\t",
                        other => other,
                    });
                }
                // An interpolation: not a literal.
                _ => return None,
            }
        }
        Some(out)
    }

    /// Parameter names, in order.
    pub fn params(&self) -> Vec<String> {
        self.declarations("parameter_declaration")
            .into_iter()
            .map(|(name, _)| name)
            .collect()
    }

    /// `var` names and their expressions.
    pub fn variables(&self) -> BTreeMap<String, Node<'_>> {
        self.declarations("variable_declaration").into_iter().collect()
    }

    /// (identifier, value node) of every top-level declaration of `kind`.
    fn declarations(&self, kind: &str) -> Vec<(String, Node<'_>)> {
        named_children(self.root())
            .into_iter()
            .filter(|n| n.kind() == kind)
            .filter_map(|n| {
                let children = named_children(n);
                let name = children.iter().find(|c| c.kind() == "identifier")?;
                let value = children.last()?;
                Some((self.text(*name).to_string(), *value))
            })
            .collect()
    }

    /// `type@apiVersion` of every resource declaration (new or `existing`), with its line.
    pub fn resource_types(&self) -> Vec<(String, usize)> {
        descendants(self.root())
            .into_iter()
            .filter(|n| n.kind() == "resource_declaration")
            .filter_map(|n| {
                let ty = named_children(n).into_iter().find(|c| c.kind() == "string")?;
                Some((self.string_literal(ty)?, self.line(n)))
            })
            .collect()
    }

    /// The key of an object property (identifier or quoted).
    fn property_key(&self, property: Node<'_>) -> Option<String> {
        let key = named_children(property).into_iter().next()?;
        match key.kind() {
            "identifier" | "compatible_identifier" => Some(self.text(key).trim_end_matches('?').to_string()),
            "string" => self.string_literal(key),
            _ => None,
        }
    }

    /// The value of an object property.
    fn property_value<'t>(&self, property: Node<'t>) -> Option<Node<'t>> {
        named_children(property).into_iter().nth(1)
    }

    /// The value of `key` in an object node.
    fn get<'t>(&self, object: Node<'t>, key: &str) -> Option<Node<'t>> {
        named_children(object)
            .into_iter()
            .filter(|p| p.kind() == "object_property")
            .find(|p| self.property_key(*p).as_deref() == Some(key))
            .and_then(|p| self.property_value(p))
    }

    /// Every `key: value` property anywhere in the file.
    pub fn properties(&self, key: &str) -> Vec<Node<'_>> {
        descendants(self.root())
            .into_iter()
            .filter(|n| n.kind() == "object_property")
            .filter(|p| self.property_key(*p).as_deref() == Some(key))
            .filter_map(|p| self.property_value(p))
            .collect()
    }

    /// Every property key in the subtree of `node`.
    pub fn keys_under(&self, node: Node<'_>) -> Vec<String> {
        descendants(node)
            .into_iter()
            .filter(|n| n.kind() == "object_property")
            .filter_map(|p| self.property_key(p))
            .collect()
    }

    /// The string literals of an array node (an element that is not a literal is an error).
    pub fn string_array(&self, array: Node<'_>) -> Result<Vec<String>, String> {
        if array.kind() != "array" {
            return Err(format!(
                "{}:{}: expected a literal array, found `{}`",
                self.path.display(),
                self.line(array),
                self.text(array)
            ));
        }
        named_children(array)
            .into_iter()
            .map(|element| {
                self.string_literal(element).ok_or_else(|| {
                    format!(
                        "{}:{}: `{}` is not a string literal",
                        self.path.display(),
                        self.line(element),
                        self.text(element)
                    )
                })
            })
            .collect()
    }

    /// Every app setting reachable from an `appSettings:` property, following the variables
    /// its expression names (concat, ternaries and all), each with the `var` it is written in.
    pub fn app_settings(&self) -> Vec<Setting> {
        let variables = self.variables();
        let mut found = Vec::new();
        let mut visited = HashSet::new();
        for value in self.properties("appSettings") {
            self.collect_settings(value, None, &variables, &mut visited, &mut found);
        }
        found.sort();
        found.dedup();
        found
    }

    fn collect_settings<'t>(
        &'t self,
        node: Node<'t>,
        var: Option<&str>,
        variables: &BTreeMap<String, Node<'t>>,
        visited: &mut HashSet<String>,
        found: &mut Vec<Setting>,
    ) {
        match node.kind() {
            "identifier" => {
                let name = self.text(node);
                if let Some(expression) = variables.get(name)
                    && visited.insert(name.to_string())
                {
                    self.collect_settings(*expression, Some(name), variables, visited, found);
                }
            }
            "object" => {
                let name = self.get(node, "name").and_then(|n| self.string_literal(n));
                match (name, self.get(node, "value")) {
                    (Some(name), Some(_)) => found.push(Setting {
                        name,
                        var: var.map(str::to_string),
                    }),
                    _ => {
                        for child in named_children(node) {
                            self.collect_settings(child, var, variables, visited, found);
                        }
                    }
                }
            }
            // `x.y`: only the object side can name a variable.
            "member_expression" => {
                if let Some(object) = node.child_by_field_name("object") {
                    self.collect_settings(object, var, variables, visited, found);
                }
            }
            _ => {
                for child in named_children(node) {
                    self.collect_settings(child, var, variables, visited, found);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_ok(source: &str) -> Bicep {
        match parse(Path::new("snippet.bicep"), source) {
            Ok(bicep) => bicep,
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn a_broken_snippet_is_reported_with_its_line_and_text() {
        let broken = "param ok string\n\nresource r 'Microsoft.Web/sites@2024-04-01' = {\n  name: 'x'\n  properties: {\n    httpsOnly: true\n  \n";
        let error = parse(Path::new("broken.bicep"), broken).err().unwrap_or_default();
        assert!(error.starts_with("broken.bicep:"), "{error}");
        assert!(error.contains("syntax error"), "{error}");
        let stray = "var a = {\n  b: 1\n}}\nvar c = 2\n";
        let error = parse(Path::new("stray.bicep"), stray).err().unwrap_or_default();
        assert!(error.starts_with("stray.bicep:3:"), "{error}");
        assert!(error.contains("in: }}"), "{error}");
    }

    #[test]
    fn constructs_the_grammar_lacks_are_caught() {
        // The spread operator is newer than the grammar: keep to classic Bicep.
        let spread = "var a = { ...b }\n";
        assert!(parse(Path::new("spread.bicep"), spread).is_err());
    }

    #[test]
    fn facts_come_from_the_tree() {
        let b = parse_ok(
            "@description('d')\nparam p string = 'x'\nparam q int\n\
             var common = [\n  {\n    name: 'A'\n    value: p\n  }\n]\n\
             var extra = q > 1 ? [\n  {\n    name: 'B\\'s'\n    value: 'v'\n  }\n] : []\n\
             var all = concat(common, extra)\n\
             resource r 'Microsoft.Web/sites@2024-04-01' = {\n  name: 'n'\n  properties: {\n    appSettings: all\n    list: [\n      'a'\n      'b'\n    ]\n  }\n}\n\
             resource e 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {\n  name: 's'\n}\n",
        );
        assert_eq!(b.params(), ["p", "q"]);
        assert_eq!(
            b.resource_types(),
            [
                ("Microsoft.Web/sites@2024-04-01".to_string(), 17),
                ("Microsoft.Storage/storageAccounts@2023-05-01".to_string(), 27)
            ]
        );
        let settings = b.app_settings();
        assert_eq!(
            settings,
            [
                Setting {
                    name: "A".into(),
                    var: Some("common".into())
                },
                Setting {
                    name: "B's".into(),
                    var: Some("extra".into())
                },
            ]
        );
        let list = b.properties("list");
        assert_eq!(
            b.string_array(list[0]),
            Ok(vec!["a".to_string(), "b".to_string()])
        );
    }

    #[test]
    fn an_interpolated_string_is_not_a_literal() {
        let b = parse_ok("param p string\nvar v = [\n  'x-${p}'\n]\n");
        let value = b.variables()["v"];
        assert!(b.string_array(value).is_err());
    }
}
