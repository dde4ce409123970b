//! Which configuration serves which stream, over the life of a VM.
//!
//! Every configuration Envoy delivers (each ECDS update, each `WasmPlugin`
//! edit) gets a new root context in the same VM while requests are in
//! flight, and a stream is served by the root it was created under. Envoy
//! retires a root only once no stream holds it (a stream holds its plugin
//! handle), so a retired root's streams are all done.
//!
//! The bookkeeping here costs nothing while one root is live and its plan
//! needs nothing kept per stream: no record is made. A stream made while its
//! root was alone carries no record; once a second root arrives it belongs
//! to the *elder*, the root that was alone. Streams made while several roots
//! live carry a record naming theirs.
//!
//! What bounds the records of streams that never reach their response
//! headers (reset, or refused before the upstream): they go with their root
//! when it retires, after [`STALE_TICKS`] ticks of that root, and past
//! [`MAX_RECORDS`] the oldest goes first. Roots are bounded by Envoy: the
//! glue drops each one within a tick of its retirement.
//!
//! Pure bookkeeping: the glue (`proxy.rs`) asks the host which roots still
//! exist and passes the answer in.

/// Request header values a response side needs, in the plan's order, as
/// they stood after the request rules (`None`: absent).
pub type Kept = Vec<Option<Vec<u8>>>;

/// A stream record still there after this many ticks (seconds) of its root
/// belongs to a stream that ended before its response headers: dropped. A
/// stream that waits longer than this for its response headers is served as
/// one without a record (response `%REQ(..)%` values empty, top-level rules
/// only).
pub const STALE_TICKS: u32 = 300;

/// At most this many stream records (a few MiB); past it the oldest goes.
pub const MAX_RECORDS: usize = 65_536;

/// The roots of one VM and the records of their streams.
pub struct Roots<P> {
    /// Configured roots that Envoy has not retired; almost always one, two
    /// while an update drains the streams of the one before.
    roots: Vec<Root<P>>,
    /// The root that was alone when a second one arrived.
    elder: Option<u32>,
    /// Streams that need a record, by context id (ascending: Envoy hands out
    /// ids in order).
    streams: Vec<Record>,
}

struct Root<P> {
    id: u32,
    plan: P,
    /// Ticks seen, the clock for dropping stale stream records.
    ticks: u32,
}

struct Record {
    id: u32,
    root: u32,
    born: u32,
    kept: Kept,
    route: Option<u16>,
}

impl<P> Default for Roots<P> {
    fn default() -> Self {
        Roots::new()
    }
}

impl<P> Roots<P> {
    pub const fn new() -> Roots<P> {
        Roots {
            roots: Vec::new(),
            elder: None,
            streams: Vec::new(),
        }
    }

    /// Live roots.
    pub fn len(&self) -> usize {
        self.roots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.roots.is_empty()
    }

    /// Stream records held.
    pub fn records(&self) -> usize {
        self.streams.len()
    }

    /// The plan of the root at `index` (from [`Roots::root_of`]).
    pub fn plan(&self, index: usize) -> &P {
        &self.roots[index].plan
    }

    /// Root `id` has a plan (a new root, or Envoy configuring one again).
    pub fn configured(&mut self, id: u32, plan: P) {
        if let Some(root) = self.roots.iter_mut().find(|r| r.id == id) {
            root.plan = plan;
            return;
        }
        if let [alone] = self.roots.as_slice() {
            self.elder = Some(alone.id);
        }
        self.roots.push(Root { id, plan, ticks: 0 });
    }

    /// Stream `stream` was created under root `root`: it needs a record to
    /// find that root later only when it is not the only one.
    pub fn created(&mut self, stream: u32, root: u32) {
        if self.roots.len() > 1 {
            if let Some(index) = self.roots.iter().position(|r| r.id == root) {
                self.record_mut(stream, index);
            }
        }
    }

    /// The index of the root that serves `stream`: from its record, else
    /// the only root, else the elder. `None` when that root is gone.
    pub fn root_of(&self, stream: u32) -> Option<usize> {
        if let ([_], []) = (self.roots.as_slice(), self.streams.as_slice()) {
            return Some(0);
        }
        let id = match self.find(stream) {
            Ok(i) => self.streams[i].root,
            Err(_) if self.roots.len() == 1 => return Some(0),
            Err(_) => self.elder?,
        };
        self.roots.iter().position(|r| r.id == id)
    }

    /// What the request side of `stream` (served by the root at `root`)
    /// leaves for its response side.
    pub fn keep(&mut self, stream: u32, root: usize, route: Option<u16>, kept: Kept) {
        let record = self.record_mut(stream, root);
        record.route = route;
        record.kept = kept;
    }

    /// Takes back what [`Roots::keep`] left for `stream`, and its record.
    pub fn take(&mut self, stream: u32) -> (Option<u16>, Kept) {
        match self.find(stream) {
            Ok(i) => {
                let record = self.streams.remove(i);
                (record.route, record.kept)
            }
            Err(_) => (None, Vec::new()),
        }
    }

    /// Forgets the roots for which `alive` says no, with every record of
    /// their streams (a root retires only once its last stream is done).
    /// Back to one root, records that only named a stream's root go too.
    pub fn retire(&mut self, mut alive: impl FnMut(u32) -> bool) {
        let before = self.roots.len();
        self.roots.retain(|r| alive(r.id));
        if self.roots.len() == before {
            return;
        }
        let Roots {
            roots,
            elder,
            streams,
        } = self;
        let single = roots.len() == 1;
        if single || elder.is_some_and(|id| !roots.iter().any(|r| r.id == id)) {
            *elder = None;
        }
        streams.retain(|s| {
            roots.iter().any(|r| r.id == s.root)
                && !(single && s.kept.is_empty() && s.route.is_none())
        });
    }

    /// One tick of root `id`: its records older than [`STALE_TICKS`] go.
    pub fn tick(&mut self, id: u32) {
        if let Some(root) = self.roots.iter_mut().find(|r| r.id == id) {
            root.ticks += 1;
            let now = root.ticks;
            self.streams
                .retain(|s| s.root != id || now - s.born < STALE_TICKS);
        }
    }

    /// The ids of the live roots.
    pub fn ids(&self) -> impl Iterator<Item = u32> + '_ {
        self.roots.iter().map(|r| r.id)
    }

    fn find(&self, stream: u32) -> Result<usize, usize> {
        self.streams.binary_search_by_key(&stream, |r| r.id)
    }

    /// The record of `stream` (of the root at `root`), made if missing.
    fn record_mut(&mut self, stream: u32, root: usize) -> &mut Record {
        let i = match self.find(stream) {
            Ok(i) => i,
            Err(i) => {
                let root = &self.roots[root];
                let record = Record {
                    id: stream,
                    root: root.id,
                    born: root.ticks,
                    kept: Vec::new(),
                    route: None,
                };
                self.streams.insert(i, record);
                if self.streams.len() <= MAX_RECORDS {
                    i
                } else {
                    let oldest = usize::from(i == 0);
                    self.streams.remove(oldest);
                    if oldest < i {
                        i - 1
                    } else {
                        i
                    }
                }
            }
        };
        &mut self.streams[i]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Root ids and stream ids come from one counter in Envoy, as here.
    fn with_root(id: u32) -> Roots<&'static str> {
        let mut roots = Roots::new();
        roots.configured(id, "v1");
        roots
    }

    fn plan_of(roots: &Roots<&'static str>, stream: u32) -> Option<&'static str> {
        roots.root_of(stream).map(|i| *roots.plan(i))
    }

    #[test]
    fn one_root_keeps_no_record_for_its_streams() {
        let mut roots = with_root(1);
        roots.created(2, 1);
        assert_eq!(roots.records(), 0);
        assert_eq!(plan_of(&roots, 2), Some("v1"));
    }

    #[test]
    fn stream_made_under_a_lone_root_keeps_it_across_the_first_update() {
        let mut roots = with_root(1);
        roots.created(2, 1); // no record: root 1 was alone
        roots.configured(3, "v2");
        roots.created(4, 3);
        roots.created(5, 1);
        assert_eq!(plan_of(&roots, 2), Some("v1"));
        assert_eq!(plan_of(&roots, 4), Some("v2"));
        assert_eq!(plan_of(&roots, 5), Some("v1"));
    }

    #[test]
    fn streams_keep_their_root_across_later_updates() {
        let mut roots = with_root(1);
        roots.created(2, 1);
        roots.configured(3, "v2");
        roots.created(4, 3);
        roots.configured(5, "v3");
        roots.created(6, 5);
        assert_eq!(plan_of(&roots, 2), Some("v1"));
        assert_eq!(plan_of(&roots, 4), Some("v2"));
        assert_eq!(plan_of(&roots, 6), Some("v3"));
        // v1 retires once stream 2 is done: v2's and v3's streams keep theirs.
        roots.take(2);
        roots.retire(|id| id != 1);
        assert_eq!(plan_of(&roots, 4), Some("v2"));
        assert_eq!(plan_of(&roots, 6), Some("v3"));
    }

    #[test]
    fn reconfiguring_a_root_replaces_its_plan_without_an_elder() {
        let mut roots = with_root(1);
        roots.configured(1, "v1b");
        roots.created(2, 1);
        assert_eq!(roots.len(), 1);
        assert_eq!(roots.records(), 0);
        assert_eq!(plan_of(&roots, 2), Some("v1b"));
    }

    #[test]
    fn a_retired_root_takes_its_records_and_one_root_needs_none() {
        let mut roots = with_root(1);
        roots.configured(3, "v2");
        roots.created(4, 1); // never reaches its response headers
        roots.created(5, 3);
        roots.created(6, 3);
        roots.keep(6, 1, Some(0), Vec::new());
        assert_eq!(roots.records(), 3);
        roots.retire(|id| id == 3);
        assert_eq!(roots.len(), 1);
        // 4 went with root 1; 5 only named its root; 6 keeps its route.
        assert_eq!(roots.records(), 1);
        assert_eq!(roots.take(6), (Some(0), Vec::new()));
        assert_eq!(plan_of(&roots, 5), Some("v2"));
    }

    #[test]
    fn roots_stay_bounded_over_many_updates() {
        let mut roots = with_root(1);
        let mut next = 2;
        for _ in 0..1000 {
            let id = next;
            next += 1;
            roots.configured(id, "vN");
            for _ in 0..3 {
                roots.created(next, id);
                next += 1;
            }
            // Envoy retires every root but the newest once its streams end.
            roots.retire(|root| root == id);
            assert_eq!(roots.len(), 1);
        }
        assert_eq!(roots.records(), 0);
    }

    #[test]
    fn stale_records_go_after_their_roots_ticks() {
        let mut roots = with_root(1);
        roots.keep(2, 0, Some(1), vec![Some(b"x".to_vec())]);
        for _ in 0..STALE_TICKS - 1 {
            roots.tick(1);
        }
        assert_eq!(roots.records(), 1);
        roots.tick(1);
        assert_eq!(roots.records(), 0);
    }

    #[test]
    fn records_are_capped_oldest_first() {
        let mut roots = with_root(1);
        for stream in 0..MAX_RECORDS as u32 + 10 {
            roots.keep(stream + 2, 0, Some(0), Vec::new());
        }
        assert_eq!(roots.records(), MAX_RECORDS);
        assert_eq!(roots.take(2), (None, Vec::new()));
        let newest = MAX_RECORDS as u32 + 11;
        assert_eq!(roots.take(newest), (Some(0), Vec::new()));
    }
}
