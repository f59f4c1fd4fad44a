//! Which files `imgpipe submit` sends: the files named, and every file
//! under the folders named (in name order), kept if their first bytes are an
//! image format the server reads, skipped with a note otherwise. Each keeps
//! its path relative to the argument it came from, which names it on the
//! server and under `--out-dir`.

use std::io::Read;
use std::path::{Path, PathBuf};

/// One file to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Input {
    pub path: PathBuf,
    /// `a/b.jpg` for `DIR/a/b.jpg` given `DIR`; the file name for a file.
    pub name: String,
    pub size: u64,
}

/// The inputs found, and why the other files were skipped.
#[derive(Debug, Default)]
pub struct Found {
    pub inputs: Vec<Input>,
    pub skipped: Vec<(PathBuf, String)>,
}

/// Whether `head` (a file's first bytes) starts like an image the server reads.
pub fn looks_like_image(head: &[u8]) -> bool {
    head.starts_with(&[0xFF, 0xD8, 0xFF])
        || head.starts_with(b"\x89PNG\r\n\x1a\n")
        || head.starts_with(b"GIF87a")
        || head.starts_with(b"GIF89a")
        || head.starts_with(b"BM")
        || head.starts_with(b"II*\0")
        || head.starts_with(b"MM\0*")
        || (head.len() >= 12 && &head[..4] == b"RIFF" && &head[8..12] == b"WEBP")
}

fn head(path: &Path) -> std::io::Result<Vec<u8>> {
    let mut buf = vec![0u8; 16];
    let mut file = std::fs::File::open(path)?;
    let mut n = 0;
    while n < buf.len() {
        match file.read(&mut buf[n..])? {
            0 => break,
            read => n += read,
        }
    }
    buf.truncate(n);
    Ok(buf)
}

/// Every image under `paths`.
pub fn collect(paths: &[PathBuf]) -> Found {
    let mut found = Found::default();
    for root in paths {
        match std::fs::metadata(root) {
            Err(e) => found.skipped.push((root.clone(), e.to_string())),
            Ok(meta) if meta.is_dir() => walk(root, root, &mut found),
            Ok(_) => {
                let name = root
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_else(|| root.display().to_string());
                consider(root, name, &mut found);
            }
        }
    }
    found
}

fn walk(root: &Path, dir: &Path, found: &mut Found) {
    let mut entries: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(entries) => entries.filter_map(|e| e.ok().map(|e| e.path())).collect(),
        Err(e) => {
            found.skipped.push((dir.to_path_buf(), e.to_string()));
            return;
        }
    };
    entries.sort();
    for path in entries {
        let hidden = path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with('.'));
        if hidden {
            continue;
        }
        if path.is_dir() {
            walk(root, &path, found);
        } else {
            let name = path
                .strip_prefix(root)
                .unwrap_or(&path)
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join("/");
            consider(&path, name, found);
        }
    }
}

fn consider(path: &Path, name: String, found: &mut Found) {
    match head(path) {
        Ok(bytes) if looks_like_image(&bytes) => found.inputs.push(Input {
            path: path.to_path_buf(),
            name,
            size: std::fs::metadata(path).map(|m| m.len()).unwrap_or(0),
        }),
        Ok(_) => found
            .skipped
            .push((path.to_path_buf(), "not an image".to_string())),
        Err(e) => found.skipped.push((path.to_path_buf(), e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_by_content_with_relative_names() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("photos");
        std::fs::create_dir_all(root.join("trip/day1")).unwrap();
        std::fs::write(root.join("a.jpg"), [0xFF, 0xD8, 0xFF, 0xE0, 0, 0]).unwrap();
        std::fs::write(root.join("trip/day1/b.dat"), b"\x89PNG\r\n\x1a\nrest").unwrap();
        std::fs::write(root.join("notes.txt"), b"hello").unwrap();
        std::fs::write(root.join(".hidden.png"), b"\x89PNG\r\n\x1a\n").unwrap();
        let found = collect(&[root.clone(), dir.path().join("missing.png")]);
        let names: Vec<&str> = found.inputs.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(names, ["a.jpg", "trip/day1/b.dat"]);
        let skipped: Vec<String> = found
            .skipped
            .iter()
            .map(|(p, why)| format!("{}: {why}", p.file_name().unwrap().to_string_lossy()))
            .collect();
        assert_eq!(skipped.len(), 2, "{skipped:?}");
        assert!(skipped[0].starts_with("notes.txt: not an image"));
        assert!(skipped[1].starts_with("missing.png"));
    }

    #[test]
    fn the_formats_the_server_reads() {
        assert!(looks_like_image(b"RIFF\0\0\0\0WEBPVP8 "));
        assert!(looks_like_image(b"II*\0\x08\0\0\0"));
        assert!(!looks_like_image(b"RIFF\0\0\0\0WAVE"));
        assert!(!looks_like_image(b""));
    }
}
