//! The route policy of the APIs behind lmts (SPEC C1): which scopes a request needs, decided by
//! the first rule whose method and path match. Paths are matched on the request target's path
//! as received (never its query, never decoded): literal segments, `*` for one segment, and a
//! final `**` for the rest.

use std::fmt;

use lmts_core::Scope;
use serde::Deserialize;
use toml::Spanned;

/// A parsed route policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutePolicy {
    default: DefaultRule,
    routes: Vec<Route>,
}

/// What unmatched routes get.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DefaultRule {
    /// 403 whatever the token.
    Deny,
    /// Any valid token.
    Authenticated,
}

/// One `[[route]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Route {
    /// The upper-case method, or `None` for `*`.
    method: Option<String>,
    pattern: Vec<Segment>,
    access: Access,
    /// Where the rule starts in the file (1-based), to name it.
    line: usize,
    /// The rule as written: `METHOD path`.
    written: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    One,
    Rest,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Access {
    Public,
    Scopes(Vec<Scope>),
}

/// What the policy requires of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision<'p> {
    /// No signature needed; forwarded without `x-lmts-*` headers.
    Public {
        /// The deciding rule's line.
        line: usize,
    },
    /// A valid token holding all of these scopes (none: any valid token).
    Requires {
        /// The scopes required, in the contract's order.
        scopes: &'p [Scope],
        /// The deciding rule's line; `None` for the default.
        line: Option<usize>,
    },
    /// Refused whatever the token (the default `deny`).
    Deny,
}

/// Why a policy file was refused: where, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct PolicyError {
    /// The 1-based line.
    pub line: usize,
    /// What is wrong, in plain words.
    pub reason: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    default: Spanned<String>,
    #[serde(default, rename = "route")]
    routes: Vec<Spanned<RouteFile>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RouteFile {
    method: String,
    path: String,
    #[serde(default)]
    scopes: Vec<String>,
    #[serde(default)]
    public: bool,
}

impl RoutePolicy {
    /// Parses and checks a policy file's text.
    pub fn parse(text: &str) -> Result<Self, PolicyError> {
        let line_of = |offset: usize| text[..offset.min(text.len())].matches('\n').count() + 1;
        let file: PolicyFile = toml::from_str(text).map_err(|error| PolicyError {
            line: error.span().map_or(1, |span| line_of(span.start)),
            reason: error.message().to_owned(),
        })?;
        let default = match file.default.get_ref().as_str() {
            "deny" => DefaultRule::Deny,
            "authenticated" => DefaultRule::Authenticated,
            other => {
                return Err(PolicyError {
                    line: line_of(file.default.span().start),
                    reason: format!("default must be \"deny\" or \"authenticated\", not {other:?}"),
                })
            }
        };
        let routes = file
            .routes
            .iter()
            .map(|route| {
                let line = line_of(route.span().start);
                Route::check(route.get_ref(), line).map_err(|reason| PolicyError { line, reason })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { default, routes })
    }

    /// The rule for `method` on `target` (path and query as received).
    pub fn decide(&self, method: &str, target: &str) -> Decision<'_> {
        let path = path_of(target);
        let Some(route) = self.routes.iter().find(|route| route.matches(method, path)) else {
            return match self.default {
                DefaultRule::Deny => Decision::Deny,
                DefaultRule::Authenticated => Decision::Requires {
                    scopes: &[],
                    line: None,
                },
            };
        };
        match &route.access {
            Access::Public => Decision::Public { line: route.line },
            Access::Scopes(scopes) => Decision::Requires {
                scopes,
                line: Some(route.line),
            },
        }
    }

    /// The rule written at `line`, as `METHOD path`.
    pub fn rule_at(&self, line: usize) -> Option<&str> {
        let route = self.routes.iter().find(|route| route.line == line)?;
        Some(&route.written)
    }

    /// How many rules the policy has, and its default.
    pub fn summary(&self) -> (usize, DefaultRule) {
        (self.routes.len(), self.default)
    }
}

impl Route {
    fn check(file: &RouteFile, line: usize) -> Result<Self, String> {
        let method = match file.method.as_str() {
            "*" => None,
            name if !name.is_empty() && name.bytes().all(|b| b.is_ascii_uppercase()) => {
                Some(name.to_owned())
            }
            other => {
                return Err(format!(
                    "method must be \"*\" or an upper-case HTTP method, not {other:?}"
                ))
            }
        };
        let pattern = parse_pattern(&file.path)?;
        let access = match (file.public, file.scopes.as_slice()) {
            (true, []) => Access::Public,
            (true, _) => return Err("a public route takes no scopes".into()),
            (false, names) => Access::Scopes(parse_scopes(names)?),
        };
        Ok(Self {
            method,
            pattern,
            access,
            line,
            written: format!("{} {}", file.method, file.path),
        })
    }

    /// Whether the rule covers `method` on `path`. A `GET` rule covers `HEAD` too (servers
    /// answer it with the GET handler), and a rule covers `/a/b/` when it covers `/a/b` (most
    /// routers treat them alike) as well as when it covers `/a/b/` itself (`/a/**`).
    fn matches(&self, method: &str, path: &str) -> bool {
        let covers = |wanted: &str| wanted == method || wanted == "GET" && method == "HEAD";
        if self.method.as_deref().is_some_and(|wanted| !covers(wanted)) {
            return false;
        }
        self.matches_path(path)
            || path
                .strip_suffix('/')
                .is_some_and(|trimmed| !trimmed.is_empty() && self.matches_path(trimmed))
    }

    fn matches_path(&self, path: &str) -> bool {
        let Some(rest) = path.strip_prefix('/') else {
            return false;
        };
        let mut segments = rest.split('/');
        for segment in &self.pattern {
            match (segment, segments.next()) {
                (Segment::Rest, given) => return given.is_some(),
                (_, None) => return false,
                (Segment::One, Some(_)) => {}
                (Segment::Literal(literal), Some(given)) if literal == given => {}
                (Segment::Literal(_), Some(_)) => return false,
            }
        }
        segments.next().is_none()
    }
}

/// The path of a request target, without its query.
pub fn path_of(target: &str) -> &str {
    target.split_once('?').map_or(target, |(path, _)| path)
}

/// A path pattern: `/` then segments; `*` is one segment, a final `**` the rest.
fn parse_pattern(path: &str) -> Result<Vec<Segment>, String> {
    let rest = path
        .strip_prefix('/')
        .ok_or_else(|| format!("path must start with /, not {path:?}"))?;
    if path.contains('?') {
        return Err("path must not hold a query: rules match the path only".into());
    }
    let parts: Vec<&str> = rest.split('/').collect();
    if path != "/" && parts.iter().any(|part| part.is_empty()) {
        return Err("path must not end in / or hold an empty segment: one trailing slash in a request is ignored, so /orders covers /orders/".into());
    }
    parts
        .iter()
        .enumerate()
        .map(|(at, part)| match *part {
            "**" if at + 1 == parts.len() => Ok(Segment::Rest),
            "**" => Err("** may only be the last segment".into()),
            "*" => Ok(Segment::One),
            literal if literal.contains('*') => Err(format!(
                "segment {literal:?}: * stands alone, as a whole segment"
            )),
            literal => Ok(Segment::Literal(literal.to_owned())),
        })
        .collect()
}

/// Known scopes, merged and in the contract's order.
fn parse_scopes(names: &[String]) -> Result<Vec<Scope>, String> {
    let mut scopes = Vec::new();
    for name in names {
        let scope = Scope::from(name.as_str());
        if !scope.is_known() {
            let known: Vec<String> = Scope::KNOWN.iter().map(ToString::to_string).collect();
            return Err(format!(
                "unknown scope {name:?}; known scopes: {}",
                known.join(", ")
            ));
        }
        scopes.push(scope);
    }
    // Not `canonical_scopes`: an empty list here means any valid token, not `[trading]`.
    scopes.sort();
    scopes.dedup();
    Ok(scopes)
}

impl fmt::Display for DefaultRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DefaultRule::Deny => "deny",
            DefaultRule::Authenticated => "authenticated",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use lmts_testkit::policy::SPEC_EXAMPLE;

    #[test]
    fn the_first_matching_rule_decides_on_the_path_alone() {
        let policy = RoutePolicy::parse(SPEC_EXAMPLE).unwrap();
        let trading = [Scope::Trading];
        assert_eq!(
            policy.decide("POST", "/orders?market=btc"),
            Decision::Requires {
                scopes: &trading,
                line: Some(4)
            }
        );
        assert_eq!(policy.decide("GET", "/orders"), Decision::Deny);
        assert!(matches!(
            policy.decide("DELETE", "/portfolio/withdraw"),
            Decision::Requires { line: Some(9), .. }
        ));
        assert_eq!(
            policy.decide("GET", "/markets/btc/book"),
            Decision::Public { line: 14 }
        );
        assert_eq!(
            policy.decide("GET", "/markets"),
            Decision::Deny,
            "** needs a segment"
        );
        assert_eq!(policy.decide("GET", "/orders/"), Decision::Deny);
        assert_eq!(policy.rule_at(4), Some("POST /orders"));
    }

    #[test]
    fn one_star_matches_one_segment() {
        let policy = RoutePolicy::parse(
            "default = \"authenticated\"\n[[route]]\nmethod = \"GET\"\npath = \"/orders/*\"\nscopes = [\"trading\", \"trading\"]\n",
        )
        .unwrap();
        assert!(
            matches!(policy.decide("GET", "/orders/42"), Decision::Requires { line: Some(2), scopes } if scopes == [Scope::Trading])
        );
        assert_eq!(
            policy.decide("GET", "/orders/42/fills"),
            Decision::Requires {
                scopes: &[],
                line: None
            },
            "the default applies to unmatched routes"
        );
    }

    #[test]
    fn a_route_without_scopes_takes_any_valid_token() {
        let policy = RoutePolicy::parse(
            "default = \"deny\"\n[[route]]\nmethod = \"GET\"\npath = \"/me\"\nscopes = []\n[[route]]\nmethod = \"GET\"\npath = \"/you\"\n",
        )
        .unwrap();
        for (path, line) in [("/me", 2), ("/you", 6)] {
            assert_eq!(
                policy.decide("GET", path),
                Decision::Requires {
                    scopes: &[],
                    line: Some(line)
                },
                "{path}"
            );
        }
    }

    #[test]
    fn a_trailing_slash_is_the_route_without_it_and_rest_patterns_still_cover_it() {
        let policy = RoutePolicy::parse(
            "default = \"deny\"\n[[route]]\nmethod = \"*\"\npath = \"/admin/**\"\nscopes = [\"withdrawal\"]\n[[route]]\nmethod = \"GET\"\npath = \"/orders\"\nscopes = []\n",
        )
        .unwrap();
        assert!(matches!(
            policy.decide("GET", "/admin/"),
            Decision::Requires { line: Some(2), .. }
        ));
        assert!(matches!(
            policy.decide("GET", "/orders/"),
            Decision::Requires { line: Some(6), .. }
        ));
        assert!(matches!(
            policy.decide("HEAD", "/orders"),
            Decision::Requires { line: Some(6), .. }
        ));
        let trailing = RoutePolicy::parse(
            "default = \"deny\"\n[[route]]\nmethod = \"GET\"\npath = \"/admin/\"\nscopes = []\n",
        );
        assert!(trailing.is_err_and(|error| error.reason.contains("trailing slash")));
    }

    #[test]
    fn mistakes_name_their_line_and_reason() {
        let cases = [
            ("default = \"allow\"\n", 1, "default must be"),
            ("default = \"deny\"\n\n[[route]]\nmethod = \"GET\"\npath = \"/a\"\nscopes = [\"root\"]\n", 3, "unknown scope \"root\""),
            ("default = \"deny\"\n[[route]]\nmethod = \"get\"\npath = \"/a\"\n", 2, "upper-case"),
            ("default = \"deny\"\n[[route]]\nmethod = \"GET\"\npath = \"/a/**/b\"\n", 2, "last segment"),
            ("default = \"deny\"\n[[route]]\nmethod = \"GET\"\npath = \"/a*\"\n", 2, "stands alone"),
            ("default = \"deny\"\n[[route]]\nmethod = \"GET\"\npath = \"a\"\n", 2, "start with /"),
            ("default = \"deny\"\n[[route]]\nmethod = \"GET\"\npath = \"/a\"\npublic = true\nscopes = [\"trading\"]\n", 2, "public route takes no scopes"),
            ("default = \"deny\"\n[[route]]\nmethod = \"GET\"\npath = \"/a\"\nscope = [\"trading\"]\n", 5, "unknown field"),
            ("default = \"deny\"\n[[route]\n", 2, ""),
        ];
        for (text, line, reason) in cases {
            let error = RoutePolicy::parse(text).expect_err(text);
            assert_eq!(error.line, line, "{text:?}: {error}");
            assert!(error.reason.contains(reason), "{text:?}: {error}");
        }
    }
}
