/// Something a shard holds that carries a session's state.
protocol HoldsSessionState {
    var state: SessionState { get }
}

/// A dictionary of held sessions that keeps the sum of their sizes (names plus values,
/// what `maxSessionBytes` counts) as entries come, change and go, so the node's byte
/// budget (`sessions.maxBytes`) is checked without walking every session. An entry
/// changed in place (`table[id]!.state.attributes[name] = value`) is measured before and
/// after the change; the dictionary's storage is modified in place, never copied.
struct SessionTable<Entry: HoldsSessionState & Sendable>: Sendable, Sequence {
    private(set) var storage: [SessionID: Entry] = [:]
    /// The sum of `SessionState.byteSize` over every entry.
    private(set) var bytes = 0

    init() {}

    subscript(id: SessionID) -> Entry? {
        get { storage[id] }
        set {
            bytes -= storage[id]?.state.byteSize ?? 0
            bytes += newValue?.state.byteSize ?? 0
            storage[id] = newValue
        }
        _modify {
            let before = storage[id]?.state.byteSize ?? 0
            defer { bytes += (storage[id]?.state.byteSize ?? 0) - before }
            yield &storage[id]
        }
    }

    @discardableResult
    mutating func removeValue(forKey id: SessionID) -> Entry? {
        guard let old = storage.removeValue(forKey: id) else { return nil }
        bytes -= old.state.byteSize
        return old
    }

    var keys: Dictionary<SessionID, Entry>.Keys { storage.keys }
    var values: Dictionary<SessionID, Entry>.Values { storage.values }
    var count: Int { storage.count }
    var isEmpty: Bool { storage.isEmpty }
    func makeIterator() -> Dictionary<SessionID, Entry>.Iterator { storage.makeIterator() }
}

extension SessionState {
    /// Names plus values of every attribute: what `maxSessionBytes` and the byte budget
    /// count.
    public var byteSize: Int {
        var total = 0
        for (name, value) in attributes { total += name.utf8.count + value.count }
        return total
    }
}
