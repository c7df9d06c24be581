//! Diagnostics: every problem `fleetwall check` can report, with its location, the
//! offending value and a hint.
//!
//! Validation never stops at the first problem; it pushes a `Diagnostic` and goes on, so a
//! user fixes a file in one round. Each kind of problem has a `DiagCode` with a stable
//! kebab-case name (shown in output and JSON, and what tests assert on).

use crate::yaml::Span;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// How bad a diagnostic is: errors make `check` exit 1, warnings do not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The fleet cannot be compiled.
    Error,
    /// The fleet compiles, but probably not as intended.
    Warning,
}

macro_rules! codes {
    ($($(#[$doc:meta])* $variant:ident = $name:literal,)*) => {
        /// The kind of a diagnostic. The names are stable: scripts and tests match on them.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum DiagCode { $($(#[$doc])* $variant,)* }
        impl DiagCode {
            /// The stable kebab-case name.
            pub fn as_str(self) -> &'static str {
                match self { $(DiagCode::$variant => $name,)* }
            }
        }
    };
}

codes! {
    /// The file is not valid YAML, or holds more than one document.
    Syntax = "syntax",
    /// YAML aliases that expand the document past its node budget ("billion laughs").
    AliasExpansion = "alias-expansion",
    /// Lists and mappings nested deeper than `yaml::MAX_DEPTH`.
    NestingDepth = "nesting-depth",
    /// A key the format does not define (a "did you mean" is offered when one is close).
    UnknownKey = "unknown-key",
    /// A key written twice in one mapping.
    DuplicateKey = "duplicate-key",
    /// A value of the wrong type (a list where a string is expected, ...).
    Type = "type",
    /// A required key is missing.
    Missing = "missing",
    /// `version` is not 1.
    Version = "version",
    /// Not an IP address.
    InvalidAddress = "invalid-address",
    /// Not a CIDR.
    InvalidCidr = "invalid-cidr",
    /// An address or network with whitespace around it (it used to be trimmed silently).
    SurroundingWhitespace = "surrounding-whitespace",
    /// An IPv4 octet or prefix length with leading zeros: octal to some tools, decimal to
    /// others; the hint gives the decimal reading.
    LeadingZeros = "leading-zeros",
    /// An IPv4-mapped IPv6 address or network (`::ffff:10.0.0.1`), which no IPv4 packet
    /// matches; the hint gives the IPv4 form.
    Ipv4Mapped = "ipv4-mapped",
    /// A CIDR with bits set after the prefix (`10.0.0.5/8`); the hint gives the network.
    HostBits = "host-bits",
    /// A port or port-like number outside its allowed range.
    PortRange = "port-range",
    /// `base_port` outside 10000–30000.
    BasePortRange = "base-port-range",
    /// More than 8000 `ip_filter` entries.
    IpFilterTooLong = "ip-filter-too-long",
    /// An `ip_filter` `network` longer than 43 characters, or a description over 1024.
    FieldTooLong = "field-too-long",
    /// Free text (an `ip_filter` description) holding a control character such as a line
    /// break: it would end the comment it is rendered into.
    ControlCharacter = "control-character",
    /// A node address that is a management gateway's (error), or a VPC network that
    /// covers a gateway (warning).
    GatewayAddress = "gateway-address",
    /// A peering CIDR inside (or around) the VPC's own `network_cidr`.
    PeeringOverlap = "peering-overlap",
    /// An empty `ip_filter`: every client is locked out (warning).
    EmptyIpFilter = "empty-ip-filter",
    /// A service type the catalog does not know.
    UnknownServiceType = "unknown-service-type",
    /// A component the service type does not have, or not for that access kind.
    UnknownComponent = "unknown-component",
    /// A `vpc:` naming no VPC of the project.
    UnknownVpc = "unknown-vpc",
    /// A cloud not starting with a known provider prefix.
    UnknownCloud = "unknown-cloud",
    /// A cloud whose region the list of known regions lacks (warning; "did you mean").
    UnknownRegion = "unknown-region",
    /// A service and its VPC in different clouds.
    CloudMismatch = "cloud-mismatch",
    /// A node name used twice in the fleet.
    DuplicateNode = "duplicate-node",
    /// An address used twice in the fleet.
    DuplicateAddress = "duplicate-address",
    /// A node without the addresses its deployment needs.
    NodeAddresses = "node-addresses",
    /// A VPC node's private address outside the VPC's network.
    AddressOutsideVpc = "address-outside-vpc",
    /// `privatelink_access` or a `privatelink` resource where it cannot work.
    Privatelink = "privatelink",
    /// `public_access` on a service whose nodes have no public address.
    PublicAccessWithoutPublicAddress = "public-access-without-public-address",
    /// A port pin naming no listener, or on a listener that cannot be pinned.
    UnknownListener = "unknown-listener",
    /// Two listeners of one node on the same port.
    PortCollision = "port-collision",
    /// Management gateways missing or invalid, or platform ports clashing.
    Platform = "platform",
    /// A BYOC network that does not hold together (subnets, bastions, workloads, customer networks).
    Byoc = "byoc",
    /// An ECE project or service that would expose or reach what ECE forbids.
    Ece = "ece",
    /// A `tests:` entry that refers to nothing, or an assertion that fails.
    Test = "test",
    /// An `ip_filter` entry covered by another entry (warning).
    CoveredEntry = "covered-entry",
    /// An `ip_filter` entry that can never reach the service (warning).
    UnreachableEntry = "unreachable-entry",
    /// The management invariant (contract point 9) does not hold on a node.
    ManagementInvariant = "management-invariant",
    /// A catalog file that is not valid.
    Catalog = "catalog",
    /// A deployment `kind` the deployment catalog does not have.
    UnknownDeploymentKind = "unknown-deployment-kind",
    /// A zone the deployment's kind does not have, or one without networks.
    UnknownZone = "unknown-zone",
    /// A subsystem the deployment's kind does not have.
    UnknownSubsystem = "unknown-subsystem",
    /// An option the deployment's kind does not have.
    UnknownOption = "unknown-option",
    /// A deployment without clusters, or a cluster without servers.
    EmptyCluster = "empty-cluster",
    /// A server address outside its cluster's zone.
    ServerOutsideZone = "server-outside-zone",
    /// Two zones of a deployment whose networks overlap.
    ZoneOverlap = "zone-overlap",
}

/// One problem, located in the source.
#[derive(Debug, Clone, PartialEq)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// What kind of problem.
    pub code: DiagCode,
    /// One sentence saying what is wrong.
    pub message: String,
    /// Where it was written (none for problems of the file as a whole).
    pub span: Option<Span>,
    /// The offending value as written.
    pub value: Option<String>,
    /// How to fix it.
    pub hint: Option<String>,
    /// The document path of what it is about (`projects.acme.services.pg.nodes.pg-1`),
    /// for a fleet held as a document (`doc::FleetDoc`).
    pub path: Option<String>,
}

impl Diagnostic {
    /// A new error.
    pub fn error(code: DiagCode, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Error,
            code,
            message: message.into(),
            span: None,
            value: None,
            hint: None,
            path: None,
        }
    }

    /// A new warning.
    pub fn warning(code: DiagCode, message: impl Into<String>) -> Self {
        Diagnostic { severity: Severity::Warning, ..Diagnostic::error(code, message) }
    }

    /// Locates the diagnostic.
    pub fn at(mut self, span: Span) -> Self {
        self.span = Some(span);
        self
    }

    /// Records the offending value.
    pub fn value(mut self, v: impl Into<String>) -> Self {
        self.value = Some(v.into());
        self
    }

    /// Adds a hint.
    pub fn hint(mut self, h: impl Into<String>) -> Self {
        self.hint = Some(h.into());
        self
    }
}

/// The diagnostics of one run, in the order they were found.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Diagnostics {
    /// All diagnostics, errors and warnings.
    pub items: Vec<Diagnostic>,
}

impl Diagnostics {
    /// Records a diagnostic.
    pub fn push(&mut self, d: Diagnostic) {
        self.items.push(d);
    }

    /// Whether any error (not warning) was recorded.
    pub fn has_errors(&self) -> bool {
        self.items.iter().any(|d| d.severity == Severity::Error)
    }

    /// The number of errors.
    pub fn errors(&self) -> usize {
        self.items.iter().filter(|d| d.severity == Severity::Error).count()
    }

    /// The number of warnings.
    pub fn warnings(&self) -> usize {
        self.items.len() - self.errors()
    }

    /// Sorts by position, so output reads top to bottom like the file.
    pub fn sort(&mut self) {
        self.items.sort_by_key(|d| (d.span.map(|s| s.start), d.severity, d.code));
    }
}

/// How many warnings of one code `render_human` shows in full before it sums up the rest.
pub const WARNINGS_SHOWN_PER_CODE: usize = 5;

/// The widest part of a source line shown under a diagnostic; longer lines are cut
/// around the column, as rustc does.
const SOURCE_WINDOW: usize = 100;

/// Which diagnostics a terminal rendering shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Show {
    /// Every error; the first `WARNINGS_SHOWN_PER_CODE` warnings of each code, then one
    /// line with how many more there are.
    #[default]
    Grouped,
    /// Everything.
    All,
    /// Errors only.
    ErrorsOnly,
}

/// Renders diagnostics for a terminal: `file:line:col`, the source line (cut around the
/// column when long) with a caret under the value, the value and the hint.
pub fn render_human(diags: &[Diagnostic], file: &str, src: &str) -> String {
    render_human_with(diags, file, src, Show::Grouped)
}

/// `render_human` with an explicit choice of what to show.
pub fn render_human_with(diags: &[Diagnostic], file: &str, src: &str, show: Show) -> String {
    let lines: Vec<&str> = src.lines().collect();
    let mut out = String::new();
    let mut shown: BTreeMap<DiagCode, usize> = BTreeMap::new();
    let mut hidden: BTreeMap<DiagCode, usize> = BTreeMap::new();
    for d in diags {
        if d.severity == Severity::Warning {
            let n = shown.entry(d.code).or_default();
            let over = match show {
                Show::All => false,
                Show::ErrorsOnly => true,
                Show::Grouped => *n >= WARNINGS_SHOWN_PER_CODE,
            };
            if over {
                *hidden.entry(d.code).or_default() += 1;
                continue;
            }
            *n += 1;
        }
        let sev = match d.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        let _ = writeln!(out, "{sev}[{}]: {}", d.code.as_str(), d.message);
        match d.span.filter(|s| s.start.line > 0) {
            Some(mut span) => {
                span.start.col = span.start.col.max(1);
                let _ = writeln!(out, "  --> {file}:{}:{}", span.start.line, span.start.col);
                if let Some(line) = lines.get(span.start.line as usize - 1) {
                    let n = span.start.line.to_string();
                    let pad = " ".repeat(n.len());
                    let width = if span.end.line == span.start.line && span.end.col > span.start.col {
                        (span.end.col - span.start.col) as usize
                    } else {
                        line.chars().count().saturating_sub(span.start.col as usize - 1).max(1)
                    };
                    let (text, col) = window(line, span.start.col as usize - 1);
                    let _ = writeln!(out, "{pad} |");
                    let _ = writeln!(out, "{n} | {text}");
                    let _ = writeln!(out, "{pad} | {}{}", " ".repeat(col), "^".repeat(width.clamp(1, 80)));
                }
            }
            None => {
                let _ = writeln!(out, "  --> {file}");
            }
        }
        if let Some(v) = &d.value {
            let _ = writeln!(out, "   = value: {}", cut(v, 200));
        }
        if let Some(h) = &d.hint {
            let _ = writeln!(out, "   = hint: {h}");
        }
        out.push('\n');
    }
    if !hidden.is_empty() {
        let list: Vec<String> = hidden.iter().map(|(c, n)| format!("{n} more `{}`", c.as_str())).collect();
        let how = if show == Show::ErrorsOnly { "" } else { " (`--all-warnings` lists them)" };
        let _ = writeln!(out, "... and {} warnings not shown{how}\n", list.join(", "));
    }
    out
}

/// The part of `line` shown around the 0-based character column `col`, and the column
/// of the caret in it.
fn window(line: &str, col: usize) -> (String, usize) {
    let chars: Vec<char> = line.chars().collect();
    if chars.len() <= SOURCE_WINDOW {
        return (line.to_string(), col);
    }
    let start = col.saturating_sub(SOURCE_WINDOW / 2).min(chars.len().saturating_sub(SOURCE_WINDOW));
    let end = (start + SOURCE_WINDOW).min(chars.len());
    let mut text = String::new();
    if start > 0 {
        text.push_str("...");
    }
    text.extend(&chars[start..end]);
    if end < chars.len() {
        text.push_str("...");
    }
    (text, col - start + if start > 0 { 3 } else { 0 })
}

/// `s`, cut to `max` characters with `...` after.
fn cut(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s.to_string(),
    }
}

/// The JSON shape of one diagnostic (`fleetwall check --format json`).
#[derive(Serialize)]
pub struct DiagnosticJson<'a> {
    /// `error` or `warning`.
    pub severity: Severity,
    /// The stable code.
    pub code: &'static str,
    /// The message.
    pub message: &'a str,
    /// The file.
    pub file: &'a str,
    /// 1-based line, if located.
    pub line: Option<u32>,
    /// 1-based column, if located.
    pub col: Option<u32>,
    /// The offending value.
    pub value: Option<&'a str>,
    /// The hint.
    pub hint: Option<&'a str>,
}

impl<'a> DiagnosticJson<'a> {
    /// The JSON view of `d`, found in `file`.
    pub fn new(d: &'a Diagnostic, file: &'a str) -> Self {
        DiagnosticJson {
            severity: d.severity,
            code: d.code.as_str(),
            message: &d.message,
            file,
            line: d.span.map(|s| s.start.line),
            col: d.span.map(|s| s.start.col),
            value: d.value.as_deref(),
            hint: d.hint.as_deref(),
        }
    }
}

/// The closest candidate to `word` by edit distance, when close enough to be a typo.
pub fn did_you_mean<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let limit = (word.chars().count() / 3).max(1);
    candidates.into_iter().map(|c| (edit_distance(word, c), c)).filter(|(d, _)| *d <= limit).min().map(|(_, c)| c)
}

/// Optimal-string-alignment distance: edits plus adjacent transpositions (`kafak` → `kafka` is 1).
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            d[i][j] = (d[i - 1][j] + 1).min(d[i][j - 1] + 1).min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d[i][j] = d[i][j].min(d[i - 2][j - 2] + 1);
            }
        }
    }
    d[a.len()][b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_diagnostic_on_a_100_kb_line_printed_the_whole_line() {
        let line = format!("a: [{}bad, x]", "x, ".repeat(30_000));
        let col = line.find("bad").unwrap() as u32 + 1;
        let d = Diagnostic::warning(DiagCode::Type, "m")
            .at(Span { start: crate::yaml::Pos { line: 1, col }, end: crate::yaml::Pos { line: 1, col: col + 3 } });
        let out = render_human(&[d], "f.yaml", &line);
        assert!(out.len() < 400, "{} bytes", out.len());
        let shown = out.lines().find(|l| l.starts_with("1 | ")).unwrap();
        let caret = out.lines().find(|l| l.contains('^')).unwrap();
        // The caret still points at the value inside the window.
        let at = caret.find('^').unwrap();
        assert_eq!(&shown[at..at + 3], "bad", "{shown}\n{caret}");
    }

    use crate::yaml::Pos;

    #[test]
    fn suggestions_need_to_be_close() {
        assert_eq!(did_you_mean("ip_filer", ["ip_filter", "public_access"]), Some("ip_filter"));
        assert_eq!(did_you_mean("zzz", ["ip_filter"]), None);
    }

    #[test]
    fn human_rendering_shows_location_value_and_hint() {
        let d = Diagnostic::error(DiagCode::InvalidCidr, "bad")
            .at(Span { start: Pos { line: 2, col: 4 }, end: Pos { line: 2, col: 7 } })
            .value("x/y")
            .hint("write a CIDR");
        let s = render_human(&[d], "f.yaml", "a:\n - x/y\n");
        assert!(s.contains("error[invalid-cidr]: bad"), "{s}");
        assert!(s.contains("--> f.yaml:2:4"), "{s}");
        assert!(s.contains("2 |  - x/y\n  |    ^^^"), "{s}");
        assert!(s.contains("= value: x/y") && s.contains("= hint: write a CIDR"), "{s}");
    }
}
