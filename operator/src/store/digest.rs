//! What a snapshot's bytes say about themselves. etcd streams a snapshot as its database file followed by the
//! sha256 of that file (32 bytes); `etcdutl snapshot restore` checks that hash. The digest checks it as the
//! bytes pass, and hashes the whole stream, which is what the stored object must hash to.

use ring::digest::{Context, SHA256, SHA256_OUTPUT_LEN};

/// The hashes of a stream, fed one chunk at a time, holding back only the last 32 bytes.
pub struct SnapshotHasher {
    whole: Context,
    database: Context,
    tail: Vec<u8>,
    size: u64,
}

/// What a finished stream hashed to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotDigest {
    pub size: u64,
    /// sha256 of every byte, hex.
    pub sha256: String,
    /// The stream ends with the sha256 of the bytes before it, as etcd appends it.
    pub database_intact: bool,
}

impl Default for SnapshotHasher {
    fn default() -> Self {
        Self {
            whole: Context::new(&SHA256),
            database: Context::new(&SHA256),
            tail: Vec::with_capacity(SHA256_OUTPUT_LEN * 2),
            size: 0,
        }
    }
}

impl SnapshotHasher {
    pub fn update(&mut self, chunk: &[u8]) {
        self.size += chunk.len() as u64;
        self.whole.update(chunk);
        if chunk.len() >= SHA256_OUTPUT_LEN {
            // Everything held back, and all of this chunk but its last 32 bytes, is database.
            self.database.update(&self.tail);
            let (database, tail) = chunk.split_at(chunk.len() - SHA256_OUTPUT_LEN);
            self.database.update(database);
            self.tail.clear();
            self.tail.extend_from_slice(tail);
        } else {
            self.tail.extend_from_slice(chunk);
            let surplus = self.tail.len().saturating_sub(SHA256_OUTPUT_LEN);
            self.database.update(&self.tail[..surplus]);
            self.tail.drain(..surplus);
        }
    }

    pub fn finish(self) -> SnapshotDigest {
        let database = self.database.finish();
        SnapshotDigest {
            size: self.size,
            sha256: hex(self.whole.finish().as_ref()),
            database_intact: self.tail.len() == SHA256_OUTPUT_LEN && database.as_ref() == self.tail.as_slice(),
        }
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `bytes` for people: B, KiB, MiB or GiB with one decimal.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 { format!("{bytes} B") } else { format!("{value:.1} {}", UNITS[unit]) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn snapshot_of(database: &[u8]) -> Vec<u8> {
        let mut stream = database.to_vec();
        stream.extend_from_slice(ring::digest::digest(&SHA256, database).as_ref());
        stream
    }

    fn digest_in_chunks(stream: &[u8], sizes: &[usize]) -> SnapshotDigest {
        let mut hasher = SnapshotHasher::default();
        let mut rest = stream;
        let mut sizes = sizes.iter().cycle();
        while !rest.is_empty() {
            let size = sizes.next().copied().unwrap_or(1).clamp(1, rest.len());
            let (chunk, after) = rest.split_at(size);
            hasher.update(chunk);
            rest = after;
        }
        hasher.finish()
    }

    proptest! {
        #[test]
        fn a_snapshot_is_intact_however_it_is_cut(database in proptest::collection::vec(any::<u8>(), 0..3000),
                                                  sizes in proptest::collection::vec(1usize..100, 1..8)) {
            let stream = snapshot_of(&database);
            let digest = digest_in_chunks(&stream, &sizes);
            prop_assert!(digest.database_intact);
            prop_assert_eq!(digest.size, stream.len() as u64);
            prop_assert_eq!(digest.sha256, hex(ring::digest::digest(&SHA256, &stream).as_ref()));
        }

        #[test]
        fn a_changed_byte_is_found(database in proptest::collection::vec(any::<u8>(), 1..3000),
                                   at in any::<prop::sample::Index>(),
                                   sizes in proptest::collection::vec(1usize..100, 1..8)) {
            let mut stream = snapshot_of(&database);
            let at = at.index(stream.len());
            stream[at] ^= 0x01;
            prop_assert!(!digest_in_chunks(&stream, &sizes).database_intact);
        }
    }

    #[test]
    fn a_stream_shorter_than_a_hash_is_not_intact() {
        assert!(!digest_in_chunks(b"short", &[2]).database_intact);
        assert!(!digest_in_chunks(b"", &[2]).database_intact);
    }

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(human_size(512), "512 B");
        assert_eq!(human_size(20 * 1024), "20.0 KiB");
        assert_eq!(human_size(256 * 1024 * 1024 + 32), "256.0 MiB");
        assert_eq!(human_size(3 * 1024 * 1024 * 1024), "3.0 GiB");
    }
}
