//! From what the user typed to containers: `web`, an id or unique id prefix,
//! `docker:web`, `podman:web`, `containerd:NS/ID`, globs such as `web-*`,
//! every container, or a Kubernetes pod.

use globset::{Glob, GlobMatcher};

use crate::model::Target;
use crate::platform::runtime::{Container, RuntimeKind};

/// One `--container` argument, parsed.
#[derive(Clone, Debug)]
pub struct NameSpec {
    /// The argument as typed, for messages.
    pub text: String,
    /// `docker:` / `podman:` / `containerd:` qualifier.
    pub runtime: Option<RuntimeKind>,
    /// containerd namespace from `containerd:NS/ID`.
    pub namespace: Option<String>,
    pub pattern: String,
    glob: Option<GlobMatcher>,
}

/// What a container target selects.
#[derive(Clone, Debug)]
pub enum Selector {
    Name(NameSpec),
    All,
    /// Kubernetes pod: (namespace, name).
    Pod(String, String),
}

/// Container targets of one capture, with the `--iface` restriction.
#[derive(Clone, Debug)]
pub struct Selection {
    pub selectors: Vec<Selector>,
    /// Container-side interface names to keep (empty: all).
    pub ifaces: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum SelectError {
    #[error("no container matches {pattern:?} in {searched}{}; {hint}", closest_text(.closest))]
    NotFound { pattern: String, closest: Vec<String>, searched: String, hint: &'static str },
    #[error("{pattern:?} matches {} containers: {}; give more of the id or a qualified name such as {}", .candidates.len(), .candidates.join(", "), .example)]
    Ambiguous { pattern: String, candidates: Vec<String>, example: String },
    #[error("bad container pattern {0:?}: {1}")]
    BadPattern(String, String),
    #[error(
        "no container of pod {pod} in {searched} (pods are found by their io.kubernetes.pod.namespace and io.kubernetes.pod.name labels); pass --wait to wait for it"
    )]
    NoPod { pod: String, searched: String },
    #[error("bad pod {0:?}: write it as NAMESPACE/NAME")]
    BadPod(String),
}

fn closest_text(closest: &[String]) -> String {
    if closest.is_empty() { String::new() } else { format!(" (closest: {})", closest.join(", ")) }
}

impl NameSpec {
    pub fn parse(text: &str) -> Result<NameSpec, SelectError> {
        let (runtime, rest) = match text.split_once(':') {
            Some((q, rest)) if RuntimeKind::from_name(q).is_some() => (RuntimeKind::from_name(q), rest),
            _ => (None, text),
        };
        let (namespace, pattern) = match (runtime, rest.split_once('/')) {
            (Some(RuntimeKind::Containerd), Some((ns, id))) => (Some(ns.to_string()), id.to_string()),
            _ => (None, rest.to_string()),
        };
        if pattern.is_empty() {
            return Err(SelectError::BadPattern(text.into(), "the name is empty".into()));
        }
        let glob = if pattern.contains(['*', '?', '[']) {
            let g = Glob::new(&pattern).map_err(|e| SelectError::BadPattern(text.into(), e.kind().to_string()))?;
            Some(g.compile_matcher())
        } else {
            None
        };
        Ok(NameSpec { text: text.into(), runtime, namespace, pattern, glob })
    }

    pub fn is_glob(&self) -> bool {
        self.glob.is_some()
    }

    fn admits(&self, c: &Container) -> bool {
        self.runtime.is_none_or(|r| r == c.runtime)
            && self.namespace.as_ref().is_none_or(|ns| c.namespace.as_ref() == Some(ns))
    }

    /// The containers this spec names. Globs may match none; a plain name
    /// must match exactly one container (by name, full id or id prefix).
    pub fn matches<'a>(&self, all: &'a [Container], searched: &str) -> Result<Vec<&'a Container>, SelectError> {
        let pool: Vec<&Container> = all.iter().filter(|c| self.admits(c)).collect();
        if let Some(glob) = &self.glob {
            return Ok(pool.into_iter().filter(|c| glob.is_match(&c.name)).collect());
        }
        self.match_name(pool, searched)
    }

    /// Like [`NameSpec::matches`], but a glob that matches nothing is an
    /// error too (with the closest names), as a plain name is: `--container
    /// 'web-*'` without `--wait` and no such container is most likely a
    /// typo, and capturing nothing in silence hides it.
    pub fn matches_some<'a>(&self, all: &'a [Container], searched: &str) -> Result<Vec<&'a Container>, SelectError> {
        let found = self.matches(all, searched)?;
        if !found.is_empty() {
            return Ok(found);
        }
        let pool: Vec<&Container> = all.iter().filter(|c| self.admits(c)).collect();
        // The literal part before the first wildcard is what the user meant.
        let stem = self.pattern.split(['*', '?', '[']).next().unwrap_or("");
        Err(SelectError::NotFound {
            pattern: self.text.clone(),
            closest: closest(stem, &pool),
            searched: searched.to_string(),
            hint: "list containers with `cnet list`, or pass --wait to wait for matching containers to start",
        })
    }

    fn match_name<'a>(&self, pool: Vec<&'a Container>, searched: &str) -> Result<Vec<&'a Container>, SelectError> {
        let by_name: Vec<&Container> = pool.iter().copied().filter(|c| c.name == self.pattern).collect();
        if !by_name.is_empty() {
            return one(self, by_name);
        }
        if let Some(c) = pool.iter().find(|c| c.id == self.pattern) {
            return Ok(vec![*c]);
        }
        let by_prefix: Vec<&Container> = pool.iter().copied().filter(|c| c.id.starts_with(&self.pattern)).collect();
        if !by_prefix.is_empty() {
            return one(self, by_prefix);
        }
        Err(SelectError::NotFound {
            pattern: self.text.clone(),
            closest: closest(&self.pattern, &pool),
            searched: searched.to_string(),
            hint: "list containers with `cnet list`, or pass --wait to wait for it to start",
        })
    }
}

fn one<'a>(spec: &NameSpec, found: Vec<&'a Container>) -> Result<Vec<&'a Container>, SelectError> {
    if found.len() == 1 {
        return Ok(found);
    }
    let candidates: Vec<String> =
        found.iter().map(|c| format!("{} (id {})", c.qualified_name(), c.short_id())).collect();
    Err(SelectError::Ambiguous { pattern: spec.text.clone(), candidates, example: found[0].qualified_name() })
}

/// Up to three names closest to `pattern`, best first.
fn closest(pattern: &str, pool: &[&Container]) -> Vec<String> {
    let mut scored: Vec<(f64, String)> = pool
        .iter()
        .map(|c| (strsim::jaro_winkler(pattern, &c.name), c.qualified_name()))
        .filter(|(s, _)| *s >= 0.7)
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    scored.dedup_by(|a, b| a.1 == b.1);
    scored.into_iter().take(3).map(|(_, n)| n).collect()
}

impl Selection {
    /// The container targets among `targets` (None when there are none).
    pub fn from_targets(targets: &[Target]) -> Result<Option<Selection>, SelectError> {
        let mut sel = Selection { selectors: Vec::new(), ifaces: Vec::new() };
        for t in targets {
            match t {
                Target::Container(text) => sel.selectors.push(Selector::Name(NameSpec::parse(text)?)),
                Target::AllContainers => sel.selectors.push(Selector::All),
                Target::Pod(text) => match text.split_once('/') {
                    Some((ns, name)) if !ns.is_empty() && !name.is_empty() => {
                        sel.selectors.push(Selector::Pod(ns.into(), name.into()))
                    }
                    _ => return Err(SelectError::BadPod(text.clone())),
                },
                Target::ContainerIface(name) => sel.ifaces.push(name.clone()),
                _ => {}
            }
        }
        Ok((!sel.selectors.is_empty()).then_some(sel))
    }

    /// Runtimes the selection is restricted to by qualifiers: empty when
    /// any selector may match any runtime.
    pub fn runtimes(&self) -> Vec<RuntimeKind> {
        let mut out = Vec::new();
        for s in &self.selectors {
            match s {
                Selector::Name(NameSpec { runtime: Some(r), .. }) => out.push(*r),
                _ => return Vec::new(),
            }
        }
        out.sort();
        out.dedup();
        out
    }

    /// Containers selected, without duplicates. With `strict`, a plain name
    /// that matches nothing is an error; an ambiguous one always is.
    pub fn select<'a>(
        &self,
        all: &'a [Container],
        searched: &str,
        strict: bool,
    ) -> Result<Vec<&'a Container>, SelectError> {
        let mut out: Vec<&Container> = Vec::new();
        for s in &self.selectors {
            let found = match s {
                Selector::All => all.iter().collect(),
                Selector::Pod(ns, name) => {
                    let found: Vec<&Container> =
                        all.iter().filter(|c| c.pod() == Some((ns.as_str(), name.as_str()))).collect();
                    if found.is_empty() && strict {
                        return Err(SelectError::NoPod { pod: format!("{ns}/{name}"), searched: searched.to_string() });
                    }
                    found
                }
                Selector::Name(spec) if strict => spec.matches_some(all, searched)?,
                Selector::Name(spec) => match spec.matches(all, searched) {
                    Ok(v) => v,
                    Err(SelectError::NotFound { .. }) if !strict => Vec::new(),
                    Err(e) => return Err(e),
                },
            };
            for c in found {
                if !out.iter().any(|o| o.runtime == c.runtime && o.id == c.id) {
                    out.push(c);
                }
            }
        }
        Ok(out)
    }

    /// True when the selector that picked `c` named it explicitly (not a
    /// glob, `--all` or pod): then a container that cannot be captured is
    /// an error rather than a note.
    pub fn names_explicitly(&self, c: &Container, all: &[Container]) -> bool {
        self.selectors.iter().any(|s| match s {
            Selector::Name(spec) if !spec.is_glob() => {
                spec.matches(all, "").map(|v| v.iter().any(|m| m.id == c.id && m.runtime == c.runtime)).unwrap_or(false)
            }
            _ => false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::runtime::Container;

    fn c(runtime: RuntimeKind, name: &str, id: &str, ns: Option<&str>) -> Container {
        Container {
            runtime,
            id: id.into(),
            name: name.into(),
            namespace: ns.map(str::to_string),
            image: String::new(),
            state: "running".into(),
            pid: Some(1),
            network_mode: None,
            networks: Vec::new(),
            labels: Default::default(),
        }
    }

    fn pool() -> Vec<Container> {
        vec![
            c(RuntimeKind::Docker, "web", "abc111", None),
            c(RuntimeKind::Docker, "web-2", "abd222", None),
            c(RuntimeKind::Podman, "web", "f00333", None),
            c(RuntimeKind::Containerd, "web", "web", Some("k8s.io")),
        ]
    }

    fn names(v: &[&Container]) -> Vec<String> {
        v.iter().map(|c| c.qualified_name()).collect()
    }

    #[test]
    fn qualified_names_pick_one_runtime() {
        let all = pool();
        let m = NameSpec::parse("podman:web").unwrap().matches(&all, "").unwrap();
        assert_eq!(names(&m), ["podman:web"]);
        let m = NameSpec::parse("containerd:k8s.io/web").unwrap().matches(&all, "").unwrap();
        assert_eq!(names(&m), ["containerd:k8s.io/web"]);
    }

    #[test]
    fn same_name_in_two_runtimes_is_ambiguous() {
        let err = NameSpec::parse("web").unwrap().matches(&pool(), "").unwrap_err().to_string();
        assert!(err.contains("docker:web (id abc111)") && err.contains("podman:web (id f00333)"), "{err}");
    }

    #[test]
    fn id_prefixes_must_be_unique() {
        let all = pool();
        let m = NameSpec::parse("abd").unwrap().matches(&all, "").unwrap();
        assert_eq!(names(&m), ["docker:web-2"]);
        let err = NameSpec::parse("ab").unwrap().matches(&all, "").unwrap_err().to_string();
        assert!(err.contains("matches 2 containers"), "{err}");
    }

    #[test]
    fn globs_select_every_match() {
        let all = pool();
        let m = NameSpec::parse("docker:web*").unwrap().matches(&all, "").unwrap();
        assert_eq!(names(&m), ["docker:web", "docker:web-2"]);
        assert!(NameSpec::parse("nothing-*").unwrap().matches(&pool(), "").unwrap().is_empty());
    }

    #[test]
    fn unknown_names_suggest_close_ones() {
        let err = NameSpec::parse("docker:webb").unwrap().matches(&pool(), "docker (/s)").unwrap_err().to_string();
        assert!(err.contains("closest: docker:web") && err.contains("in docker (/s)"), "{err}");
    }

    #[test]
    fn a_glob_matching_nothing_is_an_error_unless_waiting() {
        let all = pool();
        let sel = Selection::from_targets(&[Target::Container("wbe-*".into())]).unwrap().unwrap();
        let err = sel.select(&all, "docker (/s)", true).unwrap_err().to_string();
        assert!(err.contains("no container matches \"wbe-*\"") && err.contains("closest:"), "{err}");
        assert!(sel.select(&all, "docker (/s)", false).unwrap().is_empty());
        let all_sel = Selection::from_targets(&[Target::AllContainers]).unwrap().unwrap();
        assert!(all_sel.select(&[], "", true).unwrap().is_empty());
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        assert!(NameSpec::parse("docker:").is_err());
        assert!(NameSpec::parse("web[").is_err());
        let t = [Target::Pod("nopod".into())];
        assert!(Selection::from_targets(&t).is_err());
    }
}
