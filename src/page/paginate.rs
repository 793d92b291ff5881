//! Where a listing stands and what to ask next: cursor pages, page-number pages,
//! a sequence of listings, and the walk of a tree listed one level at a time.
//!
//! Each position is a serde-derived value committed in `state.json` with every page,
//! holding enough to resume safely: the page size with the page number (a page
//! number means nothing under another size), the cursor, the tree walk's stack with
//! each frame's ancestors (so a cycle in the parent links is seen across runs). The
//! "what next" step is a pure function of a position and the paging signals of one
//! accepted page; it stops only on the API's own end signal and refuses a position
//! that does not move.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use crate::store::hashing;

/// Where a listing (or a sequence of listings) stands.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub enum Position {
    Cursor(Cursor),
    Page(Page),
    /// One listing after another: `steps[index]`, and where in it.
    Steps(Steps),
    Tree(Tree),
    /// A parent listing, and the listings per record of its page in hand (a
    /// connector definition's `for_each`).
    Each(Each),
    Done,
}

/// Where a parent listing stands, and which of the listings per record of its last
/// page is read: for each child table in turn, one listing per key of its `keys`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Each {
    /// The parent listing, past the page whose `keys` these are.
    pub parent: Box<Position>,
    /// Per child table, the key of each record of the page that has one.
    pub keys: Vec<Vec<String>>,
    /// The child table read (its index among the parent's children), and the key.
    pub child: usize,
    pub index: usize,
    /// Where that listing stands.
    pub inner: Box<Position>,
}

/// What happens after a page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    More,
    Done,
}

/// Cursor pages (MailerLite): follow `meta.next_cursor` with our own parameters.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Cursor {
    /// The cursor to send; none for the first page.
    pub cursor: Option<String>,
    pub page_size: u32,
    pub pages: u64,
}

/// The paging signals of a cursor page.
#[derive(Debug, Clone, Default)]
pub struct CursorSignals {
    pub next_cursor: Option<String>,
}

impl Cursor {
    pub fn start(page_size: u32) -> Cursor {
        Cursor { cursor: None, page_size, pages: 0 }
    }

    /// After a page: done on a null or empty next cursor (an empty page that still
    /// carries one is not the end); a cursor met before in this listing is an error.
    pub fn advance(&mut self, s: &CursorSignals, seen: &mut HashSet<u64>) -> Result<Next, String> {
        self.pages += 1;
        let Some(next) = s.next_cursor.as_ref().filter(|c| !c.is_empty()) else {
            return Ok(Next::Done);
        };
        if self.cursor.as_ref() == Some(next) || !seen.insert(hashing::stable(0, next.as_bytes())) {
            return Err(format!("cursor {next} repeats"));
        }
        self.cursor = Some(next.clone());
        Ok(Next::More)
    }
}

/// Page-number pages (MailerLite groups, fields, campaigns; every Paligo listing).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Page {
    /// The page to ask for next, from 1.
    pub page: u64,
    /// The page size asked for: kept for the whole listing, resumes included.
    pub page_size: u32,
    /// The last page, as the API announced it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_page: Option<u64>,
    /// The most records a page of this listing held: a page that holds as many is
    /// full, whatever size the server caps pages at.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub largest: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// The paging signals of a page-number page.
#[derive(Debug, Clone, Copy, Default)]
pub struct PageSignals {
    /// The page the API says it sent, if it says.
    pub current_page: Option<u64>,
    /// The last page (MailerLite `meta.last_page`, Paligo `total_pages`).
    pub last_page: Option<u64>,
    /// Whether the API points at a next page (`links.next`, `next_page`).
    pub has_next: bool,
    /// How many records the page held, if the caller counted them.
    pub records: Option<u64>,
}

impl Page {
    pub fn start(page_size: u32) -> Page {
        Page { page: 1, page_size, last_page: None, largest: 0 }
    }

    /// After a page: done when no end signal says more follows. The signals are a
    /// next page named (`has_next`) and a last page still ahead; a next page named
    /// past the announced last page counts only on a full page (a short one agrees
    /// with the count that this is the end). When they disagree the listing reads
    /// on, bounded by the loop guards. A page other than the one asked for is an error.
    pub fn advance(&mut self, s: &PageSignals) -> Result<Next, String> {
        if let Some(got) = s.current_page.filter(|&c| c != self.page) {
            return Err(format!("asked for page {}, got page {got}", self.page));
        }
        let (more, _) = self.verdict(s);
        if s.last_page.is_some() {
            self.last_page = s.last_page;
        }
        self.largest = self.largest.max(s.records.unwrap_or(0));
        if !more {
            return Ok(Next::Done);
        }
        self.page = self.page.checked_add(1).ok_or("the page number overflows")?;
        Ok(Next::More)
    }

    /// Why the end signals of the page just read disagree, if they do and the
    /// listing reads on because of it (ask before [`Page::advance`]).
    pub fn disagreement(&self, s: &PageSignals) -> Option<String> {
        self.verdict(s).1
    }

    /// Whether more pages follow the one just read, and why its signals disagree.
    fn verdict(&self, s: &PageSignals) -> (bool, Option<String>) {
        let Some(last) = s.last_page.or(self.last_page) else { return (s.has_next, None) };
        let full = s.records.is_some_and(|n| n > 0 && (n >= u64::from(self.page_size) || n >= self.largest));
        let page = self.page;
        match (s.has_next, page < last) {
            (true, true) => (true, None),
            (false, false) => (false, None),
            (true, false) if full => {
                (true, Some(format!("full page {page} names a next page, but {last} pages were announced")))
            }
            (true, false) => (false, None),
            (false, true) => (true, Some(format!("page {page} names no next page, but {last} pages were announced"))),
        }
    }
}

/// Listings whose end signals were found to disagree in this process: each is
/// warned about once, its re-reads and every frame of a tree included.
static DISAGREEING: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

/// Warns, once per `listing` in this process, when the end signals of the page just
/// read at `page` disagree ([`Page::disagreement`]).
pub fn warn_if_signals_disagree(listing: &str, page: &Page, s: &PageSignals) {
    let Some(why) = page.disagreement(s) else { return };
    let mut warned = DISAGREEING.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if !warned.iter().any(|l| l == listing) {
        warned.push(listing.to_string());
        log::warn!("{listing}: the end signals disagree ({why}); reading on while any says there is more");
    }
}

/// A sequence of listings, each named by a step (a status, a group and status).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Steps {
    pub steps: Vec<String>,
    pub index: usize,
    pub inner: Box<Position>,
}

impl Steps {
    pub fn start(steps: Vec<String>, first: Position) -> Steps {
        let inner = Box::new(if steps.is_empty() { Position::Done } else { first });
        Steps { steps, index: 0, inner }
    }

    /// The step being read, if any.
    pub fn current(&self) -> Option<&str> {
        self.steps.get(self.index).map(String::as_str)
    }

    /// Moves to the next step, whose listing starts at `start`; Done after the last.
    pub fn next_step(&mut self, start: Position) -> Next {
        self.index += 1;
        if self.index < self.steps.len() {
            *self.inner = start;
            Next::More
        } else {
            *self.inner = Position::Done;
            Next::Done
        }
    }
}

/// A tree listed one level at a time (`parent=<id>`), walked depth first.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Tree {
    /// Listings still to read; the last is read next.
    pub stack: Vec<Frame>,
}

/// The listing of one node's children (the roots when `parent` is none).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Frame {
    pub parent: Option<String>,
    /// Ids from the root down to `parent` included: a child among them is a cycle.
    pub ancestors: Vec<String>,
    /// Level of the nodes this listing returns: 1 for roots.
    pub level: u32,
    /// Path of `parent`; empty for roots.
    pub path: String,
    pub page: Page,
}

/// A node found under a parent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Child {
    pub id: String,
    pub path: String,
}

impl Tree {
    pub fn start(page_size: u32) -> Tree {
        let root =
            Frame { parent: None, ancestors: Vec::new(), level: 1, path: String::new(), page: Page::start(page_size) };
        Tree { stack: vec![root] }
    }

    /// The listing to read next.
    pub fn current(&self) -> Option<&Frame> {
        self.stack.last()
    }

    /// After a page of the current listing: its paging signals and the children to
    /// walk, in order. Returns the ids of children that are their own ancestors
    /// (a cycle): they are not walked again.
    pub fn advance(&mut self, s: &PageSignals, children: Vec<Child>) -> Result<Vec<String>, String> {
        let frame = self.stack.last_mut().ok_or("the tree walk is over")?;
        let done = frame.page.advance(s)? == Next::Done;
        let (level, page_size) = (frame.level + 1, frame.page.page_size);
        let mut ancestors = frame.ancestors.clone();
        ancestors.extend(frame.parent.clone());
        if done {
            self.stack.pop();
        }
        let mut cycles = Vec::new();
        for child in children.into_iter().rev() {
            if ancestors.contains(&child.id) {
                cycles.push(child.id);
                continue;
            }
            self.stack.push(Frame {
                parent: Some(child.id),
                ancestors: ancestors.clone(),
                level,
                path: child.path,
                page: Page::start(page_size),
            });
        }
        cycles.reverse();
        Ok(cycles)
    }

    /// Drops the current listing (its parent no longer exists).
    pub fn drop_current(&mut self) {
        self.stack.pop();
    }
}

/// Escapes `\` and `/` in a taxonomy title and appends it to its parent's path:
/// titles joined with ` / `, so a path always splits back into titles. A root's
/// path is its title alone (`None` parent), so a root titled `""` has an empty path
/// and its children's paths start with the separator.
pub fn join_path(parent: Option<&str>, title: &str) -> String {
    let escaped = title.replace('\\', "\\\\").replace('/', "\\/");
    match parent {
        None => escaped,
        Some(parent) => format!("{parent} / {escaped}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_go_on_past_empty_pages_and_stop_on_null() {
        let mut c = Cursor::start(100);
        let mut seen = HashSet::new();
        let next = |c: &str| CursorSignals { next_cursor: Some(c.into()) };
        assert_eq!(c.advance(&next("a"), &mut seen), Ok(Next::More));
        assert_eq!(c.cursor.as_deref(), Some("a"));
        assert_eq!(c.advance(&next("b"), &mut seen), Ok(Next::More));
        assert_eq!(c.advance(&CursorSignals { next_cursor: Some(String::new()) }, &mut seen), Ok(Next::Done));
        let mut c = Cursor::start(100);
        assert_eq!(c.advance(&CursorSignals::default(), &mut HashSet::new()), Ok(Next::Done));
    }

    #[test]
    fn a_repeating_cursor_is_an_error() {
        let mut c = Cursor::start(100);
        let mut seen = HashSet::new();
        let next = |c: &str| CursorSignals { next_cursor: Some(c.into()) };
        c.advance(&next("a"), &mut seen).unwrap();
        assert_eq!(c.advance(&next("a"), &mut seen), Err("cursor a repeats".into()));
        c.advance(&next("b"), &mut seen).unwrap();
        c.advance(&next("c"), &mut seen).unwrap();
        assert_eq!(c.advance(&next("a"), &mut seen), Err("cursor a repeats".into()));
    }

    #[test]
    fn pages_stop_on_the_api_end_signal_only() {
        let mut p = Page::start(100);
        let more = PageSignals { current_page: Some(1), last_page: Some(3), has_next: true, records: None };
        assert_eq!(p.advance(&more), Ok(Next::More));
        assert_eq!(p.page, 2);
        // A short or empty page is not the end while the API points further.
        assert_eq!(p.advance(&PageSignals { current_page: Some(2), ..more }), Ok(Next::More));
        assert_eq!(p.advance(&PageSignals { current_page: Some(3), ..more }), Ok(Next::Done));
        let mut p = Page::start(100);
        assert_eq!(p.advance(&PageSignals { has_next: false, ..PageSignals::default() }), Ok(Next::Done));
        // Signals that disagree: read on while either says there is more, a next
        // page past the count only from a full page.
        let mut p = Page::start(100);
        let stale_count = PageSignals { current_page: Some(1), last_page: Some(1), has_next: true, records: Some(100) };
        assert!(p.disagreement(&stale_count).is_some());
        assert_eq!(p.advance(&stale_count), Ok(Next::More));
        // A server that caps pages below the size asked for: as large as the largest is full.
        let capped = PageSignals { current_page: Some(2), records: Some(60), ..stale_count };
        let mut q = Page { largest: 60, page: 2, ..Page::start(1000) };
        assert_eq!(q.advance(&capped), Ok(Next::More));
        let short = PageSignals { current_page: Some(2), records: Some(99), ..stale_count };
        assert_eq!(p.disagreement(&short), None);
        assert_eq!(p.clone().advance(&short), Ok(Next::Done));
        let no_link = PageSignals { current_page: Some(2), last_page: Some(3), has_next: false, records: Some(5) };
        assert!(p.disagreement(&no_link).is_some());
        assert_eq!(p.advance(&no_link), Ok(Next::More));
        let agreed = PageSignals { current_page: Some(3), last_page: Some(3), has_next: false, records: Some(0) };
        assert_eq!(p.disagreement(&agreed), None);
        assert_eq!(p.advance(&agreed), Ok(Next::Done));
        let mut p = Page { page: 2, ..Page::start(100) };
        let stuck = PageSignals { current_page: Some(1), last_page: None, has_next: true, records: None };
        assert_eq!(p.advance(&stuck), Err("asked for page 2, got page 1".into()));
    }

    #[test]
    fn steps_run_in_order() {
        let mut s = Steps::start(vec!["draft".into(), "sent".into()], Position::Page(Page::start(10)));
        assert_eq!(s.current(), Some("draft"));
        assert_eq!(s.next_step(Position::Page(Page::start(10))), Next::More);
        assert_eq!(s.current(), Some("sent"));
        assert_eq!(s.next_step(Position::Page(Page::start(10))), Next::Done);
        assert_eq!(s.current(), None);
        assert_eq!(*s.inner, Position::Done);
        assert_eq!(*Steps::start(Vec::new(), Position::Done).inner, Position::Done);
    }

    fn child(id: &str) -> Child {
        Child { id: id.into(), path: format!("p{id}") }
    }

    #[test]
    fn the_tree_walks_depth_first_and_resumes_from_its_stack() {
        let last = PageSignals { has_next: false, ..PageSignals::default() };
        let mut t = Tree::start(10);
        assert_eq!(t.advance(&last, vec![child("1"), child("2")]), Ok(vec![]));
        assert_eq!(t.current().unwrap().parent.as_deref(), Some("1"));
        assert_eq!(t.current().unwrap().level, 2);
        // The stack survives a round trip through state.json.
        let text = serde_json::to_string(&Position::Tree(t.clone())).unwrap();
        let Position::Tree(mut t) = serde_json::from_str(&text).unwrap() else { panic!() };
        assert_eq!(t.advance(&last, vec![child("3")]), Ok(vec![]));
        assert_eq!(t.current().unwrap().ancestors, ["1"]);
        assert_eq!(t.current().unwrap().parent.as_deref(), Some("3"));
        assert_eq!(t.current().unwrap().level, 3);
        t.advance(&last, vec![]).unwrap();
        assert_eq!(t.current().unwrap().parent.as_deref(), Some("2"));
        t.advance(&last, vec![]).unwrap();
        assert!(t.current().is_none());
    }

    #[test]
    fn a_cycle_is_caught_by_the_ancestors_not_a_depth_limit() {
        let last = PageSignals { has_next: false, ..PageSignals::default() };
        let mut t = Tree::start(10);
        t.advance(&last, vec![child("0")]).unwrap();
        // A chain far deeper than any constant.
        for i in 1..500 {
            let cycles = t.advance(&last, vec![child(&i.to_string())]).unwrap();
            assert!(cycles.is_empty());
        }
        assert_eq!(t.current().unwrap().level, 501);
        assert_eq!(t.advance(&last, vec![child("250"), child("x")]), Ok(vec!["250".to_string()]));
        assert_eq!(t.current().unwrap().parent.as_deref(), Some("x"));
        // A self-parent is a cycle too.
        assert_eq!(t.advance(&last, vec![child("x")]), Ok(vec!["x".to_string()]));
    }

    #[test]
    fn paths_escape_separators() {
        assert_eq!(join_path(None, "Input/Output"), "Input\\/Output");
        assert_eq!(join_path(Some("A"), "B\\C"), "A / B\\\\C");
        assert_eq!(join_path(Some(""), "x"), " / x");
    }
}
