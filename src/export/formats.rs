//! The four formats, each written in one pass over a [`Plan`] into any `io::Write`, through a
//! buffer flushed every [`FLUSH_AT`] bytes: a file, or the chunks of an HTTP response.
//!
//! Every format carries the same columns: for users the label (handle, else key), name, platform,
//! in/out degree and strength in the selection and the metrics asked for; for edges the weight
//! (selected interactions), the count of every selected kind and the first and last time. GEXF adds
//! the distinct times of each edge's interactions, as spells of a dynamic graph.

use super::plan::{Edge, Node, Plan};
use super::{Format, Table};
use crate::graph::{push_rfc3339, Kind};
use std::io::{self, Write};

/// Bytes buffered before they are handed to the sink.
const FLUSH_AT: usize = 256 << 10;
/// Users and edges written between two progress reports.
const REPORT_EVERY: u64 = 1 << 16;

/// Writes `plan` in `format` into `sink`; `progress` is told every so many users and edges written
/// (the total is users plus edges).
///
/// # Errors
/// The sink's: a full disk, a client gone.
pub fn write(
    plan: &Plan,
    format: Format,
    sink: &mut dyn Write,
    progress: &mut dyn FnMut(u64),
) -> io::Result<()> {
    let mut out = Out { buf: Vec::with_capacity(FLUSH_AT + (64 << 10)), sink, pending: 0, progress };
    match format {
        Format::Gexf => gexf(plan, &mut out)?,
        Format::Graphml => graphml(plan, &mut out)?,
        Format::Csv(Table::Nodes) => csv_nodes(plan, &mut out)?,
        Format::Csv(Table::Edges) => csv_edges(plan, &mut out)?,
        Format::Graphology => graphology(plan, &mut out)?,
    }
    out.finish()
}

/// A user's column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Col {
    Name,
    Platform,
    InDegree,
    OutDegree,
    InStrength,
    OutStrength,
    PageRank,
    Community,
    Core,
    Component,
}

/// A value of a column.
enum Value<'a> {
    Text(&'a str),
    Int(u64),
    Real(f64),
}

impl Col {
    fn name(self) -> &'static str {
        match self {
            Col::Name => "name",
            Col::Platform => "platform",
            Col::InDegree => "in_degree",
            Col::OutDegree => "out_degree",
            Col::InStrength => "in_strength",
            Col::OutStrength => "out_strength",
            Col::PageRank => "pagerank",
            Col::Community => "community",
            Col::Core => "core",
            Col::Component => "component",
        }
    }

    /// The type's name in GEXF and in GraphML.
    fn types(self) -> (&'static str, &'static str) {
        match self {
            Col::Name | Col::Platform => ("string", "string"),
            Col::InDegree | Col::OutDegree | Col::Community | Col::Core | Col::Component => {
                ("integer", "int")
            }
            Col::InStrength | Col::OutStrength => ("long", "long"),
            Col::PageRank => ("double", "double"),
        }
    }

    fn value(self, n: &Node) -> Option<Value<'_>> {
        Some(match self {
            Col::Name => Value::Text(n.name.as_deref()?),
            Col::Platform => Value::Text(n.platform()?),
            Col::InDegree => Value::Int(n.in_degree.into()),
            Col::OutDegree => Value::Int(n.out_degree.into()),
            Col::InStrength => Value::Int(n.in_strength),
            Col::OutStrength => Value::Int(n.out_strength),
            Col::PageRank => Value::Real(n.pagerank?),
            Col::Community => Value::Int(n.community?.into()),
            Col::Core => Value::Int(n.core?.into()),
            Col::Component => Value::Int(n.component?.into()),
        })
    }
}

/// The users' columns of a plan: the fixed ones, then the metrics asked for.
fn columns(plan: &Plan) -> Vec<Col> {
    let m = plan.request.metrics;
    let mut cols =
        vec![Col::Name, Col::Platform, Col::InDegree, Col::OutDegree, Col::InStrength, Col::OutStrength];
    for (wanted, col) in [
        (m.pagerank, Col::PageRank),
        (m.community, Col::Community),
        (m.core, Col::Core),
        (m.component, Col::Component),
    ] {
        if wanted {
            cols.push(col);
        }
    }
    cols
}

/// The kinds an edge has a count of: those selected.
fn kinds(plan: &Plan) -> Vec<Kind> {
    plan.request.sel.kinds.kinds()
}

/// How an XML format writes a user's or an edge's value.
#[derive(Clone, Copy)]
enum Xml {
    /// `<attvalue for="name" value="..."/>`
    Gexf,
    /// `<data key="name">...</data>`
    Graphml,
}

impl Xml {
    fn field(self, out: &mut Out, name: &str, value: impl FnOnce(&mut Out)) {
        let (open, mid, close) = match self {
            Xml::Gexf => ("<attvalue for=\"", "\" value=\"", "\"/>"),
            Xml::Graphml => ("<data key=\"", "\">", "</data>"),
        };
        out.s(open);
        out.s(name);
        out.s(mid);
        value(out);
        out.s(close);
    }

    /// A user's columns that have a value.
    fn columns(self, out: &mut Out, cols: &[Col], n: &Node) {
        for &c in cols {
            if let Some(v) = c.value(n) {
                self.field(out, c.name(), |out| out.value(v, Out::xml));
            }
        }
    }

    /// An edge's count per selected kind, first and last time.
    fn edge(self, out: &mut Out, kinds: &[Kind], e: &Edge) {
        let counts = e.counts();
        for k in kinds {
            self.field(out, k.as_str(), |out| out.int(counts[k.index()]));
        }
        self.field(out, "first_seen", |out| out.time(e.first()));
        self.field(out, "last_seen", |out| out.time(e.last()));
    }
}

/// The output buffer and where it goes.
struct Out<'a> {
    buf: Vec<u8>,
    sink: &'a mut dyn Write,
    /// Items written since the last progress report.
    pending: u64,
    progress: &'a mut dyn FnMut(u64),
}

impl Out<'_> {
    fn s(&mut self, s: &str) {
        self.buf.extend_from_slice(s.as_bytes());
    }

    fn int(&mut self, n: u64) {
        self.buf.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
    }

    fn real(&mut self, x: f64) {
        if x.is_finite() {
            self.buf.extend_from_slice(ryu::Buffer::new().format_finite(x).as_bytes());
        } else {
            self.buf.push(b'0');
        }
    }

    /// A column's value, its text written by `text` (the format's escaping).
    fn value(&mut self, v: Value, text: fn(&mut Self, &str)) {
        match v {
            Value::Text(t) => text(self, t),
            Value::Int(i) => self.int(i),
            Value::Real(x) => self.real(x),
        }
    }

    fn time(&mut self, t: u32) {
        push_rfc3339(t, &mut self.buf);
    }

    /// Text in an XML attribute or element: the five markup characters escaped, the white space
    /// an attribute would lose as character references, and what XML 1.0 cannot carry (other
    /// control characters, U+FFFE, U+FFFF) replaced by U+FFFD.
    fn xml(&mut self, s: &str) {
        let plain = |b: &u8| *b >= 0x20 && !matches!(b, b'&' | b'<' | b'>' | b'"' | b'\'' | 0xEF);
        if s.as_bytes().iter().all(plain) {
            return self.s(s);
        }
        for c in s.chars() {
            match c {
                '&' => self.s("&amp;"),
                '<' => self.s("&lt;"),
                '>' => self.s("&gt;"),
                '"' => self.s("&quot;"),
                '\'' => self.s("&apos;"),
                '\t' => self.s("&#9;"),
                '\n' => self.s("&#10;"),
                '\r' => self.s("&#13;"),
                c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => self.s("\u{FFFD}"),
                c => self.s(c.encode_utf8(&mut [0; 4])),
            }
        }
    }

    /// A JSON string, quoted.
    fn json(&mut self, s: &str) {
        // Writing into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut self.buf, s);
    }

    /// A CSV field (RFC 4180): quoted when it holds a separator, a quote, a line break or edge
    /// spaces. Text a spreadsheet would run as a formula (starting with `=`, `+`, `-` or `@`) is
    /// given a leading `'`, as OWASP advises, so that opening an export never runs what a user
    /// named themselves.
    fn csv(&mut self, s: &str) {
        let formula = s.starts_with(['=', '+', '-', '@']);
        let quote = formula
            || s.contains([',', '"', '\n', '\r'])
            || s.starts_with(char::is_whitespace)
            || s.ends_with(char::is_whitespace);
        if !quote {
            return self.s(s);
        }
        self.buf.push(b'"');
        if formula {
            self.buf.push(b'\'');
        }
        for c in s.chars() {
            if c == '"' {
                self.s("\"\"");
            } else {
                self.s(c.encode_utf8(&mut [0; 4]));
            }
        }
        self.buf.push(b'"');
    }

    /// A CSV header line: fixed columns, one per attribute, fixed columns (the attribute names are
    /// ours: nothing to quote).
    fn csv_header<'n>(&mut self, first: &str, names: impl Iterator<Item = &'n str>, last: &str) {
        self.s(first);
        for name in names {
            self.s(",");
            self.s(name);
        }
        self.s(last);
        self.s("\r\n");
    }

    /// One user or edge written: hands the buffer over when full, reports progress now and then.
    fn item(&mut self) -> io::Result<()> {
        self.pending += 1;
        if self.pending == REPORT_EVERY {
            (self.progress)(self.pending);
            self.pending = 0;
        }
        if self.buf.len() >= FLUSH_AT {
            self.sink.write_all(&self.buf)?;
            self.buf.clear();
        }
        Ok(())
    }

    fn finish(self) -> io::Result<()> {
        self.sink.write_all(&self.buf)?;
        self.sink.flush()?;
        (self.progress)(self.pending);
        Ok(())
    }
}

fn gexf(plan: &Plan, out: &mut Out) -> io::Result<()> {
    let cols = columns(plan);
    let kinds = kinds(plan);
    out.s("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<gexf xmlns=\"http://gexf.net/1.3\" \
           xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" \
           xsi:schemaLocation=\"http://gexf.net/1.3 http://gexf.net/1.3/gexf.xsd\" version=\"1.3\">\n");
    out.s("  <meta lastmodifieddate=\"");
    let today = chrono::Utc::now().timestamp();
    out.s(&crate::graph::rfc3339(today)[..10]);
    out.s("\">\n    <creator>tagflow ");
    out.s(env!("CARGO_PKG_VERSION"));
    out.s("</creator>\n    <description>");
    out.xml(&format!(
        "Who interacts with whom: {} (graph version {})",
        plan.request.describe(),
        plan.version
    ));
    out.s("</description>\n  </meta>\n");
    out.s("  <graph mode=\"dynamic\" defaultedgetype=\"directed\" timeformat=\"dateTime\" \
           timerepresentation=\"timestamp\" timezone=\"UTC\">\n");
    out.s("    <attributes class=\"node\" mode=\"static\">\n");
    for c in &cols {
        out.s("      <attribute id=\"");
        out.s(c.name());
        out.s("\" title=\"");
        out.s(c.name());
        out.s("\" type=\"");
        out.s(c.types().0);
        out.s("\"/>\n");
    }
    out.s("    </attributes>\n    <attributes class=\"edge\" mode=\"static\">\n");
    for k in &kinds {
        out.s("      <attribute id=\"");
        out.s(k.as_str());
        out.s("\" title=\"");
        out.s(k.as_str());
        out.s("\" type=\"integer\"/>\n");
    }
    out.s("      <attribute id=\"first_seen\" title=\"first_seen\" type=\"string\"/>\n");
    out.s("      <attribute id=\"last_seen\" title=\"last_seen\" type=\"string\"/>\n    </attributes>\n");
    out.s("    <nodes count=\"");
    out.int(plan.users().len() as u64);
    out.s("\">\n");
    for n in plan.users() {
        out.s("      <node id=\"");
        out.xml(&n.key);
        out.s("\" label=\"");
        out.xml(n.label());
        out.s("\"><attvalues>");
        Xml::Gexf.columns(out, &cols, n);
        out.s("</attvalues></node>\n");
        out.item()?;
    }
    out.s("    </nodes>\n    <edges count=\"");
    out.int(plan.edge_count() as u64);
    out.s("\">\n");
    for (id, e) in plan.edges().enumerate() {
        out.s("      <edge id=\"");
        out.int(id as u64);
        out.s("\" source=\"");
        out.xml(&e.from.key);
        out.s("\" target=\"");
        out.xml(&e.to.key);
        out.s("\" weight=\"");
        out.int(e.weight());
        out.s("\"><attvalues>");
        Xml::Gexf.edge(out, &kinds, &e);
        out.s("</attvalues><spells>");
        for t in e.times() {
            out.s("<spell timestamp=\"");
            out.time(t);
            out.s("\"/>");
        }
        out.s("</spells></edge>\n");
        out.item()?;
    }
    out.s("    </edges>\n  </graph>\n</gexf>\n");
    Ok(())
}

fn graphml(plan: &Plan, out: &mut Out) -> io::Result<()> {
    let cols = columns(plan);
    let kinds = kinds(plan);
    out.s("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<graphml xmlns=\"http://graphml.graphdrawing.org/xmlns\" \
           xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" \
           xsi:schemaLocation=\"http://graphml.graphdrawing.org/xmlns \
           http://graphml.graphdrawing.org/xmlns/1.0/graphml.xsd\">\n");
    let key = |out: &mut Out, id: &str, class: &str, ty: &str| {
        out.s("  <key id=\"");
        out.s(id);
        out.s("\" for=\"");
        out.s(class);
        out.s("\" attr.name=\"");
        out.s(id);
        out.s("\" attr.type=\"");
        out.s(ty);
        out.s("\"/>\n");
    };
    key(out, "label", "node", "string");
    for c in &cols {
        key(out, c.name(), "node", c.types().1);
    }
    key(out, "weight", "edge", "double");
    for k in &kinds {
        key(out, k.as_str(), "edge", "long");
    }
    key(out, "first_seen", "edge", "string");
    key(out, "last_seen", "edge", "string");
    out.s("  <graph id=\"G\" edgedefault=\"directed\">\n    <desc>");
    out.xml(&format!(
        "Who interacts with whom: {} (graph version {})",
        plan.request.describe(),
        plan.version
    ));
    out.s("</desc>\n");
    for n in plan.users() {
        out.s("    <node id=\"");
        out.xml(&n.key);
        out.s("\"><data key=\"label\">");
        out.xml(n.label());
        out.s("</data>");
        Xml::Graphml.columns(out, &cols, n);
        out.s("</node>\n");
        out.item()?;
    }
    for e in plan.edges() {
        out.s("    <edge source=\"");
        out.xml(&e.from.key);
        out.s("\" target=\"");
        out.xml(&e.to.key);
        out.s("\"><data key=\"weight\">");
        out.int(e.weight());
        out.s("</data>");
        Xml::Graphml.edge(out, &kinds, &e);
        out.s("</edge>\n");
        out.item()?;
    }
    out.s("  </graph>\n</graphml>\n");
    Ok(())
}

/// Gephi's spreadsheet importer reads `Id` and `Label` for nodes.
fn csv_nodes(plan: &Plan, out: &mut Out) -> io::Result<()> {
    let cols = columns(plan);
    out.csv_header("Id,Label", cols.iter().map(|c| c.name()), "");
    for n in plan.users() {
        out.csv(&n.key);
        out.s(",");
        out.csv(n.label());
        for &c in &cols {
            out.s(",");
            if let Some(v) = c.value(n) {
                out.value(v, Out::csv);
            }
        }
        out.s("\r\n");
        out.item()?;
    }
    Ok(())
}

/// Gephi's spreadsheet importer reads `Source`, `Target`, `Type` and `Weight` for edges.
fn csv_edges(plan: &Plan, out: &mut Out) -> io::Result<()> {
    let kinds = kinds(plan);
    out.csv_header("Source,Target,Type,Weight", kinds.iter().map(|k| k.as_str()), ",first_seen,last_seen");
    for e in plan.edges() {
        edge_row(out, &e, &kinds);
        out.item()?;
    }
    Ok(())
}

fn edge_row(out: &mut Out, e: &Edge, kinds: &[Kind]) {
    out.csv(&e.from.key);
    out.s(",");
    out.csv(&e.to.key);
    out.s(",Directed,");
    out.int(e.weight());
    let counts = e.counts();
    for k in kinds {
        out.s(",");
        out.int(counts[k.index()]);
    }
    out.s(",");
    out.time(e.first());
    out.s(",");
    out.time(e.last());
    out.s("\r\n");
}

/// graphology's serialization: `{attributes, options, nodes: [{key, attributes}], edges: [{key,
/// source, target, attributes}]}`.
fn graphology(plan: &Plan, out: &mut Out) -> io::Result<()> {
    let cols = columns(plan);
    let kinds = kinds(plan);
    out.s("{\"attributes\":{\"name\":");
    out.json(&format!("tagflow: {}", plan.request.describe()));
    out.s(",\"version\":");
    out.int(plan.version);
    out.s("},\"options\":{\"type\":\"directed\",\"multi\":false,\"allowSelfLoops\":true},\n\"nodes\":[");
    for (i, n) in plan.users().iter().enumerate() {
        if i > 0 {
            out.s(",");
        }
        out.s("\n{\"key\":");
        out.json(&n.key);
        out.s(",\"attributes\":{\"label\":");
        out.json(n.label());
        for &c in &cols {
            let Some(v) = c.value(n) else { continue };
            out.s(",\"");
            out.s(c.name());
            out.s("\":");
            out.value(v, Out::json);
        }
        out.s("}}");
        out.item()?;
    }
    out.s("\n],\n\"edges\":[");
    for (i, e) in plan.edges().enumerate() {
        if i > 0 {
            out.s(",");
        }
        out.s("\n{\"key\":\"e");
        out.int(i as u64);
        out.s("\",\"source\":");
        out.json(&e.from.key);
        out.s(",\"target\":");
        out.json(&e.to.key);
        out.s(",\"attributes\":{\"weight\":");
        out.int(e.weight());
        let counts = e.counts();
        for k in &kinds {
            out.s(",\"");
            out.s(k.as_str());
            out.s("\":");
            out.int(counts[k.index()]);
        }
        out.s(",\"first_seen\":\"");
        out.time(e.first());
        out.s("\",\"last_seen\":\"");
        out.time(e.last());
        out.s("\"}}");
        out.item()?;
    }
    out.s("\n]}\n");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written(f: impl FnOnce(&mut Out)) -> String {
        let mut sink = Vec::new();
        let mut progress = |_| {};
        let mut out = Out { buf: Vec::new(), sink: &mut sink, pending: 0, progress: &mut progress };
        f(&mut out);
        out.finish().unwrap();
        String::from_utf8(sink).unwrap()
    }

    #[test]
    fn xml_text_is_escaped_and_what_xml_cannot_carry_is_replaced() {
        assert_eq!(written(|o| o.xml("plain ñ")), "plain ñ");
        assert_eq!(
            written(|o| o.xml("<img src=x onerror=\"a('&')\">")),
            "&lt;img src=x onerror=&quot;a(&apos;&amp;&apos;)&quot;&gt;"
        );
        assert_eq!(
            written(|o| o.xml("a\tb\nc\u{1}d\u{FFFF}e\u{FEFF}")),
            "a&#9;b&#10;c\u{FFFD}d\u{FFFD}e\u{FEFF}"
        );
    }

    #[test]
    fn csv_fields_are_quoted_and_formulas_neutralised() {
        assert_eq!(written(|o| o.csv("alice")), "alice");
        assert_eq!(written(|o| o.csv("a,b \"c\"")), "\"a,b \"\"c\"\"\"");
        assert_eq!(written(|o| o.csv("=HYPERLINK(\"x\")")), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(written(|o| o.csv(" padded")), "\" padded\"");
    }

    #[test]
    fn numbers_and_times_are_written_as_their_formats_read_them() {
        assert_eq!(written(|o| o.int(12_345)), "12345");
        assert_eq!(written(|o| o.real(0.25)), "0.25");
        assert_eq!(written(|o| o.real(1e-7)), "1e-7");
        assert_eq!(written(|o| o.time(1_617_278_400)), "2021-04-01T12:00:00Z");
    }
}
