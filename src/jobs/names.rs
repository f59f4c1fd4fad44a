//! Turns client-supplied filenames into safe, unique ZIP entry names.
//!
//! Names never reach the filesystem or object keys (those use indexes); this
//! only protects people who unzip the archive. It must never reject a name.

use std::collections::HashSet;

const MAX_STEM_CHARS: usize = 100;

/// Strips directories, `..`, control characters and characters that are unsafe
/// on common filesystems, and returns the stem (no extension). Falls back to
/// `image-<index>` when nothing usable remains.
pub fn safe_stem(original: &str, index: usize) -> String {
    // Both separators count: a browser on Windows may send `C:\photos\a.jpg`.
    let base = original.rsplit(['/', '\\']).next().unwrap_or_default();
    let stem = match base.rfind('.') {
        Some(dot) if dot > 0 => &base[..dot],
        _ => base,
    };
    let cleaned: String = stem
        .chars()
        .map(|c| match c {
            c if c.is_control() => '_',
            '<' | '>' | ':' | '"' | '|' | '?' | '*' | '/' | '\\' => '_',
            c => c,
        })
        .take(MAX_STEM_CHARS)
        .collect();
    let trimmed = cleaned.trim_matches(|c: char| c == '.' || c.is_whitespace());
    if trimmed.is_empty() {
        format!("image-{}", index + 1)
    } else {
        trimmed.to_string()
    }
}

/// Assigns each image an entry name `<stem>.<ext>`, unique within the archive
/// (case-insensitively, for case-insensitive filesystems) and distinct from
/// `reserved` names such as `manifest.json`.
pub fn unique_entry_names<'a>(
    items: impl IntoIterator<Item = (&'a str, &'a str)>,
    reserved: &[&str],
) -> Vec<String> {
    let mut taken: HashSet<String> = reserved.iter().map(|r| r.to_lowercase()).collect();
    items
        .into_iter()
        .enumerate()
        .map(|(index, (original, ext))| {
            let stem = safe_stem(original, index);
            let mut candidate = format!("{stem}.{ext}");
            let mut n = 1;
            while taken.contains(&candidate.to_lowercase()) {
                n += 1;
                candidate = format!("{stem} ({n}).{ext}");
            }
            taken.insert(candidate.to_lowercase());
            candidate
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_path_components_and_dot_dot() {
        assert_eq!(safe_stem("../../etc/passwd", 0), "passwd");
        assert_eq!(safe_stem("..\\..\\windows\\evil.jpg", 0), "evil");
        assert_eq!(safe_stem("/abs/path/photo.JPG", 0), "photo");
        assert_eq!(safe_stem("..", 3), "image-4");
        assert_eq!(safe_stem("../", 0), "image-1");
        assert_eq!(safe_stem("", 1), "image-2");
        assert_eq!(safe_stem("...jpg", 0), "image-1");
    }

    #[test]
    fn removes_control_and_reserved_characters() {
        assert_eq!(safe_stem("a\u{0}b\nc.png", 0), "a_b_c");
        assert_eq!(safe_stem("what?*.png", 0), "what__");
        assert_eq!(safe_stem(".hidden.png", 0), "hidden");
        assert_eq!(safe_stem("  spaced  .png", 0), "spaced");
    }

    #[test]
    fn keeps_unicode_and_limits_length() {
        assert_eq!(safe_stem("café 写真.jpeg", 0), "café 写真");
        let long = "x".repeat(500) + ".png";
        assert_eq!(safe_stem(&long, 0).chars().count(), MAX_STEM_CHARS);
    }

    #[test]
    fn duplicates_become_unique_case_insensitively() {
        let names = unique_entry_names(
            [
                ("a.jpg", "jpg"),
                ("A.jpg", "jpg"),
                ("dir/a.png", "jpg"),
                ("manifest.x", "json"),
            ],
            &["manifest.json"],
        );
        assert_eq!(
            names,
            ["a.jpg", "A (2).jpg", "a (3).jpg", "manifest (2).json"]
        );
    }

    #[test]
    fn extension_follows_output_format() {
        assert_eq!(
            unique_entry_names([("photo.gif", "png")], &[]),
            ["photo.png"]
        );
    }
}
