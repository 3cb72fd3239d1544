//! How large a message each service accepts, and how much of a peer's own
//! input an error echoes back. A peer can make a process hold at most one
//! message per stream in memory: each cap is what the service needs, not
//! more (docs/protocol.md, "Message sizes").

/// Data bytes in one relay frame: a chunk crosses as frames of at most this.
pub const RELAY_FRAME: usize = 1024 * 1024;
/// What a relay message may carry besides a frame's data (key, version,
/// digest; a manifest batch is cut to fit too).
pub const RELAY_HEADER: usize = 64 * 1024;
/// The largest relay message: one frame plus its header.
pub const RELAY_MESSAGE: usize = RELAY_FRAME + RELAY_HEADER;
/// Bytes of a file in one load chunk (the CLI reads files in these).
pub const LOAD_CHUNK: usize = 256 * 1024;
/// The largest load upload or pull message: one chunk and its envelope.
pub const LOAD_MESSAGE: usize = LOAD_CHUNK + 16 * 1024;
/// The agent link: registration, command results (a migration step's
/// report, a cluster's description) — never bulk data.
pub const LINK_MESSAGE: usize = 1024 * 1024;
/// The client APIs' requests (start a transfer or migration, get, list,
/// ping…) and an agent's load progress: small.
pub const CONTROL_MESSAGE: usize = 64 * 1024;
/// How much of a peer's own input (an id, a key, a name) an error repeats.
pub const ECHO: usize = 128;

/// `s` as an error may repeat it: at most [`ECHO`] bytes (on a character
/// boundary), and how long it really was when cut.
pub fn shorten(s: &str) -> String {
    if s.len() <= ECHO {
        return s.to_string();
    }
    let mut end = ECHO;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes)", &s[..end], s.len())
}

/// A message that may embed a peer's input, cut to a size fit for an error
/// (a status message travels in a header).
pub fn cap_message(s: String) -> String {
    const MAX: usize = 4 * 1024;
    if s.len() <= MAX {
        return s;
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… (message cut from {} bytes)", &s[..end], s.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_input_is_cut_on_a_character_boundary() {
        assert_eq!(shorten("job-1"), "job-1");
        let long = "é".repeat(1000);
        let short = shorten(&long);
        assert!(short.len() < ECHO + 32, "{short}");
        assert!(short.ends_with("(2000 bytes)"), "{short}");
        assert!(cap_message("x".repeat(10_000)).len() < 4200);
    }
}
