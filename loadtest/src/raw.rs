//! The `--raw` file: every request a run made, with the timestamps its figures are computed from, so that
//! `standin-load merge` can compute one exact report over several harness instances (percentiles of the
//! union of samples, not averages of percentiles).
//!
//! # Format (version 1)
//!
//! JSON Lines, UTF-8, one object per line:
//!
//! 1. **Header** (first line): `{"format":"standin-load-raw","version":1,…}` with the run's metadata:
//!    `harness` (`standin-load <version>`), `start_unix_ns` (wall-clock time of the run's origin, the 0 of
//!    every offset below), `url`, `compare` (or null), `endpoint` (`chat` | `completions`), `stream`,
//!    `model`, `max_tokens`, `open_loop`, `mode` (as the report prints it), `concurrency`, `rate`,
//!    `arrival`, `max_concurrency`, `duration_s`, `requests`, `warmup_ns` (end of warm-up, as an offset),
//!    `seed` (`--seed` as given), `effective_seed` (plus the instance index: what the run used),
//!    `instance`, `instances` (or null), `disconnect`, `timeout_s`.
//! 2. **Records**, one per request taken up, warm-up included (flagged), in completion order. Absolute
//!    times are whole nanoseconds from the run's origin on the monotonic clock; relative ones are signed
//!    nanoseconds after `s`. A key whose value is absent, 0 or false is left out.
//!
//!    | key | meaning |
//!    |-----|---------|
//!    | `t` | target: 0 = `--url`, 1 = `--compare` |
//!    | `w` | true: sent during warm-up (excluded from the figures) |
//!    | `b` | absolute: taken up by the runner, before any connect (in flight from here to `s + e`) |
//!    | `i` | absolute: when the schedule wanted it sent (open loop); closed loop: when its user took it up, just before `b` |
//!    | `s` | absolute: when its first byte was written |
//!    | `h` | relative: response head complete |
//!    | `fb` | relative: first body byte |
//!    | `fc` | relative: first SSE event with non-empty `choices` (vLLM's TTFT rule) |
//!    | `ft` | relative: first SSE event with non-empty content (the strict TTFT rule) |
//!    | `ev` | content events: the first relative to `s`, each next one relative to the one before (ITL samples) |
//!    | `l` | relative: last token (E2EL ends here; non-streaming: end of the body) |
//!    | `d` | relative: `data: [DONE]` |
//!    | `e` | relative: the exchange ended (success or not) |
//!    | `ce` | events that arrived in the same read as the one before |
//!    | `ot`, `pt` | output and prompt tokens |
//!    | `u` | true: `ot` came from a usage object |
//!    | `by` | response bytes |
//!    | `f` | failure kind as the report names it (`timeout`, `http_503`, …); absent on success |
//!    | `a` | true: abandoned by the client (`--disconnect`): neither success nor failure |
//!
//!    TTFT = `fc` (or `ft`), E2EL = `l` (or `e`), send lag = `s - i`, the `_co` figures add the send lag,
//!    ITL = `ev[1..]`, TPOT = (E2EL - TTFT) / (`ot` - 1): exactly what a single run computes.
//! 3. **Trailer** (last line, starting `{"trailer":true`): `records` (how many record lines precede it: a
//!    file cut short is refused), `sent` (requests taken up, counted apart from the records),
//!    `connections` (opened), `peak_in_flight`, `measured_ns` (the run's measured window), and when the
//!    core probe ran (`stalls.rs`) `stall_threshold_ns` and `stalls`, each `[due, late by, core]` with `due`
//!    absolute; both optional, so files written before them still read.

use std::io::{self, BufRead, BufWriter, Write};
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::record::{Failure, Record};
use crate::stalls::Stall;

/// The header's `format`.
pub const FORMAT: &str = "standin-load-raw";
/// The header's `version`: bumped on any change a reader must know about.
pub const VERSION: u64 = 1;

/// The first line: what the run was.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Header {
    /// Always [`FORMAT`].
    pub format: String,
    /// [`VERSION`] when written.
    pub version: u64,
    /// `standin-load <crate version>`.
    pub harness: String,
    /// Wall-clock time of offset 0, in nanoseconds since the Unix epoch.
    pub start_unix_ns: u64,
    /// Server A.
    pub url: String,
    /// Server B, with `--compare`.
    pub compare: Option<String>,
    /// `chat` or `completions`.
    pub endpoint: String,
    /// Whether requests streamed.
    pub stream: bool,
    /// Model name sent.
    pub model: String,
    /// `max_tokens` sent.
    pub max_tokens: Option<u64>,
    /// Open loop (`--rate`).
    pub open_loop: bool,
    /// The load shape as the report prints it.
    pub mode: String,
    /// Closed loop: virtual users.
    pub concurrency: Option<usize>,
    /// Open loop: requests per second.
    pub rate: Option<f64>,
    /// Open-loop arrival process.
    pub arrival: String,
    /// Open loop: cap on requests in flight.
    pub max_concurrency: Option<usize>,
    /// `--duration` in seconds.
    pub duration_s: Option<f64>,
    /// `--requests`.
    pub requests: Option<usize>,
    /// End of warm-up, as an offset in nanoseconds.
    pub warmup_ns: u64,
    /// `--seed` as given.
    pub seed: u64,
    /// The seed this instance used (`seed + instance`).
    pub effective_seed: u64,
    /// This instance's index.
    pub instance: u64,
    /// How many instances there were, if said.
    pub instances: Option<u64>,
    /// `--disconnect` probability.
    pub disconnect: f64,
    /// Per-request timeout in seconds.
    pub timeout_s: f64,
}

/// The last line: totals that let a reader check the file is whole.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trailer {
    /// Always true: marks the line.
    pub trailer: bool,
    /// Record lines in the file.
    pub records: u64,
    /// Requests taken up (a counter of its own, so a lost record shows).
    pub sent: u64,
    /// Connections opened.
    pub connections: u64,
    /// Most requests in flight at once.
    pub peak_in_flight: u64,
    /// The run's measured window in nanoseconds.
    pub measured_ns: u64,
    /// `--stall-ms` in nanoseconds; 0 or absent: no core probe ran (files from before it read so).
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub stall_threshold_ns: u64,
    /// Every late wake-up of the core probes as `[due, late by, core]`, nanoseconds on the run's clock.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stalls: Vec<[u64; 3]>,
}

/// A stall as a trailer entry.
pub fn stall_entry(s: &Stall) -> [u64; 3] {
    [
        s.at.as_nanos() as u64,
        s.len.as_nanos() as u64,
        s.cpu as u64,
    ]
}

/// A trailer entry as a stall, `by` later (merge puts every file on the earliest file's clock).
pub fn stall_from(e: &[u64; 3], by: Duration) -> Stall {
    Stall {
        at: Duration::from_nanos(e[0]) + by,
        len: Duration::from_nanos(e[1]),
        cpu: e[2] as usize,
    }
}

/// One record line; see the module doc for the keys.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    #[serde(default, skip_serializing_if = "is_zero_u8")]
    t: u8,
    #[serde(default, skip_serializing_if = "is_false")]
    w: bool,
    b: u64,
    i: u64,
    s: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    h: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    fb: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    fc: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ft: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    ev: Vec<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    l: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    d: Option<i64>,
    e: i64,
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    ce: u32,
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    ot: u64,
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pt: u64,
    #[serde(default, skip_serializing_if = "is_false")]
    u: bool,
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    by: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    f: Option<String>,
    #[serde(default, skip_serializing_if = "is_false")]
    a: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}
fn is_zero_u8(n: &u8) -> bool {
    *n == 0
}
fn is_zero_u32(n: &u32) -> bool {
    *n == 0
}
fn is_zero_u64(n: &u64) -> bool {
    *n == 0
}

/// Whole nanoseconds (a run would need 584 years to overflow).
fn ns(d: Duration) -> u64 {
    d.as_nanos() as u64
}

/// `t - base` in signed nanoseconds.
fn rel(t: Duration, base: Duration) -> i64 {
    ns(t) as i64 - ns(base) as i64
}

/// `base + delta`, never before 0.
fn at(base: u64, delta: i64) -> Duration {
    Duration::from_nanos(base.saturating_add_signed(delta))
}

impl Line {
    fn from_record(r: &Record) -> Line {
        let s = r.sent;
        let mut previous = s;
        let ev = r
            .content_events
            .iter()
            .map(|&t| {
                let gap = rel(t, previous);
                previous = t;
                gap
            })
            .collect();
        Line {
            t: r.target,
            w: r.warmup,
            b: ns(r.began),
            i: ns(r.intended),
            s: ns(s),
            h: r.head.map(|t| rel(t, s)),
            fb: r.first_byte.map(|t| rel(t, s)),
            fc: r.first_choice.map(|t| rel(t, s)),
            ft: r.first_content.map(|t| rel(t, s)),
            ev,
            l: r.last_token.map(|t| rel(t, s)),
            d: r.done.map(|t| rel(t, s)),
            e: rel(r.end, s),
            ce: r.coalesced_events,
            ot: r.output_tokens,
            pt: r.prompt_tokens,
            u: r.usage_reported,
            by: r.bytes,
            f: r.failure.as_ref().map(Failure::to_string),
            a: r.abandoned,
        }
    }

    fn into_record(self) -> Result<Record, String> {
        let s = self.s;
        let mut previous = s;
        let content_events = self
            .ev
            .iter()
            .map(|&gap| {
                let t = at(previous, gap);
                previous = ns(t);
                t
            })
            .collect();
        let failure = self.f.as_deref().map(str::parse).transpose()?;
        Ok(Record {
            target: self.t,
            warmup: self.w,
            began: Duration::from_nanos(self.b),
            intended: Duration::from_nanos(self.i),
            sent: Duration::from_nanos(s),
            head: self.h.map(|d| at(s, d)),
            first_byte: self.fb.map(|d| at(s, d)),
            first_choice: self.fc.map(|d| at(s, d)),
            first_content: self.ft.map(|d| at(s, d)),
            content_events,
            last_token: self.l.map(|d| at(s, d)),
            done: self.d.map(|d| at(s, d)),
            end: at(s, self.e),
            coalesced_events: self.ce,
            output_tokens: self.ot,
            prompt_tokens: self.pt,
            usage_reported: self.u,
            bytes: self.by,
            failure,
            abandoned: self.a,
        })
    }
}

/// Writes a whole raw file: header, every record, trailer.
pub fn write_to(
    out: impl Write,
    header: &Header,
    records: &[Record],
    trailer: &Trailer,
) -> io::Result<()> {
    let mut out = BufWriter::with_capacity(1 << 16, out);
    serde_json::to_writer(&mut out, header)?;
    out.write_all(b"\n")?;
    for rec in records {
        serde_json::to_writer(&mut out, &Line::from_record(rec))?;
        out.write_all(b"\n")?;
    }
    serde_json::to_writer(&mut out, trailer)?;
    out.write_all(b"\n")?;
    out.flush()
}

/// [`write_to`] a file at `path`.
pub fn write(
    path: &Path,
    header: &Header,
    records: &[Record],
    trailer: &Trailer,
) -> io::Result<()> {
    write_to(std::fs::File::create(path)?, header, records, trailer)
}

/// A raw file read back.
#[derive(Debug)]
pub struct RawFile {
    /// Its first line.
    pub header: Header,
    /// Its records, offsets from its own origin.
    pub records: Vec<Record>,
    /// Its last line.
    pub trailer: Trailer,
}

/// Reads a whole raw file from `input`; `name` prefixes error messages. Refuses another format or version,
/// a malformed line, and a file without its trailer or with a record count that disagrees with it.
pub fn read_from(input: impl BufRead, name: &str) -> Result<RawFile, String> {
    let mut lines = input.lines().enumerate();
    let err = |line: usize, what: &dyn std::fmt::Display| format!("{name}:{}: {what}", line + 1);
    let header_line = match lines.next() {
        Some((_, line)) => line.map_err(|e| err(0, &e))?,
        None => return Err(format!("{name}: empty file, not a --raw file")),
    };
    let header: Header = serde_json::from_str(&header_line)
        .map_err(|e| err(0, &format!("not a standin-load --raw header ({e})")))?;
    if header.format != FORMAT || header.version != VERSION {
        let (format, version) = (&header.format, header.version);
        return Err(format!(
            "{name}: {format} version {version}; this harness reads {FORMAT} version {VERSION}"
        ));
    }
    let mut records = Vec::new();
    let mut trailer = None;
    for (n, line) in lines {
        let line = line.map_err(|e| err(n, &e))?;
        if line.trim().is_empty() {
            continue;
        }
        if trailer.is_some() {
            return Err(err(n, &"a line after the trailer"));
        }
        if line.starts_with("{\"trailer\"") {
            trailer = Some(serde_json::from_str::<Trailer>(&line).map_err(|e| err(n, &e))?);
            continue;
        }
        let parsed: Line = serde_json::from_str(&line).map_err(|e| err(n, &e))?;
        records.push(parsed.into_record().map_err(|e| err(n, &e))?);
    }
    let trailer = trailer.ok_or_else(|| {
        format!("{name}: no trailer line: the run did not finish writing it (cut short?)")
    })?;
    if trailer.records != records.len() as u64 {
        return Err(format!(
            "{name}: the trailer counts {} records, the file has {}",
            trailer.records,
            records.len()
        ));
    }
    Ok(RawFile {
        header,
        records,
        trailer,
    })
}

/// [`read_from`] the file at `path`.
pub fn read(path: &Path) -> Result<RawFile, String> {
    let name = path.display().to_string();
    let file = std::fs::File::open(path).map_err(|e| format!("{name}: {e}"))?;
    read_from(io::BufReader::with_capacity(1 << 16, file), &name)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::report::tests::request;

    pub(crate) fn header(start_unix_ns: u64, instance: u64) -> Header {
        Header {
            format: FORMAT.into(),
            version: VERSION,
            harness: "standin-load 0.1.0".into(),
            start_unix_ns,
            url: "http://127.0.0.1:8000".into(),
            compare: None,
            endpoint: "chat".into(),
            stream: true,
            model: "mock-gpt-model".into(),
            max_tokens: None,
            open_loop: false,
            mode: "closed c=4".into(),
            concurrency: Some(4),
            rate: None,
            arrival: "poisson".into(),
            max_concurrency: None,
            duration_s: Some(1.0),
            requests: None,
            warmup_ns: 0,
            seed: 0,
            effective_seed: instance,
            instance,
            instances: Some(2),
            disconnect: 0.0,
            timeout_s: 60.0,
        }
    }

    pub(crate) fn trailer(records: &[Record]) -> Trailer {
        Trailer {
            trailer: true,
            records: records.len() as u64,
            sent: records.len() as u64,
            connections: 1,
            peak_in_flight: 1,
            measured_ns: 0,
            stall_threshold_ns: 0,
            stalls: Vec::new(),
        }
    }

    fn bytes(header: &Header, records: &[Record]) -> Vec<u8> {
        let mut out = Vec::new();
        write_to(&mut out, header, records, &trailer(records)).unwrap();
        out
    }

    /// Every field of `Record`, compared through Debug (Record has no PartialEq: tests only).
    fn same(a: &[Record], b: &[Record]) {
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(b) {
            assert_eq!(format!("{x:?}"), format!("{y:?}"));
        }
    }

    #[test]
    fn round_trip_keeps_every_field_to_the_nanosecond() {
        let ns = Duration::from_nanos;
        let mut records: Vec<Record> = (0..20).map(request).collect();
        records[1].failure = Some(Failure::Status(503));
        records[2].failure = Some(Failure::Timeout);
        records[3].abandoned = true;
        records[4].warmup = true;
        records[5].target = 1;
        records[6] = Record {
            // Odd nanoseconds everywhere, and a done before the last token (never happens, but kept).
            began: ns(1),
            intended: ns(3),
            sent: ns(1_000_000_007),
            head: Some(ns(1_000_000_011)),
            first_byte: Some(ns(1_000_000_013)),
            first_choice: Some(ns(1_000_000_017)),
            first_content: Some(ns(1_000_000_019)),
            content_events: vec![ns(1_000_000_019), ns(1_000_000_019), ns(1_100_000_023)],
            last_token: Some(ns(1_100_000_023)),
            done: Some(ns(1_000_000_000)),
            end: ns(1_100_000_029),
            coalesced_events: 2,
            output_tokens: 4,
            prompt_tokens: 9,
            usage_reported: true,
            bytes: 1234,
            ..Record::default()
        };
        records.push(Record::default());
        let h = header(1_700_000_000_123_456_789, 1);
        let file = read_from(&bytes(&h, &records)[..], "mem").unwrap();
        assert_eq!(file.header, h);
        assert_eq!(file.trailer, trailer(&records));
        same(&file.records, &records);
    }

    #[test]
    fn lines_are_compact_and_documented_keys_only() {
        let text = String::from_utf8(bytes(&header(0, 0), &[Record::default()])).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("{\"format\":\"standin-load-raw\",\"version\":1,"));
        assert_eq!(lines[1], r#"{"b":0,"i":0,"s":0,"e":0}"#);
        assert!(lines[2].starts_with("{\"trailer\":true,\"records\":1,"));
        let rec = request(3);
        let line = serde_json::to_value(Line::from_record(&rec)).unwrap();
        // Sent at 30 ms, first choice 43 ms: 13 ms after, then events 2 ms apart.
        assert_eq!(line["fc"], 13_000_000);
        assert_eq!(
            line["ev"],
            serde_json::json!([13_000_000, 2_000_000, 2_000_000, 2_000_000, 2_000_000])
        );
    }

    #[test]
    fn damaged_files_are_refused() {
        let records: Vec<Record> = (0..3).map(request).collect();
        let good = String::from_utf8(bytes(&header(0, 0), &records)).unwrap();
        let lines: Vec<&str> = good.lines().collect();
        let cut = lines[..3].join("\n");
        assert!(read_from(cut.as_bytes(), "f")
            .unwrap_err()
            .contains("no trailer"));
        let missing = [lines[0], lines[1], lines[4]].join("\n");
        assert!(read_from(missing.as_bytes(), "f")
            .unwrap_err()
            .contains("counts 3 records"));
        let garbled = [lines[0], "{\"b\":1}", lines[4]].join("\n");
        assert!(read_from(garbled.as_bytes(), "f")
            .unwrap_err()
            .starts_with("f:2:"));
        let unknown = [lines[0], r#"{"b":0,"i":0,"s":0,"e":0,"f":"gremlins"}"#].join("\n");
        assert!(read_from(unknown.as_bytes(), "f")
            .unwrap_err()
            .contains("gremlins"));
        let newer = good.replace("\"version\":1", "\"version\":2");
        assert!(read_from(newer.as_bytes(), "f")
            .unwrap_err()
            .contains("version 2"));
        assert!(read_from(&b"{}"[..], "f").unwrap_err().contains("header"));
        assert!(read_from(&b""[..], "f").unwrap_err().contains("empty"));
    }
}
