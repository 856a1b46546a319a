//! The canonical tar served from the exploded store (`/blobs/<image ID>`): every range is
//! the same slice of the exported tar, a range starts regenerating where it starts (the
//! objects before it are not read), and a damaged store gives a truncated body, never wrong
//! bytes of the right length.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::*;
use acikit::Store;
use acikit::schema::ImageId;
use acikit::serve::{RunningServer, ServeOptions, Server};
use acikit::store::ContentDigest;
use acikit::testing::range::{Objects, tar_range};
use acikit::testing::regenerate::ObjectPaths;

/// The files of the test image: three large ones (one object each) and small ones around.
fn files() -> Vec<(String, Vec<u8>)> {
    let mut files = vec![
        ("a/first".to_string(), pseudo_random(11, 1_500_000)),
        ("c/big".to_string(), pseudo_random(12, 3_000_000)),
        ("d/mid".to_string(), pseudo_random(13, 700_000)),
        ("e/empty".to_string(), Vec::new()),
        ("z/last".to_string(), pseudo_random(14, 300_001)),
    ];
    for i in 0..20u64 {
        files.push((
            format!("b/small-{i}"),
            pseudo_random(100 + i, 100 + 250 * i as usize),
        ));
    }
    files
}

struct Setup {
    _dir: tempfile::TempDir,
    store: Store,
    server: RunningServer,
    tar: Vec<u8>,
    id: ImageId,
    url: String,
    http: reqwest::Client,
    files: Vec<(String, Vec<u8>)>,
}

impl Setup {
    async fn new() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let files = files();
        let borrowed: Vec<(&str, &[u8])> = files
            .iter()
            .map(|(p, c)| (p.as_str(), c.as_slice()))
            .collect();
        let tar_path = dir.path().join("image.tar");
        let tar = image_tar(
            &dir.path().join("layout"),
            &manifest_for("example.test/range", "1"),
            &borrowed,
            &tar_path,
        );
        assert!(tar.len() > 5_000_000);
        let store = Store::open(dir.path().join("store")).await.unwrap();
        let imported = store
            .import_file(
                &tar_path,
                Default::default(),
                acikit::progress::Observer::default(),
            )
            .await
            .unwrap();
        let server = Server::new(
            store.clone(),
            ServeOptions::new("127.0.0.1:0".parse().unwrap()),
        )
        .start()
        .await
        .unwrap();
        let url = format!("http://{}/blobs/{}", server.local_addr(), imported.image_id);
        Setup {
            _dir: dir,
            store,
            server,
            tar,
            id: imported.image_id,
            url,
            http: reqwest::Client::new(),
            files,
        }
    }

    /// Offset in the tar of the content of `rootfs/<path>`, and its length.
    fn content(&self, path: &str) -> (usize, usize) {
        let name = format!("rootfs/{path}");
        let at = header_offset(&self.tar, name.as_bytes()) + 512;
        let len = self.files.iter().find(|(p, _)| p == path).unwrap().1.len();
        assert_eq!(&self.tar[at..at + len], self.file(path));
        (at, len)
    }

    fn file(&self, path: &str) -> &[u8] {
        &self.files.iter().find(|(p, _)| p == path).unwrap().1
    }

    fn object(&self, path: &str) -> PathBuf {
        let digest = ContentDigest::of(self.file(path));
        acikit::testing::paths::of(&self.store).object(&digest)
    }

    /// GET with `range`: the status, the `Content-Range` and the body; `Err` if the response
    /// was cut short (a failure before the first chunk cuts it before the headers).
    async fn get(&self, range: Option<&str>) -> reqwest::Result<(u16, Option<String>, Vec<u8>)> {
        let mut request = self.http.get(&self.url);
        if let Some(range) = range {
            request = request.header("range", range);
        }
        let response = request.send().await?;
        let status = response.status().as_u16();
        let content_range = response
            .headers()
            .get("content-range")
            .map(|v| v.to_str().unwrap().to_string());
        let body = response.bytes().await?.to_vec();
        Ok((status, content_range, body))
    }

    /// Asserts that `bytes=<spec>` answers 206 with `self.tar[start..end]`.
    async fn expect_slice(&self, spec: &str, start: usize, end: usize) {
        let (status, content_range, body) = self
            .get(Some(&format!("bytes={spec}")))
            .await
            .unwrap_or_else(|e| panic!("bytes={spec}: {e}"));
        assert_eq!(status, 206, "bytes={spec}");
        assert_eq!(
            content_range.as_deref(),
            Some(format!("bytes {start}-{}/{}", end - 1, self.tar.len()).as_str()),
            "bytes={spec}"
        );
        assert!(
            body == self.tar[start..end],
            "bytes={spec}: {} bytes, not the slice {start}..{end}",
            body.len()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_range_is_the_same_slice_of_the_exported_tar() {
    let s = Setup::new().await;
    let len = s.tar.len();

    // The whole tar, and the exported one, are the tar.
    let (status, _, body) = s.get(None).await.unwrap();
    assert_eq!(status, 200);
    assert!(body == s.tar);
    let exported = s._dir.path().join("exported.tar");
    s.store
        .export_to(
            &s.id,
            &exported,
            acikit::store::ExportCompression::None,
            Default::default(),
        )
        .await
        .unwrap();
    assert!(std::fs::read(&exported).unwrap() == s.tar);

    let (big, big_len) = s.content("c/big");
    let (last, last_len) = s.content("z/last");
    let header = header_offset(&s.tar, b"rootfs/d/mid");
    let cases: Vec<(String, usize, usize)> = vec![
        // In the middle of a large object, and across the end of one.
        (
            format!("{}-{}", big + 1_234_567, big + 1_300_000),
            big + 1_234_567,
            big + 1_300_001,
        ),
        (
            format!("{}-{}", big + big_len - 10, big + big_len + 600),
            big + big_len - 10,
            big + big_len + 601,
        ),
        // Inside a header block, and from a header into its content.
        (
            format!("{}-{}", header + 100, header + 200),
            header + 100,
            header + 201,
        ),
        (format!("{}-", header + 7), header + 7, len),
        // The first byte, the very last byte, the last file to the end.
        ("0-0".into(), 0, 1),
        (format!("{}-{}", len - 1, len - 1), len - 1, len),
        (format!("{}-", len - 1), len - 1, len),
        (
            format!("{last}-{}", last + last_len - 1),
            last,
            last + last_len,
        ),
        // Multi-MB into the image, to the end and bounded.
        ("4000000-".into(), 4_000_000, len),
        ("5000000-5100000".into(), 5_000_000, 5_100_001),
        // Suffix ranges, one longer than the tar.
        ("-1".into(), len - 1, len),
        ("-1000".into(), len - 1000, len),
        (format!("-{}", len + 10), 0, len),
        // An end past the tar is cut to it.
        (format!("{}-{}", len - 5, len + 100), len - 5, len),
    ];
    for (spec, start, end) in &cases {
        s.expect_slice(spec, *start, *end).await;
    }

    // Pseudo-random ranges, some spanning many records.
    let mut state = 0x1234_5678_9abc_def1u64;
    let mut next = |below: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % below as u64) as usize
    };
    for _ in 0..40 {
        let start = next(len);
        let short = next(2) == 0;
        let end = start + 1 + next((len - start).min(if short { 3000 } else { len }));
        s.expect_slice(&format!("{start}-{}", end - 1), start, end)
            .await;
    }

    let (status, content_range, _) = s.get(Some(&format!("bytes={len}-"))).await.unwrap();
    assert_eq!(status, 416);
    assert_eq!(content_range, Some(format!("bytes */{len}")));
    s.server.shutdown(Duration::from_secs(1));
}

/// The store object of the file whose content comes first in the tar among the large ones,
/// and where its content ends.
fn first_large(s: &Setup) -> (String, usize) {
    ["a/first", "c/big", "d/mid"]
        .iter()
        .map(|p| {
            let (at, len) = s.content(p);
            (p.to_string(), at + len)
        })
        .min_by_key(|(_, end)| *end)
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_range_does_not_read_the_objects_before_it() {
    let s = Setup::new().await;
    let len = s.tar.len();
    let (victim, victim_end) = first_large(&s);
    let object = s.object(&victim);
    let original = std::fs::read(&object).unwrap();
    let start = victim_end + 1000;
    assert!(
        start < len - 1_000_000,
        "the range starts well before the end"
    );

    // Deleted: a range after it is served whole; the full tar, and a range that includes the
    // object, are cut short.
    std::fs::remove_file(&object).unwrap();
    s.expect_slice(&format!("{start}-"), start, len).await;
    s.expect_slice("-1000", len - 1000, len).await;
    s.get(None)
        .await
        .expect_err("a full GET without one of its objects");
    s.get(Some(&format!("bytes={}-", victim_end - 10)))
        .await
        .expect_err("a range that includes the missing object");

    // Shortened: the same.
    std::fs::write(&object, &original[..original.len() / 2]).unwrap();
    s.expect_slice(&format!("{start}-"), start, len).await;
    s.get(None)
        .await
        .expect_err("a full GET with a shortened object");

    // Longer than the recipe says: the same.
    std::fs::write(&object, [&original[..], b"x"].concat()).unwrap();
    s.expect_slice(&format!("{start}-"), start, len).await;
    s.get(None)
        .await
        .expect_err("a full GET with a lengthened object");

    std::fs::write(&object, &original).unwrap();
    assert!(s.get(None).await.unwrap().2 == s.tar);
    s.server.shutdown(Duration::from_secs(1));
}

/// Which objects a regeneration opens: every one goes through the `ObjectPaths` callback.
fn counting(s: &Setup) -> (Objects, Arc<Mutex<Vec<ContentDigest>>>) {
    let opened = Arc::new(Mutex::new(Vec::new()));
    let paths = acikit::testing::paths::of(&s.store).clone();
    let log = opened.clone();
    let objects: ObjectPaths = Arc::new(move |d: &ContentDigest| {
        log.lock().unwrap().push(*d);
        paths.object(d)
    });
    (Objects::Paths(objects), opened)
}

async fn collect(mut range: acikit::testing::range::TarRange) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    while let Some(chunk) = range.next_chunk().await? {
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

#[tokio::test]
async fn tar_range_opens_only_the_objects_in_the_range() {
    let s = Setup::new().await;
    let len = s.tar.len() as u64;
    let recipe = acikit::testing::paths::of(&s.store).recipe(&s.id);
    let run = |start: u64, end: u64| {
        let (objects, opened) = counting(&s);
        let recipe = recipe.clone();
        let id = s.id.sha512();
        async move {
            let range = tar_range(recipe, objects, id, len, start, end)
                .await
                .unwrap();
            let bytes = collect(range).await.unwrap();
            let opened = opened.lock().unwrap().clone();
            (bytes, opened)
        }
    };
    let digest = |path: &str| ContentDigest::of(s.file(path));

    // The whole tar opens every object: the manifest, the 20 small files, the 4 others
    // with content.
    let (bytes, opened) = run(0, len).await;
    assert!(bytes == s.tar);
    assert_eq!(opened.len(), 25, "{opened:?}");
    // The same through the store's object folder.
    let folder = Objects::Folder(acikit::testing::paths::of(&s.store).objects());
    let range = tar_range(recipe.clone(), folder, s.id.sha512(), len, 0, len)
        .await
        .unwrap();
    assert!(collect(range).await.unwrap() == s.tar);

    // Inside one object: that object only, from the middle.
    let (big, _) = s.content("c/big");
    let (start, end) = (big as u64 + 2_000_000, big as u64 + 2_100_000);
    let (bytes, opened) = run(start, end).await;
    assert!(bytes == s.tar[start as usize..end as usize]);
    assert_eq!(opened, vec![digest("c/big")]);

    // Inside a header: none.
    let header = header_offset(&s.tar, b"rootfs/z/last") as u64;
    let (bytes, opened) = run(header + 10, header + 500).await;
    assert!(bytes == s.tar[header as usize + 10..header as usize + 500]);
    assert!(opened.is_empty(), "{opened:?}");

    // The last byte (end-of-archive padding): none.
    let (bytes, opened) = run(len - 1, len).await;
    assert_eq!(bytes, vec![0]);
    assert!(opened.is_empty(), "{opened:?}");

    // The empty range.
    let (bytes, opened) = run(7, 7).await;
    assert!(bytes.is_empty() && opened.is_empty());
}

#[tokio::test]
async fn tar_range_refuses_a_recipe_of_another_image_or_size() {
    let s = Setup::new().await;
    let len = s.tar.len() as u64;
    let recipe = acikit::testing::paths::of(&s.store).recipe(&s.id);
    let objects = Objects::Folder(acikit::testing::paths::of(&s.store).objects());
    let err = tar_range(recipe.clone(), objects.clone(), [7u8; 64], len, 0, len)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), acikit::ErrorKind::CorruptStore, "{err}");
    assert!(err.message().contains("says it is image"), "{err}");
    let err = tar_range(
        recipe.clone(),
        objects.clone(),
        s.id.sha512(),
        len + 1,
        0,
        len,
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind(), acikit::ErrorKind::CorruptStore, "{err}");
    let err = tar_range(
        recipe.clone(),
        objects.clone(),
        s.id.sha512(),
        len,
        10,
        len + 1,
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind(), acikit::ErrorKind::InvalidArgument, "{err}");

    // A truncated recipe: refused before any byte if its footer is gone.
    let saved = std::fs::read(&recipe).unwrap();
    std::fs::write(&recipe, &saved[..saved.len() - 50]).unwrap();
    let err = tar_range(recipe.clone(), objects.clone(), s.id.sha512(), len, 0, len)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), acikit::ErrorKind::CorruptStore, "{err}");
    // Over HTTP: an error status, not a body.
    assert_eq!(s.get(None).await.unwrap().0, 500);

    // A missing recipe.
    std::fs::remove_file(&recipe).unwrap();
    let err = tar_range(recipe.clone(), objects.clone(), s.id.sha512(), len, 0, len)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), acikit::ErrorKind::CorruptStore, "{err}");
    std::fs::write(&recipe, &saved).unwrap();
    let (status, _, body) = s.get(None).await.unwrap();
    assert_eq!(status, 200);
    assert!(body == s.tar);
}

/// Regeneration speed of the serving path on the Debian image of the benchmarks (without
/// sockets): `tar_range` over the whole tar (objects opened in the store's folder, and by
/// full paths), and of its last byte, against reading the tar file and against the hashed
/// `export_reader`.
/// `cargo test --release -p acikit --test it -- serve_range:: --ignored --nocapture`
/// (`ACIKIT_BENCH_DIR` as for `bench/serve.sh`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement; run with --ignored --nocapture"]
async fn measure_debian_image() {
    use std::time::Instant;
    use tokio::io::AsyncReadExt;
    let dir = std::env::var_os("ACIKIT_BENCH_DIR").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/bench"),
        PathBuf::from,
    );
    let tar_path = dir.join("debian-minbase.tar");
    if !tar_path.exists() {
        eprintln!("{} is missing: run bench/make-image.sh", tar_path.display());
        return;
    }
    let scratch = tempfile::tempdir().unwrap();
    let store = Store::open(scratch.path().join("store")).await.unwrap();
    let imported = store
        .import_file(
            &tar_path,
            Default::default(),
            acikit::progress::Observer::default(),
        )
        .await
        .unwrap();
    let (id, len) = (imported.image_id.clone(), imported.tar_size);
    let recipe = acikit::testing::paths::of(&store).recipe(&id);
    let folder = Objects::Folder(acikit::testing::paths::of(&store).objects());
    let paths = acikit::testing::paths::of(&store).clone();
    let by_path = Objects::Paths(Arc::new(move |d: &ContentDigest| paths.object(d)));
    let whole = |objects: Objects, start: u64| {
        let recipe = recipe.clone();
        let id = id.sha512();
        async move {
            let started = Instant::now();
            let mut range = tar_range(recipe, objects, id, len, start, len)
                .await
                .unwrap();
            let mut got = 0u64;
            while let Some(chunk) = range.next_chunk().await.unwrap() {
                got += chunk.len() as u64;
            }
            assert_eq!(got, len - start);
            started.elapsed().as_secs_f64()
        }
    };
    let mut best = [f64::MAX; 5];
    for _ in 0..7 {
        let started = Instant::now();
        let mut file = tokio::fs::File::open(&tar_path).await.unwrap();
        let mut buf = vec![0u8; 256 * 1024];
        let mut read = 0u64;
        loop {
            let n = file.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            read += n as u64;
        }
        assert_eq!(read, len);
        best[0] = best[0].min(started.elapsed().as_secs_f64());
        best[1] = best[1].min(whole(folder.clone(), 0).await);
        best[2] = best[2].min(whole(by_path.clone(), 0).await);
        best[3] = best[3].min(whole(folder.clone(), len - 1).await);

        let started = Instant::now();
        let mut reader = store.export_reader(&id).await.unwrap();
        let mut got = 0u64;
        while let Some(chunk) = reader.next_chunk().await.unwrap() {
            got += chunk.len() as u64;
        }
        assert_eq!(got, len);
        best[4] = best[4].min(started.elapsed().as_secs_f64());
    }
    let ms = |s: f64| s * 1e3;
    let speed = |s: f64| len as f64 / 1e6 / s;
    println!(
        "{len} bytes, {} entries (best of 7): read the tar file {:.1} ms ({:.0} MB/s); \
         tar_range whole {:.1} ms ({:.0} MB/s), by full paths {:.1} ms ({:.0} MB/s), last byte \
         {:.1} ms; export_reader (SHA-512) {:.1} ms ({:.0} MB/s)",
        imported.entries,
        ms(best[0]),
        speed(best[0]),
        ms(best[1]),
        speed(best[1]),
        ms(best[2]),
        speed(best[2]),
        ms(best[3]),
        ms(best[4]),
        speed(best[4]),
    );
}
