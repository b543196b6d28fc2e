//! Full-text search across recordings (tantivy): the command lines typed, clipboard text, the
//! names of files that crossed and the words read off the screen, each with its recording, its
//! moment and (screen words) its box, found by words with filters on who, where, when and how.
//!
//! The index is derived data: everything in it comes from the recordings' event tracks (see
//! [`track`]), so it can be thrown away and rebuilt from them. Its commit carries how far each
//! recording's track was read ([`Progress`]), so a restart goes on where the last commit was
//! and nothing is indexed twice. Only this crate knows tantivy.

pub mod track;

#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod oracles;

use std::collections::BTreeMap;
use std::ops::Bound;
use std::path::Path;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use tantivy::collector::TopDocs;
use tantivy::query::{
    BooleanQuery, Occur, PhraseQuery, Query as TantivyQuery, RangeQuery, TermQuery,
};
use tantivy::schema::{
    Field, IndexRecordOption, Schema, Value as _, FAST, INDEXED, STORED, STRING, TEXT,
};
use tantivy::snippet::SnippetGenerator;
use tantivy::{
    doc, DocAddress, Index, IndexReader, IndexWriter, Order, ReloadPolicy, TantivyDocument, Term,
};

pub use track::{read_track, screen_reads, Entry, Kind, Reading, Resume, WordBox};

/// The index format; an index of another is rebuilt.
const FORMAT: u32 = 1;
/// The writer's memory for documents not yet written (tantivy's least for one thread).
const WRITER_BYTES: usize = 15_000_000;
/// The most hits one search answers.
pub const MAX_HITS: usize = 200;
/// The longest query accepted, in bytes.
pub const MAX_QUERY: usize = 512;
/// How much text around a hit is shown, in characters.
const FRAGMENT_CHARS: usize = 160;

/// Why the index cannot do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    /// The index on disk cannot be opened, read or written.
    #[error("search index: {0}")]
    Index(String),
    /// The index on disk is of another format or schema: rebuild it.
    #[error("the search index at {0} is of another version: rebuild it")]
    Incompatible(String),
    /// The query cannot be run.
    #[error("{0}")]
    BadQuery(String),
}

impl From<tantivy::TantivyError> for SearchError {
    fn from(e: tantivy::TantivyError) -> Self {
        SearchError::Index(e.to_string())
    }
}

/// Who and what a recording is about, as search filters and shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recording {
    /// The recording (session) id.
    pub id: String,
    /// The user's name.
    pub user: String,
    /// The user's immutable account id (a plain user finds only their own).
    pub user_id: String,
    /// The target's name.
    pub target: String,
    /// How the user came in (`browser`, `rdp`; empty when not known).
    pub entry: String,
    /// Unix ms at the recording's time 0.
    pub started_at_ms: i64,
}

/// How far each recording's track has been read, as committed with the index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    /// The index format.
    pub format: u32,
    /// Recording id → where its next reading starts; `done`: the track was complete.
    pub recordings: BTreeMap<String, Done>,
}

impl Default for Progress {
    fn default() -> Self {
        Self {
            format: FORMAT,
            recordings: BTreeMap::new(),
        }
    }
}

/// How far one recording's track was read.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Done {
    /// Where the next reading starts.
    pub resume: Resume,
    /// The track was complete: nothing more will come.
    #[serde(default)]
    pub complete: bool,
    /// How the session was entered, as its track's start said.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub entry: String,
    /// The screen of its video was read after the fact (catch-up) up to here, ms on the
    /// recording's clock: moments before it are in the index.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub screen_caught_up_ms: u64,
    /// The catch-up read the whole video (or all of it that could be read).
    #[serde(default)]
    pub screen_caught_up: bool,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

/// A search.
#[derive(Debug, Clone, Default)]
pub struct Query {
    /// The words (a phrase in quotes; `-word` leaves out); every word must be there.
    pub text: String,
    /// Only this account's recordings (a plain user's search).
    pub only_user_id: Option<String>,
    /// Only this user's (by name).
    pub user: Option<String>,
    /// Only this target's.
    pub target: Option<String>,
    /// Only sessions entered this way.
    pub entry: Option<String>,
    /// Only text of this kind.
    pub kind: Option<Kind>,
    /// Only moments at or after this, Unix ms.
    pub from_ms: Option<i64>,
    /// Only moments before this, Unix ms.
    pub to_ms: Option<i64>,
    /// At most this many hits ([`MAX_HITS`] at most).
    pub limit: usize,
    /// Newest first instead of best first (a plain user's search: the ranking would tell how
    /// often words occur in recordings they may not see).
    pub newest_first: bool,
}

/// The most words and phrases one query holds.
const MAX_PIECES: usize = 32;
/// The longest word the index keeps (tantivy's default tokenizer drops longer ones).
const MAX_TOKEN: usize = 40;

/// A place where the words were found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Hit {
    /// The recording.
    pub recording: String,
    /// Its user.
    pub user: String,
    /// Its target.
    pub target: String,
    /// How the user came in.
    pub entry: String,
    /// What was found.
    pub kind: Kind,
    /// When, Unix ms.
    pub at_ms: i64,
    /// When, ms on the recording's clock (where the player goes).
    pub t_ms: u64,
    /// The text around the hit.
    pub fragment: String,
    /// The found words in `fragment`, as byte ranges.
    pub highlights: Vec<(usize, usize)>,
    /// Screen hits: the boxes of the words found, on the desktop.
    pub boxes: Vec<WordBox>,
    /// How well it matches (higher is better); none when ordered by time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub score: Option<f32>,
}

#[derive(Clone, Copy)]
struct Fields {
    recording: Field,
    user: Field,
    user_id: Field,
    target: Field,
    entry: Field,
    kind: Field,
    at_ms: Field,
    t_ms: Field,
    text: Field,
    words: Field,
}

fn schema() -> (Schema, Fields) {
    let mut b = Schema::builder();
    let fields = Fields {
        recording: b.add_text_field("recording", STRING | STORED),
        user: b.add_text_field("user", STRING | STORED),
        user_id: b.add_text_field("user_id", STRING),
        target: b.add_text_field("target", STRING | STORED),
        entry: b.add_text_field("entry", STRING | STORED),
        kind: b.add_text_field("kind", STRING | STORED),
        at_ms: b.add_i64_field("at_ms", INDEXED | STORED | FAST),
        t_ms: b.add_u64_field("t_ms", STORED),
        text: b.add_text_field("text", TEXT | STORED),
        words: b.add_bytes_field("words", STORED),
    };
    (b.build(), fields)
}

/// The search index in one folder.
pub struct SearchIndex {
    index: Index,
    reader: IndexReader,
    writer: Mutex<IndexWriter>,
    fields: Fields,
}

impl std::fmt::Debug for SearchIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SearchIndex").finish_non_exhaustive()
    }
}

impl SearchIndex {
    /// Opens the index in `dir`, made empty if there is none. An index of another format or
    /// schema is refused ([`SearchError::Incompatible`]): [`SearchIndex::rebuild`] it.
    pub fn open(dir: &Path) -> Result<Self, SearchError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| SearchError::Index(format!("{}: {e}", dir.display())))?;
        let (schema, fields) = schema();
        let directory = tantivy::directory::MmapDirectory::open(dir)
            .map_err(|e| SearchError::Index(format!("{}: {e}", dir.display())))?;
        let exists = Index::exists(&directory).map_err(|e| SearchError::Index(e.to_string()))?;
        let index = if exists {
            let index = Index::open(directory)?;
            let meta = index.load_metas()?;
            let format = meta
                .payload
                .as_deref()
                .and_then(|p| serde_json::from_str::<Progress>(p).ok())
                .map_or(FORMAT, |p| p.format);
            if index.schema() != schema || format != FORMAT {
                return Err(SearchError::Incompatible(dir.display().to_string()));
            }
            index
        } else {
            Index::create(directory, schema, tantivy::IndexSettings::default())?
        };
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()?;
        let writer = index.writer_with_num_threads(1, WRITER_BYTES)?;
        Ok(Self {
            index,
            reader,
            writer: Mutex::new(writer),
            fields,
        })
    }

    /// Empties `dir` and makes a new index there (to be filled again from the recordings).
    pub fn rebuild(dir: &Path) -> Result<Self, SearchError> {
        match std::fs::remove_dir_all(dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(SearchError::Index(format!("{}: {e}", dir.display()))),
        }
        Self::open(dir)
    }

    /// How far each recording was read, as last committed.
    pub fn progress(&self) -> Result<Progress, SearchError> {
        let meta = self.index.load_metas()?;
        Ok(meta
            .payload
            .as_deref()
            .and_then(|p| serde_json::from_str::<Progress>(p).ok())
            .unwrap_or_default())
    }

    fn writer(&self) -> std::sync::MutexGuard<'_, IndexWriter> {
        self.writer.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds `entries` of `recording` (kept until [`SearchIndex::commit`]).
    pub fn add(&self, recording: &Recording, entries: &[Entry]) -> Result<(), SearchError> {
        let f = self.fields;
        let writer = self.writer();
        for e in entries {
            let at = recording
                .started_at_ms
                .saturating_add(i64::try_from(e.t_ms).unwrap_or(i64::MAX));
            let words = if e.words.is_empty() {
                Vec::new()
            } else {
                serde_json::to_vec(&e.words).unwrap_or_default()
            };
            writer.add_document(doc!(
                f.recording => recording.id.as_str(),
                f.user => recording.user.as_str(),
                f.user_id => recording.user_id.as_str(),
                f.target => recording.target.as_str(),
                f.entry => recording.entry.as_str(),
                f.kind => e.kind.as_str(),
                f.at_ms => at,
                f.t_ms => e.t_ms,
                f.text => e.text.as_str(),
                f.words => words,
            ))?;
        }
        Ok(())
    }

    /// Takes recording `id` out of the index (at the next commit).
    pub fn forget(&self, id: &str) {
        self.writer()
            .delete_term(Term::from_field_text(self.fields.recording, id));
    }

    /// Texts taken out (by [`SearchIndex::forget`] and committed) whose bytes are still in the
    /// index's files, waiting for a merge.
    pub fn taken_out_still_stored(&self) -> u64 {
        self.reader
            .searcher()
            .segment_readers()
            .iter()
            .map(|s| u64::from(s.num_deleted_docs()))
            .sum()
    }

    /// Rewrites every segment holding texts taken out (committed), without them, and deletes
    /// the files no longer used: a forgotten recording's words leave the disk, not only the
    /// results (retention). Returns how many segments were rewritten.
    pub fn purge(&self) -> Result<usize, SearchError> {
        let holding: Vec<tantivy::index::SegmentId> = self
            .reader
            .searcher()
            .segment_readers()
            .iter()
            .filter(|s| s.num_deleted_docs() > 0)
            .map(|s| s.segment_id())
            .collect();
        let merged = (|| {
            let mut writer = self.writer();
            for id in &holding {
                writer.merge(&[*id]).wait()?;
            }
            writer.garbage_collect_files().wait()?;
            Ok::<(), SearchError>(())
        })();
        // Also after a failure: the reader must not keep naming segments merged meanwhile.
        self.reader.reload()?;
        merged.map(|()| holding.len())
    }

    /// Writes what was added or taken out since the last commit, with `progress`, and makes it
    /// searchable.
    pub fn commit(&self, progress: &Progress) -> Result<(), SearchError> {
        let payload =
            serde_json::to_string(progress).map_err(|e| SearchError::Index(e.to_string()))?;
        {
            let mut writer = self.writer();
            let mut prepared = writer.prepare_commit()?;
            prepared.set_payload(&payload);
            prepared.commit()?;
        }
        self.reader.reload()?;
        Ok(())
    }

    /// How many texts are indexed (as of the last commit).
    pub fn len(&self) -> u64 {
        self.reader.searcher().num_docs()
    }

    /// True when nothing is indexed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Runs `q`: the best hits first.
    pub fn search(&self, q: &Query) -> Result<Vec<Hit>, SearchError> {
        let f = self.fields;
        let text = q.text.trim();
        if text.is_empty() {
            return Err(SearchError::BadQuery("say what to look for".into()));
        }
        if text.len() > MAX_QUERY {
            return Err(SearchError::BadQuery(format!(
                "the query is longer than {MAX_QUERY} bytes"
            )));
        }
        // Words and "phrases" (every one must be there; -word leaves out), built here rather
        // than by tantivy's query language: no other field, no range, nothing costly to name.
        let pieces = pieces(text);
        let mut clauses: Vec<(Occur, Box<dyn TantivyQuery>)> = Vec::new();
        for (negated, piece) in &pieces {
            let terms: Vec<Term> = tokens(piece)
                .iter()
                .map(|t| Term::from_field_text(f.text, t))
                .collect();
            let q: Box<dyn TantivyQuery> = match terms.len() {
                0 => continue,
                1 => Box::new(TermQuery::new(
                    terms[0].clone(),
                    IndexRecordOption::WithFreqs,
                )),
                _ => Box::new(PhraseQuery::new(terms)),
            };
            clauses.push((
                if *negated {
                    Occur::MustNot
                } else {
                    Occur::Must
                },
                q,
            ));
        }
        if !clauses.iter().any(|(o, _)| *o == Occur::Must) {
            return Err(SearchError::BadQuery(
                "say what to look for: words or \"a phrase\" (letters and digits)".into(),
            ));
        }
        let exact = |field: Field, value: &str| -> (Occur, Box<dyn TantivyQuery>) {
            (
                Occur::Must,
                Box::new(TermQuery::new(
                    Term::from_field_text(field, value),
                    IndexRecordOption::Basic,
                )),
            )
        };
        if let Some(id) = &q.only_user_id {
            clauses.push(exact(f.user_id, id));
        }
        for (field, value) in [
            (f.user, &q.user),
            (f.target, &q.target),
            (f.entry, &q.entry),
        ] {
            if let Some(v) = value {
                clauses.push(exact(field, v));
            }
        }
        if let Some(kind) = q.kind {
            clauses.push(exact(f.kind, kind.as_str()));
        }
        if q.from_ms.is_some() || q.to_ms.is_some() {
            let from = q.from_ms.map_or(Bound::Unbounded, |t| {
                Bound::Included(Term::from_field_i64(f.at_ms, t))
            });
            let to = q.to_ms.map_or(Bound::Unbounded, |t| {
                Bound::Excluded(Term::from_field_i64(f.at_ms, t))
            });
            clauses.push((Occur::Must, Box::new(RangeQuery::new(from, to))));
        }
        let query = BooleanQuery::new(clauses);
        let searcher = self.reader.searcher();
        let limit = q.limit.clamp(1, MAX_HITS);
        let top: Vec<(Option<f32>, DocAddress)> = if q.newest_first {
            searcher
                .search(
                    &query,
                    &TopDocs::with_limit(limit).order_by_fast_field::<i64>("at_ms", Order::Desc),
                )?
                .into_iter()
                .map(|(_, a)| (None, a))
                .collect()
        } else {
            searcher
                .search(&query, &TopDocs::with_limit(limit).order_by_score())?
                .into_iter()
                .map(|(s, a)| (Some(s), a))
                .collect()
        };
        let mut snippets = SnippetGenerator::create(&searcher, &query, f.text)?;
        snippets.set_max_num_chars(FRAGMENT_CHARS);
        let terms: Vec<Vec<String>> = pieces
            .iter()
            .filter(|(negated, _)| !negated)
            .map(|(_, p)| tokens(p))
            .filter(|t| !t.is_empty())
            .collect();
        let mut hits = Vec::with_capacity(top.len());
        for (score, address) in top {
            let doc: TantivyDocument = searcher.doc(address)?;
            let text_of = |field: Field| {
                doc.get_first(field)
                    .and_then(|v| v.as_str())
                    .unwrap_or_default()
                    .to_owned()
            };
            let kind = Kind::parse(&text_of(f.kind)).unwrap_or(Kind::Typed);
            let snippet = snippets.snippet_from_doc(&doc);
            let words: Vec<WordBox> = doc
                .get_first(f.words)
                .and_then(|v| v.as_bytes())
                .and_then(|b| serde_json::from_slice(b).ok())
                .unwrap_or_default();
            hits.push(Hit {
                recording: text_of(f.recording),
                user: text_of(f.user),
                target: text_of(f.target),
                entry: text_of(f.entry),
                kind,
                at_ms: doc.get_first(f.at_ms).and_then(|v| v.as_i64()).unwrap_or(0),
                t_ms: doc.get_first(f.t_ms).and_then(|v| v.as_u64()).unwrap_or(0),
                fragment: snippet.fragment().to_owned(),
                highlights: snippet
                    .highlighted()
                    .iter()
                    .map(|r| (r.start, r.end))
                    .collect(),
                boxes: words
                    .into_iter()
                    .filter(|w| word_matches(&w.word, &terms))
                    .collect(),
                score,
            });
        }
        Ok(hits)
    }
}

/// A query cut into its pieces: words as typed (`10.1.2.3`, `net`) and "quoted phrases", each
/// with whether it is left out (`-word`, `-"a phrase"`); at most [`MAX_PIECES`].
fn pieces(text: &str) -> Vec<(bool, String)> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    while out.len() < MAX_PIECES {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let Some(&first) = chars.peek() else { break };
        let negated = first == '-';
        if negated {
            chars.next();
        }
        let piece: String = if chars.next_if_eq(&'"').is_some() {
            chars.by_ref().take_while(|c| *c != '"').collect()
        } else {
            let mut word = String::new();
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                word.push(c);
            }
            word
        };
        if !piece.is_empty() {
            out.push((negated, piece));
        }
    }
    out
}

/// Text as the index cuts it: runs of letters and digits, lower case, none longer than the
/// index keeps.
fn tokens(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|t| !t.is_empty() && t.len() <= MAX_TOKEN)
        .map(str::to_lowercase)
        .collect()
}

/// Whether screen word `word` holds one of the query's pieces (its tokens in a row).
fn word_matches(word: &str, terms: &[Vec<String>]) -> bool {
    let have = tokens(word);
    terms
        .iter()
        .any(|piece| have.windows(piece.len()).any(|w| w == piece.as_slice()))
}

#[cfg(test)]
mod tests;
