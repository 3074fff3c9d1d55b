//! BucketDB as a library: the seed's Go SDK example, in Rust.
//!
//! Run with `cargo run --example embedded`. Data goes to a fresh temporary directory.

use anyhow::Context;
use bucketdb::{BucketDb, Config};
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let config = Config {
        storage_path: dir.path().join("data"),
        metadata_path: dir.path().join("meta"),
        ..Config::default()
    };
    let db = BucketDb::open(&config)?;

    // 1. Streaming upload of a 10 MiB "video" (three chunks).
    let video: Vec<u8> = (0..10 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let path = dir.path().join("video.mp4");
    tokio::fs::write(&path, &video).await?;
    let file = tokio::fs::File::open(&path).await?;
    let size = file.metadata().await?.len();
    let stored = db
        .put_object_from_stream("movies", "video.mp4", file, size, None)
        .await?;
    println!(
        "stored {} ({} bytes, ETag {})",
        stored.key, stored.size, stored.etag
    );

    // 2. Strong consistency (a no-op on a single node, shown for parity with the seed).
    db.set_quorum(true);

    // 3. Versions: enable versioning, overwrite, list.
    db.service()
        .set_versioning("movies", bucketdb::Versioning::Enabled)
        .await?;
    db.put_object_from_stream("movies", "video.mp4", &b"a short cut"[..], 11, None)
        .await?;
    for v in db.list_object_versions("movies", "video.mp4")? {
        println!("Ver: {}, Size: {}", v.version_id, v.size);
    }

    // 4. Streaming download of the first version, verified on the way out.
    let first = db.list_object_versions("movies", "video.mp4")?;
    let oldest = first.last().context("no versions")?;
    let (record, mut reader) = db
        .get_object_as_stream("movies", "video.mp4", Some(&oldest.version_id))
        .await?;
    let mut back = Vec::with_capacity(record.size as usize);
    reader.read_to_end(&mut back).await?;
    anyhow::ensure!(
        Sha256::digest(&back) == Sha256::digest(&video),
        "downloaded bytes differ"
    );
    println!("downloaded {} bytes, SHA-256 matches", back.len());
    Ok(())
}
