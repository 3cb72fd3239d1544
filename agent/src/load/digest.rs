//! A load's content digest: what makes a repeated load id the same load.
//! Files are hashed as they stream; the digest of the whole load covers each
//! file's table and SHA-256, in order (file names are only labels).

use ring::digest::{Context, SHA256};

use super::{FileMapping, LoadSpec};

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The load's digest from each file's table and SHA-256 (hex).
#[cfg(test)]
pub fn of_files<'a>(files: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    of_mapped_files(files.into_iter().map(|(t, s)| (t, s, None)))
}

/// The same, where a file's mapping (the Platform's csv_columns and
/// target_columns) is part of its content: the same file loaded with
/// another mapping is other data. Files without a mapping hash as before.
pub fn of_mapped_files<'a>(
    files: impl IntoIterator<Item = (&'a str, &'a str, Option<&'a FileMapping>)>,
) -> String {
    let mut ctx = Context::new(&SHA256);
    for (table, sha256, mapping) in files {
        ctx.update(table.as_bytes());
        ctx.update(b"\n");
        ctx.update(sha256.as_bytes());
        ctx.update(b"\n");
        if let Some(m) = mapping {
            ctx.update(b"csv_columns\0");
            for c in &m.csv_columns {
                ctx.update(c.as_bytes());
                ctx.update(b"\0");
            }
            ctx.update(b"target_columns\0");
            for c in &m.target_columns {
                ctx.update(c.as_bytes());
                ctx.update(b"\0");
            }
        }
    }
    hex(ctx.finish().as_ref())
}

/// The digest the client declared, when it declared every file's SHA-256.
pub fn declared(spec: &LoadSpec) -> Option<String> {
    let files: Option<Vec<(&str, &str, Option<&FileMapping>)>> = spec
        .files
        .iter()
        .map(|f| {
            f.sha256
                .as_deref()
                .map(|s| (f.table.as_str(), s, f.mapping.as_ref()))
        })
        .collect();
    files.map(of_mapped_files)
}

/// One file's running SHA-256.
pub struct FileHash(Context);

impl FileHash {
    pub fn new() -> Self {
        FileHash(Context::new(&SHA256))
    }

    pub fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }

    pub fn finish(self) -> String {
        hex(self.0.finish().as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_and_table_make_the_digest_names_do_not() {
        let a = of_files([("item", "aa"), ("category", "bb")]);
        assert_eq!(a, of_files([("item", "aa"), ("category", "bb")]));
        assert_ne!(a, of_files([("item", "ab"), ("category", "bb")]));
        assert_ne!(a, of_files([("category", "bb"), ("item", "aa")]));
        assert_ne!(a, of_files([("items", "aa"), ("category", "bb")]));
        let mut h = FileHash::new();
        h.update(b"ab");
        h.update(b"c");
        assert_eq!(
            h.finish(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
