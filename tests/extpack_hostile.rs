//! Hostile images and faults for `extpack`, with real tools on loopback.
//!
//! Hostile images are made here byte by byte (raw tar headers, a hand-made
//! deflate bomb, OCI JSON) and read with `extpack extract` and `extpack
//! inspect` three ways: from an OCI layout folder, from an OCI archive where
//! the hostile part is the archive itself, and from a real Debian
//! `docker-registry` that they were pushed to with raw HTTP (`curl`). Every
//! refusal must be one `error:` line naming the problem, exit 1 (5 for a
//! digest or size mismatch, 4 for refused credentials), nothing
//! written anywhere in the scratch folder, and a bounded peak RSS (measured
//! with GNU `/usr/bin/time -v`).
//!
//! Faults: the registry killed mid-push (then restarted on the same storage
//! and port, and the push retried), a full disk (a 1 MiB tmpfs; needs root),
//! `kill -9` during `build`, and authentication failures.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use e2e::extpack::{extpack_measured, listed_files, Run};
use e2e::registry::{v2_status, Registry, USER};
use tempfile::TempDir;

const GIB: u64 = 1 << 30;
const MIB: u64 = 1 << 20;
/// Peak RSS allowed for any hostile input (the limits are 256 MiB per file,
/// but no hostile input here should get anywhere near them).
const PEAK_LIMIT_KIB: u64 = 200 * 1024;

const LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const MANIFEST_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";

// ---------------------------------------------------------------------------
// Running extpack

/// extpack under `/usr/bin/time -v`, for its peak memory.
fn extpack(args: &[&str]) -> Run {
    extpack_with(args, None, None)
}

fn extpack_with(args: &[&str], stdin: Option<&str>, docker_config: Option<&Path>) -> Run {
    match docker_config {
        Some(dir) => extpack_measured(args, stdin, &[("DOCKER_CONFIG", dir)]),
        None => extpack_measured(args, stdin, &[]),
    }
}

fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Option<u64>> {
    let mut all = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).unwrap() {
            let entry = entry.unwrap();
            let meta = entry.path().symlink_metadata().unwrap();
            if meta.is_dir() {
                stack.push(entry.path());
                all.insert(entry.path(), None);
            } else {
                all.insert(entry.path(), Some(meta.len()));
            }
        }
    }
    all
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

// ---------------------------------------------------------------------------
// Modules

/// A proxy-wasm-shaped module; with `data` bytes, one active data segment
/// of that many pseudo-random (incompressible) bytes.
fn module(data: usize) -> Vec<u8> {
    let pages = data.div_ceil(65536) + 1;
    let mut m = wat::parse_str(format!(
        r#"(module
             (memory (export "memory") {pages})
             (func)
             (func (param i32) (result i32) i32.const 0)
             (export "proxy_abi_version_0_2_1" (func 0))
             (export "proxy_on_memory_allocate" (func 1)))"#
    ))
    .unwrap();
    if data == 0 {
        return m;
    }
    // Data section (id 11): one segment, active in memory 0 at offset 0.
    let mut body = vec![1u8, 0, 0x41, 0, 0x0b];
    leb(&mut body, data as u64);
    let header = body.len();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    body.reserve(data + 8);
    while body.len() < header + data {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        body.extend_from_slice(&x.to_le_bytes());
    }
    body.truncate(header + data);
    m.push(11);
    leb(&mut m, body.len() as u64);
    m.extend_from_slice(&body);
    m
}

fn leb(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

// ---------------------------------------------------------------------------
// Tar, written by hand so nothing refuses to write a hostile entry

/// A GNU tar header with every field set directly. Sizes of 8 GiB and more
/// use GNU base-256, as GNU tar writes them.
fn header(name: &[u8], kind: u8, size: u64, link: &[u8]) -> [u8; 512] {
    let mut h = [0u8; 512];
    h[..name.len()].copy_from_slice(name);
    h[100..108].copy_from_slice(b"0000644\0");
    h[108..116].copy_from_slice(b"0000000\0");
    h[116..124].copy_from_slice(b"0000000\0");
    if size < 0o77777777777 {
        h[124..136].copy_from_slice(format!("{size:011o}\0").as_bytes());
    } else {
        h[124] = 0x80;
        h[128..136].copy_from_slice(&size.to_be_bytes());
    }
    h[136..148].copy_from_slice(b"14000000000\0");
    h[156] = kind;
    h[157..157 + link.len()].copy_from_slice(link);
    h[257..265].copy_from_slice(b"ustar  \0");
    if kind == b'3' || kind == b'4' {
        // Device major/minor (1, 3: /dev/null; 8, 0: /dev/sda).
        let (major, minor) = if kind == b'3' { (1, 3) } else { (8, 0) };
        h[329..337].copy_from_slice(format!("{major:07o}\0").as_bytes());
        h[337..345].copy_from_slice(format!("{minor:07o}\0").as_bytes());
    }
    checksum(&mut h);
    h
}

fn checksum(h: &mut [u8; 512]) {
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|&b| b as u32).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
}

/// A GNU sparse entry: `real` bytes long, holding one 512-byte block at
/// its end (so almost all of it is a hole).
fn sparse_header(name: &[u8], real: u64) -> [u8; 512] {
    let mut h = header(name, b'S', 512, b"");
    let field = |v: u64| format!("{v:011o}\0").into_bytes();
    let base256 = |v: u64| {
        let mut f = [0u8; 12];
        f[0] = 0x80;
        f[4..].copy_from_slice(&v.to_be_bytes());
        f
    };
    // sparse[0] at 386: offset (12 bytes), numbytes (12 bytes).
    h[386..398].copy_from_slice(&base256(real - 512));
    h[398..410].copy_from_slice(&field(512));
    // realsize at 483.
    h[483..495].copy_from_slice(&base256(real));
    checksum(&mut h);
    h
}

/// Entries (header, data) as a tar stream, with or without the
/// end-of-archive blocks.
fn tar(entries: &[([u8; 512], &[u8])], end: bool) -> Vec<u8> {
    let mut out = Vec::new();
    for (h, data) in entries {
        out.extend_from_slice(h);
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    if end {
        out.extend_from_slice(&[0u8; 1024]);
    }
    out
}

fn file(name: &str, data: &[u8]) -> [u8; 512] {
    header(name.as_bytes(), b'0', data.len() as u64, b"")
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// LSB-first bit writer for hand-made deflate.
#[derive(Default)]
struct Bits {
    out: Vec<u8>,
    acc: u64,
    n: u32,
}

impl Bits {
    fn put(&mut self, value: u64, count: u32) {
        self.acc |= value << self.n;
        self.n += count;
        while self.n >= 8 {
            self.out.push(self.acc as u8);
            self.acc >>= 8;
            self.n -= 8;
        }
    }

    /// A Huffman code: most significant bit first.
    fn code(&mut self, code: u64, len: u32) {
        for i in (0..len).rev() {
            self.put((code >> i) & 1, 1);
        }
    }

    fn align(&mut self) {
        if self.n > 0 {
            self.put(0, 8 - self.n);
        }
    }
}

/// A gzip bomb: `prefix` stored as is, then one dynamic-Huffman block that
/// emits a zero byte and then 258-byte copies at two bits each, so every
/// compressed byte is 1032 zero bytes (deflate's maximum ratio). Returns
/// the gzip bytes; its CRC is left zero (nothing reads that far).
fn gzip_bomb(prefix: &[u8], zeros: u64) -> Vec<u8> {
    let mut b = Bits::default();
    // Stored block with the prefix (BFINAL 0, BTYPE 00).
    b.put(0, 1);
    b.put(0, 2);
    b.align();
    let len = prefix.len() as u16;
    b.put(len as u64, 16);
    b.put(!len as u64, 16);
    for &byte in prefix {
        b.put(byte as u64, 8);
    }
    // Dynamic block (BFINAL 1, BTYPE 10): literal/length lengths
    // {0: 2, 256: 2, 285: 1}, distance lengths {0: 1, 1: 1}.
    b.put(1, 1);
    b.put(2, 2);
    // HLIT: 286 codes; HDIST: 2 codes; HCLEN: all 19 code-length codes
    // (the last, for 15, unused), which also makes the header an even
    // number of bits so that the 2-bit copies below end on a byte boundary.
    b.put(29, 5);
    b.put(1, 5);
    b.put(15, 4);
    // Code-length code lengths in RFC 1951 order 16,17,18,0,8,7,9,6,10,5,
    // 11,4,12,3,13,2,14,1,15: symbol 18 -> 1 bit, 2 -> 2 bits, 1 -> 2 bits.
    for len in [0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 2, 0] {
        b.put(len, 3);
    }
    // Canonical codes: 18 = 0, 1 = 10, 2 = 11.
    let (sym1, sym2, sym18) = ((0b10, 2), (0b11, 2), (0, 1));
    let zeros_run = |b: &mut Bits, n: u64| {
        b.code(sym18.0, sym18.1);
        b.put(n - 11, 7);
    };
    b.code(sym2.0, sym2.1); // literal 0: length 2
    zeros_run(&mut b, 138); // literals 1..=138
    zeros_run(&mut b, 117); // literals 139..=255
    b.code(sym2.0, sym2.1); // 256 (end of block): length 2
    zeros_run(&mut b, 28); // 257..=284
    b.code(sym1.0, sym1.1); // 285 (length 258): length 1
    b.code(sym1.0, sym1.1); // distance 0: length 1
    b.code(sym1.0, sym1.1); // distance 1: length 1
                            // Literal/length codes: 285 = 0, literal 0 = 10, 256 = 11; distance 0 = 0.
    b.code(0b10, 2);
    let mut out_len: u64 = 1;
    assert_eq!(b.n % 2, 0, "2-bit copies must reach a byte boundary");
    while b.n != 0 {
        b.put(0, 2);
        out_len += 258;
    }
    let bytes = zeros.saturating_sub(out_len) / 1032 + 1;
    b.out.resize(b.out.len() + bytes as usize, 0);
    out_len += bytes * 1032;
    b.code(0b11, 2);
    b.align();
    let mut gz = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255];
    gz.extend_from_slice(&b.out);
    gz.extend_from_slice(&[0, 0, 0, 0]);
    gz.extend_from_slice(&((out_len + prefix.len() as u64) as u32).to_le_bytes());
    gz
}

// ---------------------------------------------------------------------------
// OCI JSON and layouts, by hand

fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    let d = sha2::Sha256::digest(bytes);
    format!(
        "sha256:{}",
        d.iter().map(|b| format!("{b:02x}")).collect::<String>()
    )
}

fn descriptor(media_type: &str, bytes: &[u8]) -> serde_json::Value {
    serde_json::json!({"mediaType": media_type, "digest": sha256(bytes), "size": bytes.len()})
}

const MANIFEST_YAML: &[u8] =
    b"schemaVersion: 1\nname: hostile\nphase: PostAuthZ\npriority: 1\nmodule: plugin.wasm\n";

/// A compat image whose single layer is `layer` (any bytes).
#[derive(Clone)]
struct Hostile {
    config: Vec<u8>,
    layer: Vec<u8>,
    manifest: Vec<u8>,
}

impl Hostile {
    fn new(layer: Vec<u8>) -> Hostile {
        Hostile::with_descriptor(layer, |d| d)
    }

    /// With the layer descriptor edited (e.g. a false size).
    fn with_descriptor(
        layer: Vec<u8>,
        edit: impl FnOnce(serde_json::Value) -> serde_json::Value,
    ) -> Hostile {
        let config = serde_json::to_vec(&serde_json::json!({
            "architecture": "amd64", "os": "linux",
            "config": {"Labels": {"type": "maistra-extension"}},
            "rootfs": {"type": "layers", "diff_ids": []}
        }))
        .unwrap();
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": MANIFEST_TYPE,
            "config": descriptor("application/vnd.oci.image.config.v1+json", &config),
            "layers": [edit(descriptor(LAYER_GZIP, &layer))],
        }))
        .unwrap();
        Hostile {
            config,
            layer,
            manifest,
        }
    }

    /// Writes an OCI layout; `index_digest` overrides the manifest digest
    /// named in index.json, `manifest_blob` what is stored under it.
    fn layout(&self, dir: &Path) {
        self.layout_with(dir, None, None)
    }

    fn layout_with(&self, dir: &Path, index_digest: Option<&str>, manifest_blob: Option<&[u8]>) {
        let blobs = dir.join("blobs/sha256");
        fs::create_dir_all(&blobs).unwrap();
        fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
        let mut desc = descriptor(MANIFEST_TYPE, &self.manifest);
        if let Some(d) = index_digest {
            desc["digest"] = d.into();
        }
        let digest = desc["digest"].as_str().unwrap().to_string();
        let index = serde_json::json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [desc]});
        fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
        for bytes in [&self.config, &self.layer] {
            fs::write(blobs.join(&sha256(bytes)[7..]), bytes).unwrap();
        }
        if let Some(hex) = digest.strip_prefix("sha256:").filter(|h| h.len() == 64) {
            fs::write(
                blobs.join(hex),
                manifest_blob.unwrap_or(self.manifest.as_slice()),
            )
            .unwrap();
        }
    }

    /// Pushes the blobs and the manifest with raw registry API calls.
    fn push(&self, host: &str, repo: &str, tag: &str) {
        let base = format!("http://{host}/v2/{repo}");
        for blob in [&self.config, &self.layer] {
            upload_blob(&base, blob);
        }
        let status = curl(
            &[
                "-X",
                "PUT",
                "-H",
                &format!("Content-Type: {MANIFEST_TYPE}"),
                "--data-binary",
                "@-",
                &format!("{base}/manifests/{tag}"),
            ],
            &self.manifest,
        );
        assert_eq!(status.0, 201, "manifest PUT: {}", status.1);
    }
}

/// `curl -sS` with a body on stdin: (HTTP status, headers and body).
fn curl(args: &[&str], body: &[u8]) -> (u16, String) {
    let mut child = Command::new("curl")
        .args(["-sS", "-D", "-", "-w", "\n%{http_code}"])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot run curl: install it with `apt-get install curl`");
    let mut stdin = child.stdin.take().unwrap();
    let body = body.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&body);
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let status = text
        .trim_end()
        .rsplit('\n')
        .next()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
    (status, text)
}

fn upload_blob(base: &str, blob: &[u8]) {
    let (status, text) = curl(&["-X", "POST", &format!("{base}/blobs/uploads/")], b"");
    assert_eq!(status, 202, "upload POST: {text}");
    let location = text
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("location")
                .then(|| v.trim().to_string())
        })
        .expect("a Location header");
    let sep = if location.contains('?') { '&' } else { '?' };
    let url = format!("{location}{sep}digest={}", sha256(blob));
    let (status, text) = curl(
        &[
            "-X",
            "PUT",
            "-H",
            "Content-Type: application/octet-stream",
            "--data-binary",
            "@-",
            &url,
        ],
        blob,
    );
    assert_eq!(status, 201, "blob PUT: {text}");
}

/// `GET /v2/<repo>/manifests/<tag>` status and body.
fn get_manifest(host: &str, repo: &str, tag: &str) -> (u16, String) {
    curl(
        &[
            "-H",
            &format!("Accept: {MANIFEST_TYPE}"),
            &format!("http://{host}/v2/{repo}/manifests/{tag}"),
        ],
        b"",
    )
}

// ---------------------------------------------------------------------------
// The hostile layers

fn good_entries(module: &[u8]) -> Vec<([u8; 512], Vec<u8>)> {
    vec![
        (file("manifest.yaml", MANIFEST_YAML), MANIFEST_YAML.to_vec()),
        (file("plugin.wasm", module), module.to_vec()),
    ]
}

fn tar_of(entries: &[([u8; 512], Vec<u8>)], end: bool) -> Vec<u8> {
    let refs: Vec<([u8; 512], &[u8])> = entries.iter().map(|(h, d)| (*h, d.as_slice())).collect();
    tar(&refs, end)
}

/// A good layer with one more entry after the good files.
fn with_entry(h: [u8; 512], data: &[u8]) -> Vec<u8> {
    let mut entries = good_entries(&module(0));
    entries.push((h, data.to_vec()));
    gzip(&tar_of(&entries, true))
}

/// (case, layer bytes, what the error must say)
fn hostile_layers() -> Vec<(&'static str, Vec<u8>, Vec<&'static str>)> {
    let good = module(0);
    let evil = module(64);
    let prefix = tar_of(&good_entries(&good)[..1], false);
    let bomb = |h: [u8; 512]| {
        let mut p = prefix.clone();
        p.extend_from_slice(&h);
        gzip_bomb(&p, 10 * GIB)
    };
    let smuggled = {
        // Two gzip members: the first a complete-looking layer without the
        // end-of-archive blocks, the second another plugin.wasm. Go's gzip
        // reader (Istio, containerd) reads both members.
        let mut gz = gzip(&tar_of(&good_entries(&good), false));
        gz.extend(gzip(&tar(&[(file("plugin.wasm", &evil), &evil)], true)));
        gz
    };
    let mut bad_sum = file("plugin.wasm", &good);
    bad_sum[148] = b'7';
    vec![
        (
            "dot-dot path",
            with_entry(file("../../../tmp/extpack-pwned", b"x"), b"x"),
            vec!["'..'", "../../../tmp/extpack-pwned"],
        ),
        (
            "dot-dot inside a path",
            with_entry(file("docs/../../pwned", b"x"), b"x"),
            vec!["'..'"],
        ),
        (
            "absolute path",
            with_entry(file("/tmp/extpack-pwned-abs", b"x"), b"x"),
            vec!["absolute", "/tmp/extpack-pwned-abs"],
        ),
        (
            "symlink module",
            gzip(&tar(
                &[
                    (file("manifest.yaml", MANIFEST_YAML), MANIFEST_YAML),
                    (header(b"plugin.wasm", b'2', 0, b"/etc/passwd"), b""),
                ],
                true,
            )),
            vec!["link", "plugin.wasm"],
        ),
        (
            "symlink folder then a file through it",
            gzip(&tar(
                &[
                    (header(b"docs", b'2', 0, b"/"), b""),
                    (file("docs/tmp/pwned", b"x"), b"x"),
                ],
                true,
            )),
            vec!["link", "docs"],
        ),
        (
            "hard link",
            with_entry(header(b"hard", b'1', 0, b"../../etc/passwd"), b""),
            vec!["link", "hard"],
        ),
        (
            "character device",
            with_entry(header(b"dev/null", b'3', 0, b""), b""),
            vec!["device", "dev/null"],
        ),
        (
            "block device",
            with_entry(header(b"dev/sda", b'4', 0, b""), b""),
            vec!["device", "dev/sda"],
        ),
        (
            "fifo",
            with_entry(header(b"pipe", b'6', 0, b""), b""),
            vec!["FIFO", "pipe"],
        ),
        (
            "10 GiB GNU sparse file",
            with_entry(sparse_header(b"plugin.wasm.sparse", 10 * GIB), &[0u8; 512]),
            vec!["sparse", "plugin.wasm.sparse"],
        ),
        (
            "10 GiB size claim with 1 KiB of data",
            gzip(&{
                let mut t = prefix.clone();
                t.extend_from_slice(&header(b"plugin.wasm", b'0', 10 * GIB, b""));
                t.extend_from_slice(&[0u8; 1024]);
                t
            }),
            vec!["plugin.wasm", "limit"],
        ),
        (
            "truncated module (claims 1 MiB, has 1 KiB)",
            gzip(&{
                let mut t = prefix.clone();
                t.extend_from_slice(&header(b"plugin.wasm", b'0', MIB, b""));
                t.extend_from_slice(&good);
                t.resize(t.len() + 1024, 0);
                t
            }),
            vec!["plugin.wasm", "truncated"],
        ),
        (
            "duplicate module",
            with_entry(file("./plugin.wasm", &evil), &evil),
            vec!["more than once", "plugin.wasm"],
        ),
        (
            "second gzip member with another module",
            smuggled,
            vec!["more than once", "plugin.wasm"],
        ),
        (
            "gzip bomb (10 MiB -> 10 GiB module)",
            bomb(header(b"plugin.wasm", b'0', 10 * GIB, b"")),
            vec!["plugin.wasm", "limit"],
        ),
        (
            "gzip bomb as a GNU long name",
            bomb(header(b"././@LongLink", b'L', 10 * GIB, b"")),
            vec!["limit"],
        ),
        (
            "gzip bomb as a PAX header",
            bomb(header(b"././@PaxHeader", b'x', 10 * GIB, b"")),
            vec!["limit"],
        ),
        (
            "gzip bomb as a folder's data",
            bomb(header(b"docs/", b'5', 10 * GIB, b"")),
            vec!["limit"],
        ),
        (
            "bad header checksum",
            gzip(&tar(&[(bad_sum, &good)], true)),
            vec!["not a readable tar archive", "checksum"],
        ),
        (
            "layer that is not gzip",
            tar(&[(file("plugin.wasm", &good), &good)], true),
            vec!["not a readable tar archive"],
        ),
    ]
}

/// Extract and inspect `source`, both refused with `wants` and exit 1;
/// nothing written under `scratch`; bounded memory. Returns the two runs.
fn assert_refused(
    case: &str,
    source: &str,
    scratch: &Path,
    extra: &[&str],
    wants: &[&str],
) -> [Run; 2] {
    assert_exits(case, source, scratch, extra, 1, wants)
}

/// [`assert_refused`] with another exit code.
fn assert_exits(
    case: &str,
    source: &str,
    scratch: &Path,
    extra: &[&str],
    code: i32,
    wants: &[&str],
) -> [Run; 2] {
    let out_dir = scratch.join("out");
    fs::create_dir_all(&out_dir).unwrap();
    let before = snapshot(scratch);
    let out = out_dir.join("x.wasm");
    let out = out.to_str().unwrap();
    let mut args = vec!["extract", source, "--output", out];
    args.extend_from_slice(extra);
    let extract = extpack(&args);
    let mut args = vec!["inspect", source];
    args.extend_from_slice(extra);
    let inspect = extpack(&args);
    for (what, run) in [("extract", &extract), ("inspect", &inspect)] {
        let label = format!("{case} ({what} {source})");
        run.exits(code, &label, wants);
        assert!(
            run.peak_kib < PEAK_LIMIT_KIB,
            "{label}: peak RSS {} KiB",
            run.peak_kib
        );
        assert_eq!(snapshot(scratch), before, "{label}: something was written");
    }
    assert!(!Path::new("/tmp/extpack-pwned").exists());
    assert!(!Path::new("/tmp/extpack-pwned-abs").exists());
    [extract, inspect]
}

fn report(case: &str, how: &str, runs: &[Run]) {
    for r in runs {
        println!(
            "{case:<45} {how:<9} exit {} peak {:>6} KiB {:>5.2}s  {}",
            r.code,
            r.peak_kib,
            r.secs,
            r.line()
        );
    }
}

#[test]
fn hostile_layers_are_refused_from_a_layout_and_from_a_registry() {
    let registry = Registry::start();
    let host = registry.host();
    let scratch = tempfile::tempdir().unwrap();
    let mut tried = 0;
    for (i, (case, layer, wants)) in hostile_layers().into_iter().enumerate() {
        let image = Hostile::new(layer);
        let dir = scratch.path().join(format!("case{i}"));
        image.layout(&dir.join("layout"));
        let layout = dir.join("layout");
        let runs = assert_refused(case, layout.to_str().unwrap(), &dir, &[], &wants);
        report(case, "layout", &runs);

        let repo = format!("hostile/case{i}");
        image.push(&host, &repo, "1");
        let reference = format!("{host}/{repo}:1");
        let runs = assert_refused(case, &reference, &dir, &["--plain-http"], &wants);
        report(case, "registry", &runs);
        tried += 1;
    }
    println!("hostile layers tried: {tried} (each: extract + inspect, layout + registry)");
}

/// (case, how to write the layout, exit code, what the error must say)
type LayoutCase = (&'static str, Box<dyn Fn(&Path)>, i32, Vec<&'static str>);

#[test]
fn layout_whose_digests_do_not_match_is_refused() {
    let scratch = tempfile::tempdir().unwrap();
    let good = module(0);
    let layer = gzip(&tar_of(&good_entries(&good), true));
    let image = Hostile::new(layer.clone());
    // Same-size manifest naming another layer: only the digest can tell.
    let other = Hostile::new(gzip(&tar_of(&good_entries(&module(0)), true)));
    let mut forged = image.manifest.clone();
    let at = forged.len() - 10;
    forged[at] = if forged[at] == b'0' { b'1' } else { b'0' };
    let mut cases: Vec<LayoutCase> = vec![
        (
            "manifest blob differs from the digest index.json names",
            Box::new(move |d: &Path| image.layout_with(d, None, Some(&forged))),
            5,
            vec!["does not match its digest"],
        ),
        (
            "manifest blob longer than index.json says",
            Box::new(move |d: &Path| {
                let mut longer = other.manifest.clone();
                longer.extend_from_slice(b"  ");
                other.layout_with(d, None, Some(&longer))
            }),
            5,
            vec!["bytes, but its descriptor says"],
        ),
        (
            "layer blob whose bytes are not its digest",
            Box::new(move |d: &Path| {
                let image = Hostile::new(layer.clone());
                image.layout(d);
                let path = d.join("blobs/sha256").join(&sha256(&image.layer)[7..]);
                let mut bytes = fs::read(&path).unwrap();
                let n = bytes.len() - 9;
                bytes[n] ^= 0x55;
                fs::write(path, bytes).unwrap();
            }),
            5,
            vec!["does not match its digest"],
        ),
        (
            "index.json digest that is a path",
            Box::new(|d: &Path| {
                Hostile::new(gzip(b"x")).layout_with(d, Some("sha256:../../../../etc/passwd"), None)
            }),
            // oci-spec refuses the digest while parsing index.json.
            1,
            vec!["index.json is not an OCI index"],
        ),
        (
            "blob that is a symlink to /etc/passwd",
            Box::new(|d: &Path| {
                let image = Hostile::new(gzip(&tar_of(&good_entries(&module(0)), true)));
                image.layout(d);
                let path = d.join("blobs/sha256").join(&sha256(&image.layer)[7..]);
                fs::remove_file(&path).unwrap();
                std::os::unix::fs::symlink("/etc/passwd", &path).unwrap();
            }),
            1,
            vec!["not a regular file"],
        ),
        (
            "10 GiB sparse blob file",
            Box::new(|d: &Path| {
                let image = Hostile::new(gzip(&tar_of(&good_entries(&module(0)), true)));
                image.layout(d);
                let path = d.join("blobs/sha256").join(&sha256(&image.layer)[7..]);
                fs::File::options()
                    .write(true)
                    .open(path)
                    .unwrap()
                    .set_len(10 * GIB)
                    .unwrap();
            }),
            1,
            vec!["larger than the size limit"],
        ),
    ];
    let mut tried = 0;
    for (i, (case, make, code, wants)) in cases.drain(..).enumerate() {
        let dir = scratch.path().join(format!("case{i}"));
        let layout = dir.join("layout");
        make(&layout);
        let runs = assert_exits(case, layout.to_str().unwrap(), &dir, &[], code, &wants);
        report(case, "layout", &runs);
        tried += 1;
    }
    println!("digest/layout cases tried: {tried}");
}

#[test]
fn hostile_oci_archives_are_refused() {
    let scratch = tempfile::tempdir().unwrap();
    let cases: Vec<(&str, Vec<u8>, Vec<&str>)> = vec![
        (
            "archive with a '..' entry",
            tar(
                &[
                    (file("oci-layout", b"{}"), b"{}"),
                    (file("../../pwned", b"x"), b"x"),
                ],
                true,
            ),
            vec!["'..'"],
        ),
        (
            "archive with an absolute entry",
            tar(&[(file("/tmp/extpack-pwned", b"x"), b"x")], true),
            vec!["absolute"],
        ),
        (
            "archive with a symlinked index.json",
            tar(
                &[
                    (file("oci-layout", b"{}"), b"{}"),
                    (header(b"index.json", b'2', 0, b"/etc/passwd"), b""),
                ],
                true,
            ),
            vec!["link", "index.json"],
        ),
        (
            "archive claiming a 10 GiB blob",
            {
                let mut t = tar(&[(file("oci-layout", b"{}"), b"{}")], false);
                t.extend_from_slice(&header(b"blobs/sha256/aa", b'0', 10 * GIB, b""));
                t.extend_from_slice(&[0u8; 4096]);
                t
            },
            vec!["limit"],
        ),
    ];
    let mut tried = 0;
    for (i, (case, bytes, wants)) in cases.into_iter().enumerate() {
        let dir = scratch.path().join(format!("case{i}"));
        fs::create_dir_all(&dir).unwrap();
        let archive = dir.join("image.tar");
        fs::write(&archive, bytes).unwrap();
        let runs = assert_refused(case, archive.to_str().unwrap(), &dir, &[], &wants);
        report(case, "archive", &runs);
        tried += 1;
    }
    println!("hostile archives tried: {tried}");
}

/// Images from other tools may hold more than one `plugin.wasm`. Istio's and
/// Envoy Gateway's fetchers load the first entry with that base name
/// (`extractWasmPluginBinary`), so `extract` must give that one, and
/// `inspect` must say which entry it is, from a layout and a registry.
#[test]
fn foreign_image_module_is_the_first_plugin_wasm_as_istio_loads_it() {
    let registry = Registry::start();
    let host = registry.host();
    let scratch = tempfile::tempdir().unwrap();
    let (istio, root) = (module(16), module(0));
    let layer = gzip(&tar_of(
        &[
            (file("docs/plugin.wasm", &istio), istio.clone()),
            (file("manifest.yaml", MANIFEST_YAML), MANIFEST_YAML.to_vec()),
            (file("plugin.wasm", &root), root.clone()),
        ],
        true,
    ));
    let image = Hostile::new(layer);
    let layout = scratch.path().join("layout");
    image.layout(&layout);
    image.push(&host, "foreign/two-modules", "1");
    let reference = format!("{host}/foreign/two-modules:1");
    for (source, extra) in [
        (layout.to_str().unwrap(), None),
        (&reference[..], Some("--plain-http")),
    ] {
        let out = scratch.path().join("out.wasm");
        let mut args = vec![
            "extract",
            source,
            "--output",
            out.to_str().unwrap(),
            "--force",
        ];
        args.extend(extra);
        extpack(&args).ok();
        assert_eq!(
            fs::read(&out).unwrap(),
            istio,
            "{source}: the module Istio loads"
        );
        let mut args = vec!["inspect", source, "--json"];
        args.extend(extra);
        let info: serde_json::Value = serde_json::from_str(&extpack(&args).ok().stdout).unwrap();
        assert_eq!(info["module"]["title"], "docs/plugin.wasm", "{source}");
        assert_eq!(
            info["module"]["digest"],
            sha256(&istio).as_str(),
            "{source}"
        );
        // Every entry is listed, in layer order.
        let files = listed_files(&info);
        assert_eq!(
            files,
            ["docs/plugin.wasm", "manifest.yaml", "plugin.wasm"],
            "{source}"
        );
    }

    // A folder named plugin.wasm first: Istio would load it as 0 bytes.
    let folder = gzip(&tar_of(
        &[
            (header(b"x/plugin.wasm/", b'5', 0, b""), Vec::new()),
            (file("plugin.wasm", &root), root.clone()),
        ],
        true,
    ));
    let dir = scratch.path().join("folder");
    Hostile::new(folder).layout(&dir.join("layout"));
    let source = dir.join("layout");
    let runs = assert_refused(
        "plugin.wasm folder first",
        source.to_str().unwrap(),
        &dir,
        &[],
        &[
            "the first plugin.wasm in its layer is the folder x/plugin.wasm/",
            "empty module",
        ],
    );
    report("plugin.wasm folder first", "layout", &runs);
}

#[test]
fn registry_manifest_claiming_a_huge_layer_is_refused_before_download() {
    let registry = Registry::start();
    let host = registry.host();
    let scratch = tempfile::tempdir().unwrap();
    let layer = gzip(&tar_of(&good_entries(&module(0)), true));
    let image = Hostile::with_descriptor(layer, |mut d| {
        d["size"] = (10 * GIB).into();
        d
    });
    // The registry checks that the blob exists, not the size the manifest
    // claims for it.
    image.push(&host, "hostile/huge", "1");
    let reference = format!("{host}/hostile/huge:1");
    let runs = assert_refused(
        "layer descriptor claims 10 GiB",
        &reference,
        scratch.path(),
        &["--plain-http"],
        &["limit", "refusing to download"],
    );
    report("layer descriptor claims 10 GiB", "registry", &runs);
}

// ---------------------------------------------------------------------------
// Faults

/// A registry we can kill and restart on the same storage and port.
struct Restartable {
    dir: TempDir,
    addr: SocketAddr,
    child: Option<Child>,
}

impl Restartable {
    fn start() -> Restartable {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut r = Restartable {
            dir,
            addr: ([127, 0, 0, 1], port).into(),
            child: None,
        };
        r.restart();
        r
    }

    fn host(&self) -> String {
        self.addr.to_string()
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn restart(&mut self) {
        let config = self.dir.path().join("config.yml");
        fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {}\n",
                self.data().display(),
                self.addr
            ),
        )
        .unwrap();
        let log = fs::File::options()
            .create(true)
            .append(true)
            .open(self.dir.path().join("registry.log"))
            .unwrap();
        self.child = Some(
            Command::new("docker-registry")
                .arg("serve")
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .expect(
                    "cannot run docker-registry: install it with `apt-get install docker-registry`",
                ),
        );
        let deadline = Instant::now() + Duration::from_secs(15);
        while v2_status(self.addr) != Some(200) {
            assert!(
                Instant::now() < deadline,
                "registry did not start on {}",
                self.addr
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL.
    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Restartable {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Total bytes under `dir` in files named `data` inside `_uploads` folders.
fn upload_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.file_name().is_some_and(|n| n == "data")
                && p.to_string_lossy().contains("/_uploads/")
            {
                total += e.metadata().map(|m| m.len()).unwrap_or(0);
            }
        }
    }
    total
}

fn build_args<'a>(module: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec![
        "build",
        module,
        "--name",
        "big-filter",
        "--phase",
        "PostAuthZ",
        "--priority",
        "1",
        "--version",
        "1.0.0",
    ];
    v.extend_from_slice(extra);
    v
}

#[test]
fn registry_killed_mid_push_fails_clearly_and_a_retry_completes() {
    let mut registry = Restartable::start();
    let host = registry.host();
    let w = tempfile::tempdir().unwrap();
    let module_path = w.path().join("big.wasm");
    let module_bytes = module(50 * MIB as usize);
    fs::write(&module_path, &module_bytes).unwrap();
    let layout = w.path().join("image");
    let built = extpack(&build_args(
        module_path.to_str().unwrap(),
        &["--format", "artifact", "--output", layout.to_str().unwrap()],
    ))
    .ok();
    let digest = {
        let at = built.stdout.find("sha256:").unwrap();
        built.stdout[at..at + 71].to_string()
    };
    let reference = format!("{host}/faults/big:1.0.0");
    let child = e2e::extpack::start(&[
        "push",
        layout.to_str().unwrap(),
        "--tag",
        &reference,
        "--plain-http",
    ]);
    // Kill the registry once the module's upload is under way.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = 0;
    while Instant::now() < deadline {
        seen = upload_bytes(&registry.data());
        // Past the small config blob: the module itself is being sent.
        if seen > MIB {
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(seen > MIB, "the module upload never started ({seen} bytes)");
    registry.kill();
    let run = e2e::extpack::wait(child);
    println!(
        "push with the registry killed after {seen} uploaded bytes: exit {} {}",
        run.code,
        run.line()
    );
    run.exits(
        6,
        "registry killed mid-push",
        &[&format!("cannot reach registry {host}: ")],
    );

    // Same storage, same port: the tag must not exist yet (the manifest is
    // pushed last), and a retry completes the image.
    registry.restart();
    let (status, body) = get_manifest(&host, "faults/big", "1.0.0");
    assert_eq!(status, 404, "a tag after a failed push: {body}");
    let retry = extpack(&[
        "push",
        layout.to_str().unwrap(),
        "--tag",
        &reference,
        "--plain-http",
    ])
    .ok();
    assert!(retry.stdout.contains(&digest), "{}", retry.stdout);
    let (status, body) = get_manifest(&host, "faults/big", "1.0.0");
    assert_eq!(status, 200, "{body}");
    let manifest = body
        .split("\r\n\r\n")
        .nth(1)
        .unwrap()
        .rsplit_once('\n')
        .unwrap()
        .0;
    assert_eq!(
        sha256(manifest.as_bytes()),
        digest,
        "the tag names the complete manifest"
    );
    let out = w.path().join("back.wasm");
    extpack(&[
        "extract",
        &reference,
        "--plain-http",
        "-o",
        out.to_str().unwrap(),
    ])
    .ok();
    assert!(
        fs::read(&out).unwrap() == module_bytes,
        "extracted bytes differ"
    );
    println!(
        "retry: {} ; extract gave the same {} bytes",
        retry.stdout.trim(),
        module_bytes.len()
    );
}

/// A tmpfs of `size`, unmounted on drop.
struct Tmpfs {
    dir: TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Tmpfs {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .expect("running mount");
        assert!(
            out.status.success(),
            "mounting a {size} tmpfs failed (this test needs root or CAP_SYS_ADMIN): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

#[test]
fn full_disk_on_build_fails_clearly_and_leaves_nothing() {
    let disk = Tmpfs::mount("1m");
    let w = tempfile::tempdir().unwrap();
    let module_path = w.path().join("m.wasm");
    fs::write(&module_path, module(2 * MIB as usize)).unwrap();
    let module_path = module_path.to_str().unwrap();
    let mut tried = 0;
    for (flag, name, format) in [
        ("--output", "image", "compat"),
        ("--archive", "image.tar", "compat"),
        ("--output", "artifact", "artifact"),
        ("--archive", "artifact.tar", "artifact"),
    ] {
        let target = disk.path().join(name);
        let target = target.to_str().unwrap();
        let run = extpack(&build_args(
            module_path,
            &["--format", format, flag, target],
        ));
        report(
            &format!("disk full: build {flag} ({format})"),
            "tmpfs",
            std::slice::from_ref(&run),
        );
        run.refused("disk full", &[target, "No space left on device"]);
        assert!(
            names(disk.path()).is_empty(),
            "left behind: {:?}",
            names(disk.path())
        );
        tried += 1;
    }
    // A module that fits still builds there.
    let small = w.path().join("small.wasm");
    fs::write(&small, module(0)).unwrap();
    let target = disk.path().join("image");
    extpack(&build_args(
        small.to_str().unwrap(),
        &["--output", target.to_str().unwrap()],
    ))
    .ok();
    println!("disk-full builds tried: {tried}");
}

#[test]
fn kill_during_build_leaves_no_output_and_the_next_build_cleans_up() {
    let w = tempfile::tempdir().unwrap();
    let module_path = w.path().join("huge.wasm");
    fs::write(&module_path, module(200 * MIB as usize)).unwrap();
    let small = w.path().join("small.wasm");
    fs::write(&small, module(0)).unwrap();
    let out = w.path().join("out");
    fs::create_dir(&out).unwrap();
    for (flag, name) in [("--output", "image"), ("--archive", "image.tar")] {
        let target = out.join(name);
        let mut child = e2e::extpack::start(&build_args(
            module_path.to_str().unwrap(),
            &["--format", "artifact", flag, target.to_str().unwrap()],
        ));
        // Wait for the temporary sibling, then SIGKILL.
        let deadline = Instant::now() + Duration::from_secs(40);
        let tmp_prefix = format!(".{name}.tmp-");
        loop {
            assert!(Instant::now() < deadline, "no temporary sibling appeared");
            if let Ok(Some(status)) = child.try_wait() {
                panic!("build ended before it could be killed: {status}");
            }
            if names(&out).iter().any(|n| n.starts_with(&tmp_prefix)) {
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        child.kill().unwrap();
        let _ = child.wait();
        let left = names(&out);
        println!("kill -9 during build {flag}: left {left:?}");
        assert!(!target.exists(), "{name} exists after kill -9");
        assert!(
            left.iter().all(|n| n.starts_with(&tmp_prefix)),
            "only a clearly named temporary sibling may remain: {left:?}"
        );
        // The next build succeeds and removes the stale sibling.
        extpack(&build_args(
            small.to_str().unwrap(),
            &[flag, target.to_str().unwrap()],
        ))
        .ok();
        assert_eq!(names(&out), [name], "stale temporary siblings are removed");
        fs::remove_dir_all(&target)
            .or_else(|_| fs::remove_file(&target))
            .unwrap();
    }
}

#[test]
fn authentication_failures_name_the_registry() {
    let registry = Registry::start_with_auth();
    let host = registry.host();
    let w = tempfile::tempdir().unwrap();
    let module_path = w.path().join("m.wasm");
    fs::write(&module_path, module(0)).unwrap();
    let layout = w.path().join("image");
    extpack(&build_args(
        module_path.to_str().unwrap(),
        &["--output", layout.to_str().unwrap()],
    ))
    .ok();
    let layout = layout.to_str().unwrap();
    let reference = format!("{host}/private/filter:1.0.0");
    let user = ["--username", USER, "--password-stdin"];
    let wrong = Some("not-the-password\n");
    let out = w.path().join("x.wasm");
    let out = out.to_str().unwrap();
    let docker = w.path().join("docker");
    fs::create_dir(&docker).unwrap();
    fs::write(
        docker.join("config.json"),
        format!(r#"{{"auths":{{"{host}":{{"username":"{USER}","password":"wrong"}}}}}}"#),
    )
    .unwrap();
    type Case<'a> = (
        &'a str,
        Vec<&'a str>,
        Option<&'a str>,
        Option<&'a Path>,
        Vec<&'a str>,
    );
    let push: Vec<&str> = vec!["push", layout, "--tag", &reference, "--plain-http"];
    let inspect: Vec<&str> = vec!["inspect", &reference, "--plain-http"];
    let extract: Vec<&str> = vec!["extract", &reference, "--plain-http", "-o", out];
    let anonymous = vec!["refused access", "docker login"];
    let failed = vec!["refused access", "authentication failed", USER];
    let cases: Vec<Case> = vec![
        (
            "push, no credentials",
            push.clone(),
            None,
            None,
            anonymous.clone(),
        ),
        (
            "push, wrong password",
            [&push[..], &user].concat(),
            wrong,
            None,
            failed.clone(),
        ),
        (
            "push, wrong Docker config",
            push.clone(),
            None,
            Some(&docker),
            failed.clone(),
        ),
        (
            "inspect, no credentials",
            inspect.clone(),
            None,
            None,
            anonymous.clone(),
        ),
        (
            "inspect, wrong password",
            [&inspect[..], &user].concat(),
            wrong,
            None,
            failed.clone(),
        ),
        (
            "extract, no credentials",
            extract.clone(),
            None,
            None,
            anonymous.clone(),
        ),
        (
            "extract, wrong password",
            [&extract[..], &user].concat(),
            wrong,
            None,
            failed.clone(),
        ),
    ];
    let before = snapshot(w.path());
    let mut tried = 0;
    for (case, args, stdin, config, wants) in cases {
        let run = extpack_with(&args, stdin, config);
        report(case, "auth", std::slice::from_ref(&run));
        let mut wants = wants.clone();
        let registry_name = format!("registry {host}");
        wants.push(&registry_name);
        run.exits(4, case, &wants);
        assert_eq!(snapshot(w.path()), before, "{case}: something was written");
        tried += 1;
    }
    println!("auth failures tried: {tried}");
}
