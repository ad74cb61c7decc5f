//! `plinth image import|ls|inspect|rm|export` against archives built at test time: a
//! corpus of hostile layer tars (raw headers for what the `tar` crate's builder refuses to
//! write), OCI layouts and docker-archives assembled by hand with correct and wrong
//! digests, and, as the proof, images podman builds from the host's busybox, saved in its
//! three formats, imported, mounted as an overlay, run by plinth's runtime, exported and
//! loaded back into podman.
//!
//! Every hostile case must fail with one line naming the archive, the entry and the
//! problem, leave the store empty (no record, no layer, no temp directory) and leave the
//! sentinel directory the archive aims at exactly as it was.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use common::{build_busybox_rootfs, container_id, require_root, require_tool, TestDir};
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};

fn sha256(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A tar written header by header, so that names the `tar` crate refuses (`../x`,
/// absolute) and sizes it would never write can be made.
struct Raw {
    out: Vec<u8>,
}

impl Raw {
    fn new() -> Raw {
        Raw { out: Vec::new() }
    }

    fn header(
        &mut self,
        name: &str,
        kind: tar::EntryType,
        size: u64,
        link: Option<&str>,
    ) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        let old = h.as_old_mut();
        assert!(name.len() < 100, "{name}: too long for a raw header");
        old.name[..name.len()].copy_from_slice(name.as_bytes());
        if let Some(l) = link {
            old.linkname[..l.len()].copy_from_slice(l.as_bytes());
        }
        h.set_entry_type(kind);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_700_000_000);
        h.set_size(size);
        h
    }

    fn push(&mut self, mut h: tar::Header, data: &[u8]) -> &mut Raw {
        h.set_cksum();
        self.out.extend_from_slice(h.as_bytes());
        self.out.extend_from_slice(data);
        let pad = (512 - data.len() % 512) % 512;
        self.out.extend(std::iter::repeat_n(0u8, pad));
        self
    }

    fn file(&mut self, name: &str, data: &[u8]) -> &mut Raw {
        let h = self.header(name, tar::EntryType::Regular, data.len() as u64, None);
        self.push(h, data)
    }

    fn file_mode(&mut self, name: &str, data: &[u8], mode: u32) -> &mut Raw {
        let mut h = self.header(name, tar::EntryType::Regular, data.len() as u64, None);
        h.set_mode(mode);
        self.push(h, data)
    }

    fn dir(&mut self, name: &str) -> &mut Raw {
        let mut h = self.header(name, tar::EntryType::Directory, 0, None);
        h.set_mode(0o755);
        self.push(h, &[])
    }

    fn symlink(&mut self, name: &str, target: &str) -> &mut Raw {
        let h = self.header(name, tar::EntryType::Symlink, 0, Some(target));
        self.push(h, &[])
    }

    fn hardlink(&mut self, name: &str, target: &str) -> &mut Raw {
        let h = self.header(name, tar::EntryType::Link, 0, Some(target));
        self.push(h, &[])
    }

    fn device(&mut self, name: &str, kind: tar::EntryType, major: u32, minor: u32) -> &mut Raw {
        let mut h = self.header(name, kind, 0, None);
        h.set_device_major(major).unwrap();
        h.set_device_minor(minor).unwrap();
        self.push(h, &[])
    }

    /// A PAX extended header for the next entry.
    fn pax(&mut self, records: &[(&str, &[u8])]) -> &mut Raw {
        let mut body = Vec::new();
        for (k, v) in records {
            let rest = format!(" {k}=").len() + v.len() + 1;
            let mut len = rest + 1;
            while len.to_string().len() + rest != len {
                len += 1;
            }
            body.extend_from_slice(format!("{len} {k}=").as_bytes());
            body.extend_from_slice(v);
            body.push(b'\n');
        }
        let h = self.header("pax", tar::EntryType::XHeader, body.len() as u64, None);
        self.push(h, &body)
    }

    /// A header that declares `size` bytes, followed by no data at all.
    fn declare(&mut self, name: &str, size: u64) -> &mut Raw {
        let mut h = self.header(name, tar::EntryType::Regular, size, None);
        h.set_cksum();
        self.out.extend_from_slice(h.as_bytes());
        self
    }

    fn finish(&mut self) -> Vec<u8> {
        let mut out = std::mem::take(&mut self.out);
        out.extend(std::iter::repeat_n(0u8, 1024));
        out
    }
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn zstd(data: &[u8]) -> Vec<u8> {
    zstd::encode_all(data, 3).unwrap()
}

/// Bytes that do not compress.
fn noise(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Removes the fleet containers of a fixture and stops its supervisor.
struct FleetGuard<'a>(&'a Fixture);

impl Drop for FleetGuard<'_> {
    fn drop(&mut self) {
        for name in ["from-image", "from-image-env"] {
            let _ = self.0.plinth().args(["rm", "--force", name]).output();
        }
        let _ = self.0.plinth().args(["daemon", "--stop"]).output();
    }
}

/// A test's store and the directory hostile archives aim at.
struct Fixture {
    td: TestDir,
    data: PathBuf,
    sentinel: PathBuf,
    n: usize,
}

impl Fixture {
    fn new(name: &str) -> Fixture {
        let td = TestDir::new(name);
        let data = td.path().join("data");
        let sentinel = td.path().join("sentinel");
        fs::create_dir_all(sentinel.join("sub")).unwrap();
        fs::write(sentinel.join("secret"), "do not touch\n").unwrap();
        fs::write(sentinel.join("sub/file"), "nor this\n").unwrap();
        Fixture {
            td,
            data,
            sentinel,
            n: 0,
        }
    }

    fn write(&mut self, stem: &str, bytes: &[u8]) -> PathBuf {
        self.n += 1;
        let p = self.td.path().join(format!("{stem}-{}.tar", self.n));
        fs::write(&p, bytes).unwrap();
        p
    }

    fn plinth(&self) -> common::TestCommand {
        let mut c = self.td.plinth();
        c.arg("--data-dir").arg(&self.data);
        c
    }

    fn import(&self, archive: &Path, extra: &[&str]) -> common::TestCommand {
        let mut c = self.plinth();
        c.args(["image", "import"]).arg(archive).args(extra);
        c
    }

    /// Everything under the sentinel (type, mode, owner, size, content, link target).
    fn sentinel(&self) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        walk(&self.sentinel, &self.sentinel, true, &mut out);
        out
    }

    /// The sentinel, and every name in the test directory and the store (output files of
    /// the commands aside).
    fn snapshot(&self) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        walk(self.td.path(), self.td.path(), false, &mut out);
        out.retain(|k, _| !k.starts_with("cmd-") && !k.starts_with("sentinel/"));
        out.extend(
            self.sentinel()
                .into_iter()
                .map(|(k, v)| (format!("sentinel/{k}"), v)),
        );
        out
    }

    /// The store holds no record, no layer and no temp directory.
    fn assert_store_empty(&self) {
        let mut left = Vec::new();
        for sub in ["layers", "layers/sha256", "images"] {
            if let Ok(rd) = fs::read_dir(self.data.join(sub)) {
                for e in rd.flatten() {
                    let n = e.file_name().to_string_lossy().into_owned();
                    if n != "sha256" && n != ".lock" {
                        left.push(format!("{sub}/{n}"));
                    }
                }
            }
        }
        assert!(left.is_empty(), "the store is not empty: {left:?}");
        let list = self
            .plinth()
            .args(["image", "ls", "--format", "json"])
            .json();
        assert_eq!(list, json!([]));
    }

    fn layer_dir(&self, image: &str, index: usize) -> PathBuf {
        let v = self.plinth().args(["image", "inspect", image]).json();
        PathBuf::from(v["layers"][index].as_str().unwrap())
    }
}

fn walk(base: &Path, dir: &Path, content: bool, out: &mut BTreeMap<String, String>) {
    let Ok(rd) = fs::read_dir(dir) else { return };
    for e in rd.flatten() {
        let p = e.path();
        let rel = p.strip_prefix(base).unwrap().display().to_string();
        let m = fs::symlink_metadata(&p).unwrap();
        let mut desc = format!("{:o} {} {}", m.mode(), m.uid(), m.len());
        if content && m.is_file() {
            desc.push_str(&format!(" {}", sha256(&fs::read(&p).unwrap())));
        }
        if m.file_type().is_symlink() {
            desc.push_str(&format!(" -> {}", fs::read_link(&p).unwrap().display()));
        }
        out.insert(rel, desc);
        if m.is_dir() {
            walk(base, &p, content, out);
        }
    }
}

#[test]
fn hostile_layers_are_refused_and_write_nothing_outside() {
    if !require_root() {
        return;
    }
    let mut fx = Fixture::new("image-hostile");
    // The store exists before the first case, so that only what a case adds shows.
    fx.plinth().args(["image", "ls"]).assert_success();
    let s = fx.sentinel.display().to_string();
    let big_plain = Raw::new().declare("big", 1 << 40).finish();
    let mut truncated = Raw::new();
    truncated.file("first", b"ok").file("f", &noise(256 << 10));
    let truncated = truncated.finish();
    let gz = gzip(&truncated);
    let zs = zstd(&truncated);
    let cases: Vec<(&str, Vec<u8>, Vec<String>)> = vec![
        (
            "dotdot",
            Raw::new().file("../escape", b"x").finish(),
            vec!["entry ../escape".into(), "`..`".into()],
        ),
        (
            "dotdot-deep",
            Raw::new()
                .dir("a/")
                .file("a/../../../escape", b"x")
                .finish(),
            vec!["a/../../../escape".into(), "`..`".into()],
        ),
        (
            "absolute",
            Raw::new().file(&format!("{s}/abs"), b"x").finish(),
            vec![format!("entry {s}/abs"), "absolute path".into()],
        ),
        (
            "symlink-then-write",
            Raw::new()
                .symlink("link", &s)
                .file("link/pwned", b"x")
                .finish(),
            vec!["entry link/pwned".into(), "through the symlink link".into()],
        ),
        (
            "relative-symlink-then-write",
            Raw::new()
                .symlink("up", &format!("../../../../../../../../..{s}"))
                .file("up/sub/pwned", b"x")
                .finish(),
            vec!["entry up/sub/pwned".into(), "through the symlink up".into()],
        ),
        (
            "symlink-chain",
            Raw::new()
                .symlink("a", "b")
                .symlink("b", &s)
                .file("a/pwned", b"x")
                .finish(),
            vec!["entry a/pwned".into(), "through the symlink a".into()],
        ),
        (
            "symlink-dir-then-mkdir",
            Raw::new().symlink("d", &s).dir("d/new/").finish(),
            vec!["entry d/new/".into(), "through the symlink d".into()],
        ),
        (
            "hardlink-absolute",
            Raw::new().hardlink("hl", &format!("{s}/secret")).finish(),
            vec!["entry hl".into(), "outside the layer".into()],
        ),
        (
            "hardlink-dotdot",
            Raw::new()
                .hardlink("hl", "../../../../../../../../etc/passwd")
                .finish(),
            vec!["entry hl".into(), "outside the layer".into()],
        ),
        (
            "hardlink-through-symlink",
            Raw::new()
                .symlink("s", &s)
                .hardlink("hl", "s/secret")
                .finish(),
            vec!["entry hl".into(), "hard link to s/secret".into()],
        ),
        (
            "hardlink-to-nothing",
            Raw::new().hardlink("hl", "etc/shadow").finish(),
            vec!["entry hl".into(), "not an earlier entry".into()],
        ),
        (
            "bad-whiteout",
            Raw::new().dir("a/").file("a/.wh...", b"").finish(),
            vec!["entry a/.wh...".into(), "whiteout".into()],
        ),
        (
            "huge-plain",
            big_plain.clone(),
            vec![
                "entry big".into(),
                "declares 1099511627776 bytes".into(),
                "the archive can hold".into(),
            ],
        ),
        (
            "huge-gzip",
            gzip(&big_plain),
            vec!["entry big".into(), "declares 1099511627776 bytes".into()],
        ),
        (
            "truncated-plain",
            truncated[..truncated.len() / 2].to_vec(),
            vec!["entry f".into(), "the archive can hold".into()],
        ),
        (
            "truncated-gzip",
            gz[..gz.len() / 2].to_vec(),
            vec!["entry f".into(), "truncated".into()],
        ),
        (
            "truncated-zstd",
            zs[..zs.len() / 2].to_vec(),
            vec!["entry f".into(), "truncated".into()],
        ),
    ];
    for (stem, bytes, expect) in cases {
        let archive = fx.write(stem, &bytes);
        let before = fx.snapshot();
        let out = fx.import(&archive, &["--name", "evil"]).assert_failure();
        let line = out.stderr.trim();
        eprintln!("{stem}: {line}");
        assert_eq!(line.lines().count(), 1, "{stem}: more than one line\n{out}");
        assert!(
            line.contains(&archive.display().to_string()),
            "{stem}: the message does not name the archive\n{out}"
        );
        for e in &expect {
            assert!(
                line.contains(e.as_str()),
                "{stem}: want {e:?} in the message\n{out}"
            );
        }
        assert_eq!(
            fx.snapshot(),
            before,
            "{stem}: something changed outside the layer"
        );
        fx.assert_store_empty();
    }
    // And a cap the caller sets.
    let archive = fx.write("capped", &Raw::new().file("four-k", &[7u8; 4096]).finish());
    let out = fx
        .import(&archive, &["--name", "evil", "--max-file-size", "1K"])
        .assert_failure();
    assert!(
        out.stderr
            .contains("entry four-k: declares 4096 bytes, more than the cap of 1024"),
        "{out}"
    );
    fx.assert_store_empty();
}

#[test]
fn neutralised_entries_land_inside_the_layer() {
    if !require_root() {
        return;
    }
    let mut fx = Fixture::new("image-neutral");
    let s = fx.sentinel.display().to_string();
    let before = fx.sentinel();
    let layer = Raw::new()
        .file_mode("bin/su", b"#!/bin/sh\n", 0o4755)
        .file_mode("bin/wall", b"#!/bin/sh\n", 0o2755)
        .file("dup", b"one")
        .file("dup", b"two")
        .symlink("was-link", &format!("{s}/secret"))
        .file("was-link", b"replaced, not followed")
        .symlink("was-link-dir", &s)
        .dir("was-link-dir/")
        .file("was-link-dir/inside", b"in")
        .hardlink("bin/su-again", "bin/su")
        .device("gone", tar::EntryType::Char, 0, 0)
        .device("dev/null", tar::EntryType::Char, 1, 3)
        .device("dev/sda", tar::EntryType::Block, 8, 0)
        .file("etc/.wh.passwd", b"")
        .dir("opaque/")
        .file("opaque/.wh..wh..opq", b"")
        .pax(&[
            ("SCHILY.xattr.trusted.overlay.redirect", b"/etc"),
            ("SCHILY.xattr.user.note", b"kept"),
        ])
        .file("attrs", b"a")
        .finish();
    let archive = fx.write("neutral", &gzip(&layer));
    let out = fx.import(&archive, &["--name", "neutral"]).assert_success();
    assert!(
        out.stderr
            .contains("entry bin/su: setuid/setgid bits stripped (mode 4755 became 0755"),
        "{out}"
    );
    assert!(
        out.stderr
            .contains("entry bin/wall: setuid/setgid bits stripped"),
        "{out}"
    );
    assert!(
        out.stderr
            .contains("entry attrs: extended attribute trusted.overlay.redirect dropped"),
        "{out}"
    );
    assert!(
        out.stderr
            .contains("entry dev/null: character device 1:3 not created"),
        "{out}"
    );
    assert!(
        out.stderr
            .contains("entry dev/sda: block device 8:0 not created"),
        "{out}"
    );
    let l = fx.layer_dir("neutral", 0);
    assert!(!l.join("dev/null").exists() && !l.join("dev/sda").exists());
    let mode = |p: &str| fs::symlink_metadata(l.join(p)).unwrap().mode();
    assert_eq!(mode("bin/su") & 0o7777, 0o755);
    assert_eq!(mode("bin/wall") & 0o7777, 0o755);
    assert_eq!(fs::read(l.join("dup")).unwrap(), b"two");
    assert!(fs::symlink_metadata(l.join("was-link")).unwrap().is_file());
    assert_eq!(
        fs::read(l.join("was-link")).unwrap(),
        b"replaced, not followed"
    );
    assert!(fs::symlink_metadata(l.join("was-link-dir"))
        .unwrap()
        .is_dir());
    assert_eq!(fs::read(l.join("was-link-dir/inside")).unwrap(), b"in");
    assert_eq!(
        fs::metadata(l.join("bin/su-again")).unwrap().ino(),
        fs::metadata(l.join("bin/su")).unwrap().ino()
    );
    for wh in ["gone", "etc/passwd"] {
        let m = fs::symlink_metadata(l.join(wh)).unwrap();
        assert!(
            m.file_type().is_char_device() && m.rdev() == 0,
            "{wh}: not a whiteout"
        );
    }
    assert!(!l.join("etc/.wh.passwd").exists());
    assert_eq!(
        xattr::get(l.join("opaque"), "trusted.overlay.opaque")
            .unwrap()
            .as_deref(),
        Some(&b"y"[..])
    );
    assert!(!l.join("opaque/.wh..wh..opq").exists());
    assert_eq!(
        xattr::get(l.join("attrs"), "user.note").unwrap().as_deref(),
        Some(&b"kept"[..])
    );
    assert_eq!(
        xattr::get(l.join("attrs"), "trusted.overlay.redirect").unwrap(),
        None
    );
    assert_eq!(fx.sentinel(), before, "the sentinel changed");

    // --keep-setuid keeps the bits.
    let archive = fx.write(
        "keep",
        &Raw::new()
            .file_mode("bin/su", b"#!/bin/sh\n", 0o4755)
            .finish(),
    );
    let out = fx
        .import(&archive, &["--name", "keep", "--keep-setuid"])
        .assert_success();
    assert!(!out.stderr.contains("stripped"), "{out}");
    let l = fx.layer_dir("keep", 0);
    assert_eq!(
        fs::metadata(l.join("bin/su")).unwrap().mode() & 0o7777,
        0o4755
    );
}

/// An OCI image layout with these layer blobs (bottom first) and config fields.
fn oci_layout(dir: &Path, layers: &[Vec<u8>], diff_ids: &[String], config: Value) -> Value {
    let blobs = dir.join("blobs/sha256");
    fs::create_dir_all(&blobs).unwrap();
    let put = |data: &[u8]| {
        let d = sha256(data);
        fs::write(blobs.join(&d), data).unwrap();
        (format!("sha256:{d}"), data.len())
    };
    let mut descs = Vec::new();
    for l in layers {
        let (d, n) = put(l);
        descs.push(json!({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": d, "size": n}));
    }
    let cfg = json!({
        "architecture": "amd64", "os": "linux", "config": config,
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    });
    let (cd, cn) = put(&serde_json::to_vec(&cfg).unwrap());
    let manifest = json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cn},
        "layers": descs,
    });
    let (md, mn) = put(&serde_json::to_vec(&manifest).unwrap());
    fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let index = json!({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md, "size": mn,
        "annotations": {"org.opencontainers.image.ref.name": "localhost/handmade:1"}}]});
    fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
    cfg
}

/// A docker-archive of these (uncompressed) layers.
fn docker_archive(path: &Path, layers: &[Vec<u8>], config_name: Option<&str>, tag: &str) {
    let diff_ids: Vec<String> = layers
        .iter()
        .map(|l| format!("sha256:{}", sha256(l)))
        .collect();
    let cfg = serde_json::to_vec(&json!({
        "architecture": "amd64", "os": "linux", "config": {"Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }))
    .unwrap();
    let cfg_name = config_name
        .map(String::from)
        .unwrap_or_else(|| format!("{}.json", sha256(&cfg)));
    let mut b = tar::Builder::new(fs::File::create(path).unwrap());
    let mut add = |name: &str, data: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o444);
        b.append_data(&mut h, name, data).unwrap();
    };
    let mut names = Vec::new();
    for l in layers {
        let n = format!("{}.tar", sha256(l));
        add(&n, l);
        names.push(n);
    }
    add(&cfg_name, &cfg);
    let manifest = json!([{"Config": cfg_name, "RepoTags": [tag], "Layers": names}]);
    add("manifest.json", &serde_json::to_vec(&manifest).unwrap());
    b.into_inner().unwrap();
}

#[test]
fn digests_are_verified_before_anything_is_stored() {
    if !require_root() {
        return;
    }
    let mut fx = Fixture::new("image-digest");
    let base = Raw::new()
        .file("bin/tool", b"tool v1")
        .file("etc/conf", b"a=1")
        .finish();
    let top = Raw::new()
        .file("etc/.wh.conf", b"")
        .file("etc/new", b"b=2")
        .finish();
    let ids = [
        format!("sha256:{}", sha256(&base)),
        format!("sha256:{}", sha256(&top)),
    ];
    let ok = fx.td.path().join("layout-ok");
    oci_layout(
        &ok,
        &[gzip(&base), gzip(&top)],
        &ids,
        json!({"Env": ["A=1"], "Cmd": ["/bin/tool"]}),
    );
    let out = fx.import(&ok, &[]).assert_success();
    assert!(
        out.stdout
            .contains("imported localhost/handmade:1 (oci-dir, 2 layers: 2 new"),
        "{out}"
    );
    let v = fx.plinth().args(["image", "inspect", "handmade:1"]).json();
    assert_eq!(v["config"]["Env"], json!(["A=1"]));
    assert_eq!(v["diff_ids"], json!(ids));
    fx.plinth()
        .args(["image", "rm", "localhost/handmade:1"])
        .assert_success();
    fx.assert_store_empty();

    // A layer blob altered after its digest was taken.
    let bad = fx.td.path().join("layout-bad-layer");
    oci_layout(&bad, &[gzip(&base), gzip(&top)], &ids, json!({}));
    let top_blob = bad.join("blobs/sha256").join(sha256(&gzip(&top)));
    fs::write(
        &top_blob,
        gzip(&Raw::new().file("etc/new", b"evil").finish()),
    )
    .unwrap();
    let out = fx.import(&bad, &[]).assert_failure();
    assert!(
        out.stderr.contains(&format!(
            "blobs/sha256/{}: digest mismatch",
            sha256(&gzip(&top))
        )),
        "{out}"
    );
    fx.assert_store_empty();

    // A config whose diff_id does not match the layer's content.
    let wrong = fx.td.path().join("layout-wrong-diff-id");
    oci_layout(
        &wrong,
        &[gzip(&base)],
        &[format!("sha256:{}", sha256(b"other"))],
        json!({}),
    );
    let out = fx.import(&wrong, &[]).assert_failure();
    assert!(out.stderr.contains("against the config's diff_id"), "{out}");
    fx.assert_store_empty();

    // A config altered in place.
    let cfg = fx.td.path().join("layout-bad-config");
    let c = oci_layout(&cfg, &[gzip(&base)], &ids[..1], json!({}));
    let cfg_blob = cfg
        .join("blobs/sha256")
        .join(sha256(&serde_json::to_vec(&c).unwrap()));
    fs::write(&cfg_blob, br#"{"rootfs":{"type":"layers","diff_ids":[]}}"#).unwrap();
    let out = fx.import(&cfg, &[]).assert_failure();
    assert!(out.stderr.contains("(config): digest mismatch"), "{out}");
    fx.assert_store_empty();

    // docker-archive: a good one, one whose config is not named by its digest, one whose
    // layer does not match its diff_id.
    let good = fx.td.path().join("docker-ok.tar");
    docker_archive(
        &good,
        &[base.clone(), top.clone()],
        None,
        "localhost/docker-made:2",
    );
    let out = fx.import(&good, &[]).assert_success();
    assert!(
        out.stdout
            .contains("imported localhost/docker-made:2 (docker-archive, 2 layers"),
        "{out}"
    );
    fx.plinth()
        .args(["image", "rm", "docker-made:2"])
        .assert_success();
    let renamed = fx.td.path().join("docker-renamed.tar");
    docker_archive(
        &renamed,
        std::slice::from_ref(&base),
        Some("config.json"),
        "x:1",
    );
    let out = fx.import(&renamed, &[]).assert_failure();
    assert!(
        out.stderr
            .contains("config.json: the config's file name is not its sha256 digest"),
        "{out}"
    );
    let swapped = fx.write("docker-swapped", &[]);
    docker_archive(&swapped, std::slice::from_ref(&base), None, "x:1");
    // Rewrite the layer member's data in place (same length), keeping the header.
    let mut bytes = fs::read(&swapped).unwrap();
    let at = bytes.windows(7).position(|w| w == b"tool v1").unwrap();
    bytes[at..at + 7].copy_from_slice(b"tool v2");
    fs::write(&swapped, bytes).unwrap();
    let out = fx.import(&swapped, &[]).assert_failure();
    assert!(out.stderr.contains("digest mismatch"), "{out}");
    fx.assert_store_empty();
}

#[test]
fn a_full_disk_leaves_no_partial_layer() {
    if !require_root() {
        return;
    }
    let fx = Fixture::new("image-full");
    fs::create_dir_all(&fx.data).unwrap();
    nix::mount::mount(
        Some("tmpfs"),
        &fx.data,
        Some("tmpfs"),
        nix::mount::MsFlags::empty(),
        Some("size=2m"),
    )
    .unwrap();
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
        }
    }
    let _guard = Unmount(fx.data.clone());
    // One file larger than the file system: refused before writing.
    let one = Raw::new().file("big", &noise(3 << 20)).finish();
    let p = fx.td.path().join("one.tar");
    fs::write(&p, &one).unwrap();
    let out = fx.import(&p, &["--name", "full"]).assert_failure();
    assert!(
        out.stderr
            .contains("entry big: declares 3145728 bytes, more than the"),
        "{out}"
    );
    assert!(
        out.stderr.contains("free on the store's file system"),
        "{out}"
    );
    fx.assert_store_empty();
    // Many small files: the disk fills while writing.
    let mut many = Raw::new();
    for i in 0..64 {
        many.file(&format!("f{i}"), &noise(64 << 10));
    }
    let p = fx.td.path().join("many.tar");
    fs::write(&p, many.finish()).unwrap();
    let out = fx.import(&p, &["--name", "full"]).assert_failure();
    assert!(out.stderr.contains("No space left on device"), "{out}");
    fx.assert_store_empty();
    let used = nix::sys::statvfs::statvfs(&fx.data).unwrap();
    assert!(
        used.blocks_free() * 100 / used.blocks() > 90,
        "the failed import's files were not removed"
    );
}

#[test]
fn data_dir_flag_wins_over_the_environment() {
    if !require_root() {
        return;
    }
    let fx = Fixture::new("image-datadir");
    let env_dir = fx.td.path().join("from-env");
    let p = fx.td.path().join("tiny.tar");
    fs::write(&p, Raw::new().file("hello", b"hi").finish()).unwrap();
    let mut c = fx.import(&p, &["--name", "tiny"]);
    c.env("PLINTH_STATE_DIR", &env_dir).assert_success();
    assert!(fx.data.join("images/tiny.json").is_file());
    assert!(!env_dir.join("images").exists());
    // Without the flag the variable is used.
    let mut c = fx.td.plinth();
    c.env("PLINTH_STATE_DIR", &env_dir)
        .args(["image", "import"])
        .arg(&p)
        .args(["--name", "tiny"]);
    c.assert_success();
    assert!(env_dir.join("images/tiny.json").is_file());
    // The fleet's records follow the flag too.
    let mut c = fx.plinth();
    c.env("PLINTH_STATE_DIR", &env_dir)
        .args(["ls"])
        .assert_success();
    assert!(fx.data.join("fleet.db").is_file());
    assert!(!env_dir.join("fleet.db").exists());
}

#[test]
fn shared_layers_stay_until_the_last_image_goes() {
    if !require_root() {
        return;
    }
    let fx = Fixture::new("image-shared");
    let base = Raw::new().file("bin/base", b"base").finish();
    let a = Raw::new().file("a", b"a").finish();
    let b = Raw::new().file("b", b"b").finish();
    let pa = fx.td.path().join("a.tar");
    let pb = fx.td.path().join("b.tar");
    docker_archive(&pa, &[base.clone(), a], None, "localhost/a:1");
    docker_archive(&pb, &[base.clone(), b], None, "localhost/b:1");
    fx.import(&pa, &[]).assert_success();
    let out = fx.import(&pb, &[]).assert_success();
    assert!(out.stdout.contains("1 new, 1 already stored"), "{out}");
    let count = || fs::read_dir(fx.data.join("layers/sha256")).unwrap().count();
    assert_eq!(count(), 3);
    let shared = fx.data.join("layers/sha256").join(sha256(&base));
    fx.plinth().args(["image", "rm", "a:1"]).assert_success();
    assert_eq!(count(), 2);
    assert!(shared.is_dir());
    let out = fx.plinth().args(["image", "rm", "a:1"]).assert_failure();
    assert!(out.stderr.contains("image a:1: no such image"), "{out}");
    fx.plinth().args(["image", "rm", "b:1"]).assert_success();
    fx.assert_store_empty();
}

#[test]
fn not_an_image_is_named() {
    if !require_root() {
        return;
    }
    let mut fx = Fixture::new("image-notimage");
    let p = fx.write("noise", &noise(4096));
    let out = fx.import(&p, &[]).assert_failure();
    assert!(
        out.stderr
            .contains(&format!("{}: not an image: not a tar archive", p.display())),
        "{out}"
    );
    let empty = fx.td.path().join("emptydir");
    fs::create_dir(&empty).unwrap();
    let out = fx.import(&empty, &[]).assert_failure();
    assert!(
        out.stderr
            .contains("a directory without oci-layout or manifest.json"),
        "{out}"
    );
    let docker_gz = fx.td.path().join("docker.tar");
    docker_archive(
        &docker_gz,
        &[Raw::new().file("x", b"x").finish()],
        None,
        "x:1",
    );
    let gz = fx.write("docker-gz", &gzip(&fs::read(&docker_gz).unwrap()));
    let out = fx.import(&gz, &[]).assert_failure();
    assert!(out.stderr.contains("a compressed image archive"), "{out}");
    fx.assert_store_empty();
}

// ---------------------------------------------------------------------------------------
// The proof: podman-built images, in podman's three formats, through plinth and back.

/// Removes podman images when dropped.
struct PodmanImages(Vec<String>);

impl Drop for PodmanImages {
    fn drop(&mut self) {
        for i in &self.0 {
            let _ = std::process::Command::new("podman")
                .args(["rmi", "--force", i])
                .output();
        }
    }
}

/// A read-only overlay of an image's layers, mounted by the test (an oracle
/// independent of plinth's own view code), unmounted when dropped.
struct Overlay(PathBuf);

impl Overlay {
    fn mount(layers_bottom_first: &[PathBuf], at: &Path) -> Overlay {
        fs::create_dir_all(at).unwrap();
        let lower: Vec<String> = layers_bottom_first
            .iter()
            .rev()
            .map(|p| p.display().to_string())
            .collect();
        nix::mount::mount(
            Some("overlay"),
            at,
            Some("overlay"),
            nix::mount::MsFlags::MS_RDONLY,
            Some(format!("lowerdir={}", lower.join(":")).as_str()),
        )
        .unwrap();
        Overlay(at.to_path_buf())
    }
}

impl Drop for Overlay {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
    }
}

fn podman_out(td: &TestDir, args: &[&str]) -> String {
    let mut c = td.command("podman");
    c.args(args).timeout(std::time::Duration::from_secs(180));
    c.assert_success().stdout
}

/// What the test image shows from inside, one line per fact.
const PROBE: &str = "cat /etc/greeting /tmp/new /srv/extra.txt /srv/www/index.html; pwd; \
     echo GREETING=$GREETING; \
     for f in /etc/gone /tmp/old; do test -e $f && echo $f visible || echo $f hidden; done";

#[test]
fn podman_images_round_trip_through_plinth() {
    if !require_root() || !require_tool("podman") || !require_tool("runc") {
        return;
    }
    let fx = Fixture::new("image-podman");
    let td = &fx.td;
    let tag = format!("{}", std::process::id());
    let base_ref = format!("localhost/plinth-image-base:{tag}");
    let app_ref = format!("localhost/plinth-image-app:{tag}");
    let back_ref = format!("localhost/plinth-image-back:{tag}");
    let _cleanup = PodmanImages(vec![
        back_ref.clone(),
        "localhost/podman-docker-archive:latest".into(),
        app_ref.clone(),
        base_ref.clone(),
    ]);

    // The base: a busybox root packed with the tar crate, `podman import`ed.
    let rootfs = td.path().join("rootfs");
    build_busybox_rootfs(&rootfs, "plinth-image");
    fs::write(rootfs.join("etc/greeting"), "hello from the base\n").unwrap();
    fs::write(rootfs.join("etc/gone"), "deleted by the next layer\n").unwrap();
    fs::write(rootfs.join("tmp/old"), "hidden by an opaque directory\n").unwrap();
    let rootfs_tar = td.path().join("rootfs.tar");
    let mut b = tar::Builder::new(fs::File::create(&rootfs_tar).unwrap());
    b.follow_symlinks(false);
    b.append_dir_all(".", &rootfs).unwrap();
    b.into_inner().unwrap();
    podman_out(
        td,
        &["import", "--quiet", rootfs_tar.to_str().unwrap(), &base_ref],
    );
    // The app: a RUN that deletes a file (a whiteout) and replaces /tmp (an opaque
    // directory), a COPY, ENV, WORKDIR, CMD.
    let ctx = td.path().join("ctx");
    fs::create_dir(&ctx).unwrap();
    fs::write(ctx.join("extra.txt"), "copied in\n").unwrap();
    fs::write(
        ctx.join("Containerfile"),
        format!(
            "FROM {base_ref}\n\
             RUN rm /etc/gone && rm -rf /tmp && mkdir -m 1777 /tmp && echo new > /tmp/new && mkdir -p /srv/www && echo served > /srv/www/index.html\n\
             COPY extra.txt /srv/extra.txt\n\
             ENV GREETING=hi\n\
             WORKDIR /srv\n\
             CMD [\"/bin/sh\", \"-c\", \"cat /etc/greeting\"]\n"
        ),
    )
    .unwrap();
    podman_out(
        td,
        &[
            "build",
            "--runtime",
            "runc",
            "--network",
            "none",
            "-q",
            "-t",
            &app_ref,
            ctx.to_str().unwrap(),
        ],
    );
    let want = podman_out(
        td,
        &[
            "run",
            "--runtime",
            "runc",
            "--rm",
            "--network",
            "none",
            &app_ref,
            "/bin/sh",
            "-c",
            PROBE,
        ],
    );
    assert!(
        want.contains("/etc/gone hidden") && want.contains("/tmp/old hidden"),
        "{want}"
    );

    // Saved in podman's three formats, each imported.
    let saved = td.path().join("saved");
    fs::create_dir(&saved).unwrap();
    let mut layers_of = Vec::new();
    for (format, file) in [
        ("docker-archive", "app-docker.tar"),
        ("oci-archive", "app-oci.tar"),
        ("oci-dir", "app-oci-dir"),
    ] {
        let path = saved.join(file);
        podman_out(
            td,
            &[
                "save",
                "--format",
                format,
                "-o",
                path.to_str().unwrap(),
                &app_ref,
            ],
        );
        let name = format!("podman-{format}");
        let out = fx.import(&path, &["--name", &name]).assert_success();
        assert!(
            out.stdout
                .contains(&format!("imported {name} ({format}, 3 layers")),
            "{out}"
        );
        let v = fx.plinth().args(["image", "inspect", &name]).json();
        assert_eq!(
            v["config"]["Cmd"],
            json!(["/bin/sh", "-c", "cat /etc/greeting"])
        );
        assert_eq!(v["config"]["WorkingDir"], json!("/srv"));
        assert!(
            v["config"]["Env"]
                .as_array()
                .unwrap()
                .contains(&json!("GREETING=hi")),
            "{v}"
        );
        layers_of.push(v["layers"].clone());
    }
    // The three name the same layers, stored once.
    assert_eq!(layers_of[0], layers_of[1]);
    assert_eq!(layers_of[0], layers_of[2]);
    assert_eq!(
        fs::read_dir(fx.data.join("layers/sha256")).unwrap().count(),
        3
    );

    // The overlay of the lowers, mounted here: the whiteout and the opaque directory hide
    // what they should.
    let layers: Vec<PathBuf> = layers_of[0]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| PathBuf::from(l.as_str().unwrap()))
        .collect();
    let top = &layers[1];
    let gone = fs::symlink_metadata(top.join("etc/gone")).unwrap();
    assert!(gone.file_type().is_char_device() && gone.rdev() == 0);
    assert_eq!(
        xattr::get(top.join("tmp"), "trusted.overlay.opaque")
            .unwrap()
            .as_deref(),
        Some(&b"y"[..])
    );
    let view = Overlay::mount(&layers, &td.path().join("view"));
    assert!(!view.0.join("etc/gone").exists());
    assert!(!view.0.join("tmp/old").exists());
    assert_eq!(fs::read_to_string(view.0.join("tmp/new")).unwrap(), "new\n");
    assert_eq!(
        fs::read_to_string(view.0.join("etc/greeting")).unwrap(),
        "hello from the base\n"
    );
    assert_eq!(
        fs::metadata(view.0.join("tmp"))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777,
        0o1777
    );

    // Run the probe from the view with plinth's OCI runtime, the image's env and cwd.
    let id = container_id();
    let _guard = td.guard(&id);
    let bundle = td
        .bundle()
        .set("/root/path", json!(view.0))
        .set("/root/readonly", json!(true))
        .set("/process/cwd", json!("/srv"))
        .set("/process/env", json!(["PATH=/bin", "GREETING=hi"]))
        .args(&["/bin/sh", "-c", PROBE])
        .write();
    let ours = td
        .plinth()
        .args(["run", "--bundle"])
        .arg(bundle.path())
        .arg(&id)
        .assert_success()
        .stdout;
    assert_eq!(ours, want, "the image runs differently under plinth");
    drop(view);

    // Fleet containers made from the image: its layers stacked as the lower layers,
    // nothing copied; its Cmd, Env and WorkingDir are their defaults.
    let _fleet = FleetGuard(&fx);
    fs::set_permissions(td.path(), fs::Permissions::from_mode(0o711)).unwrap();
    fx.plinth()
        .args(["new", "from-image", "--base", "image:podman-oci-dir"])
        .assert_success();
    fx.plinth()
        .args([
            "new",
            "from-image-env",
            "--base",
            "image:podman-oci-dir",
            "--",
        ])
        .args([
            "/bin/sh",
            "-c",
            "echo $GREETING $(pwd) $(cat /srv/extra.txt); exec sleep 1000",
        ])
        .assert_success();
    for name in ["from-image", "from-image-env"] {
        fx.plinth().args(["start", name]).assert_success();
    }
    let logs = |name: &str| fx.plinth().args(["logs", name]).output().stdout;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while logs("from-image").is_empty() || logs("from-image-env").is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "no output from the image's containers"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(
        logs("from-image"),
        "hello from the base\n",
        "the image's Cmd"
    );
    assert_eq!(
        logs("from-image-env"),
        "hi /srv copied in\n",
        "the image's Env and WorkingDir"
    );
    let ls = fx.plinth().args(["ls", "--format", "json"]).json();
    let env = ls
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "from-image-env")
        .unwrap();
    assert_eq!(
        (env["state"].as_str(), env["base"].as_str()),
        (Some("running"), Some("image:podman-oci-dir"))
    );
    let pid = env["pid"].as_i64().unwrap();
    let lower = fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .find(|l| l.contains("containers/from-image-env/rootfs"))
        .map(String::from)
        .unwrap_or_default();
    assert!(
        lower.contains("lowerdir="),
        "the root is an overlay: {lower}"
    );
    assert!(fs::metadata(format!("/proc/{pid}/root/srv/www/index.html")).is_ok());
    // The image is in use: not removed.
    let out = fx.plinth().args(["image", "rm", "podman-oci-dir"]).output();
    assert!(!out.status.success());
    assert!(
        out.stderr.contains("in use by from-image, from-image-env"),
        "{}",
        out.stderr
    );
    fx.plinth()
        .args(["rm", "--force", "from-image", "from-image-env"])
        .assert_success();
    fx.plinth()
        .args(["image", "rm", "podman-oci-dir"])
        .assert_success();

    // plinth's own view, through `plinth check image:NAME`: no mount is left behind.
    let report = fx
        .plinth()
        .args(["check", "image:podman-oci-archive", "--format", "json"])
        .json();
    assert!(
        report["summary"]["files"].as_u64().unwrap() >= 1,
        "{report}"
    );
    let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains("plinth-image-"),
        "a view is still mounted:\n{mounts}"
    );

    // Exported, loaded back into podman, run by runc: the same answers.
    let exported = td.path().join("exported.tar");
    fx.plinth()
        .args(["image", "export", "podman-docker-archive", "-o"])
        .arg(&exported)
        .assert_success();
    let loaded = podman_out(td, &["load", "-q", "-i", exported.to_str().unwrap()]);
    assert!(
        loaded.contains("localhost/podman-docker-archive:latest"),
        "{loaded}"
    );
    podman_out(
        td,
        &["tag", "localhost/podman-docker-archive:latest", &back_ref],
    );
    let back = podman_out(
        td,
        &[
            "run",
            "--runtime",
            "runc",
            "--rm",
            "--network",
            "none",
            &back_ref,
            "/bin/sh",
            "-c",
            PROBE,
        ],
    );
    assert_eq!(
        back, want,
        "the exported image runs differently under podman"
    );
    let cmd = podman_out(
        td,
        &[
            "run",
            "--runtime",
            "runc",
            "--rm",
            "--network",
            "none",
            &back_ref,
        ],
    );
    assert_eq!(cmd, "hello from the base\n");
    // Re-imported, the export gives the same layers.
    let out = fx.import(&exported, &["--name", "again"]).assert_success();
    assert!(out.stdout.contains("(oci-archive, 3 layers"), "{out}");
    let again = fx.plinth().args(["image", "inspect", "again"]).json();
    let v = Overlay::mount(
        &again["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| PathBuf::from(l.as_str().unwrap()))
            .collect::<Vec<_>>(),
        &td.path().join("view-again"),
    );
    assert!(!v.0.join("etc/gone").exists() && !v.0.join("tmp/old").exists());
    assert_eq!(
        fs::read_to_string(v.0.join("srv/extra.txt")).unwrap(),
        "copied in\n"
    );
}
