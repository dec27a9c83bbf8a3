import SessionReplicationCore
import Synchronization

/// Decoded values of `DRSPersistDriver` keys, each beside the stamp of the session state
/// it was decoded from: a `get` of a session whose stamp is unchanged returns the value
/// without decoding its JSON again. A stamp names exactly one state of a session, so a
/// hit is always the value the stored bytes decode to.
///
/// Holds at most `limit` entries; when full it is emptied (the next reads decode and
/// refill it). A limit of 0 keeps nothing.
final class DecodedValueCache: Sendable {
    struct Entry {
        var stamp: Stamp
        var key: String
        var value: any Sendable
    }

    /// Entries kept at most.
    let limit: Int
    private let entries = Mutex<[SessionID: Entry]>([:])

    init(limit: Int) { self.limit = max(0, limit) }

    /// The value decoded from `key` of `id` at `stamp`, when one is kept and is an `Object`.
    func value<Object>(_ id: SessionID, key: String, stamp: Stamp, as: Object.Type) -> Object? {
        guard limit > 0 else { return nil }
        return entries.withLock { all in
            guard let e = all[id], e.stamp == stamp, e.key == key else { return nil }
            return e.value as? Object
        }
    }

    /// Keeps `value` as what `key` of `id` holds at `stamp`.
    func store(_ id: SessionID, key: String, stamp: Stamp, value: any Sendable) {
        guard limit > 0 else { return }
        entries.withLock { all in
            if all.count >= limit, all[id] == nil { all.removeAll(keepingCapacity: true) }
            all[id] = Entry(stamp: stamp, key: key, value: value)
        }
    }

    /// Entries kept now (tests).
    var count: Int { entries.withLock { $0.count } }
}
