//! tesseract's TSV output: a header line, then one line per page, block, paragraph, line and
//! word (`level` 1 to 5) with its box, its place (block, paragraph, line, word numbers) and, for
//! words, a confidence and the text. Only words are kept. Bounded: at most [`MAX_WORDS`] words of
//! at most [`MAX_WORD_CHARS`] characters each; malformed lines are skipped.

/// The most words kept from one picture.
pub const MAX_WORDS: usize = 20_000;
/// The longest word kept, in characters (longer ones are cut).
pub const MAX_WORD_CHARS: usize = 128;

/// A word on the picture.
#[derive(Debug, Clone, PartialEq)]
pub struct Word {
    /// The text.
    pub text: String,
    /// Left edge, in the picture's pixels.
    pub x: u32,
    /// Top edge.
    pub y: u32,
    /// Width.
    pub w: u32,
    /// Height.
    pub h: u32,
    /// tesseract's confidence, 0 to 100.
    pub conf: f32,
    /// Which line of the picture it is on (block, paragraph, line numbers).
    pub line: (u32, u32, u32),
}

/// The words of a TSV output, in reading order.
pub fn parse(tsv: &str) -> Vec<Word> {
    let mut words = Vec::new();
    for row in tsv.lines().skip(1) {
        if words.len() >= MAX_WORDS {
            break;
        }
        let f: Vec<&str> = row.splitn(12, '\t').collect();
        if f.len() != 12 || f[0] != "5" {
            continue;
        }
        let n = |i: usize| f[i].trim().parse::<u32>().ok();
        let (Some(block), Some(par), Some(line), Some(x), Some(y), Some(w), Some(h)) =
            (n(2), n(3), n(4), n(6), n(7), n(8), n(9))
        else {
            continue;
        };
        let conf = f[10].trim().parse::<f32>().unwrap_or(-1.0);
        let text: String = f[11].trim().chars().take(MAX_WORD_CHARS).collect();
        if text.is_empty() || !conf.is_finite() {
            continue;
        }
        words.push(Word {
            text,
            x,
            y,
            w,
            h,
            conf: conf.clamp(-1.0, 100.0),
            line: (block, par, line),
        });
    }
    words
}

/// The words as text: one line of the picture per line, words separated by a space.
pub fn lines(words: &[Word]) -> String {
    let mut out = String::new();
    let mut last = None;
    for word in words {
        match last {
            None => {}
            Some(line) if line == word.line => out.push(' '),
            Some(_) => out.push('\n'),
        }
        out.push_str(&word.text);
        last = Some(word.line);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str =
        "level\tpage_num\tblock_num\tpar_num\tline_num\tword_num\tleft\ttop\twidth\theight\tconf\ttext";

    #[test]
    fn words_and_lines() {
        let tsv = format!(
            "{HEADER}\n1\t1\t0\t0\t0\t0\t0\t0\t1024\t768\t-1\t\n\
             4\t1\t1\t1\t1\t0\t2\t3\t400\t13\t-1\t\n\
             5\t1\t1\t1\t1\t1\t2\t3\t60\t13\t91.5\tbash-5.2#\n\
             5\t1\t1\t1\t1\t2\t70\t3\t30\t13\t96\tnet\n\
             5\t1\t1\t1\t2\t1\t2\t20\t30\t13\t88\tuser\n\
             5\t1\t1\t1\t2\t2\t40\t20\t30\t13\t-1\t \n"
        );
        let words = parse(&tsv);
        assert_eq!(words.len(), 3);
        assert_eq!(words[0].text, "bash-5.2#");
        assert_eq!(
            (words[1].x, words[1].y, words[1].w, words[1].h),
            (70, 3, 30, 13)
        );
        assert_eq!(lines(&words), "bash-5.2# net\nuser");
    }

    #[test]
    fn malformed_rows_are_skipped_and_sizes_bounded() {
        let long = "x".repeat(1000);
        let tsv = format!(
            "{HEADER}\n5\t1\t1\t1\t1\t1\tnope\t3\t60\t13\t91\tbad\n5\t1\n\
             5\t1\t1\t1\t1\t1\t1\t1\t1\t1\tNaN\tnan\n5\t1\t1\t1\t1\t1\t1\t1\t1\t1\t50\t{long}\n"
        );
        let words = parse(&tsv);
        assert_eq!(words.len(), 1);
        assert_eq!(words[0].text.chars().count(), MAX_WORD_CHARS);
        let many: String = std::iter::once(HEADER.to_owned())
            .chain((0..MAX_WORDS + 10).map(|i| format!("5\t1\t1\t1\t1\t{i}\t1\t1\t1\t1\t90\tw")))
            .collect::<Vec<_>>()
            .join("\n");
        assert_eq!(parse(&many).len(), MAX_WORDS);
    }
}
