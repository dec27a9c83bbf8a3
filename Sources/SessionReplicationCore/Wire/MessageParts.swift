/// Long control messages split into parts a receiver accepts. A failover of a node that
/// owned a million sessions asked each holder about hundreds of thousands of sessions in
/// one prepare; the decoder refuses more than `WireLimits.maxMessages` entries, so no
/// takeover ever completed. Prepares, nominations, promises and releases are answered entry by entry,
/// so their parts mean what the whole did.
extension ReplicationMessage {
    /// Entries per part. Default 8,192: well under `WireLimits.maxMessages` (65,535), and a
    /// prepare or release part of about 330 KB.
    package static let maxEntriesPerPart = 8_192

    /// Bytes of session state one promise part carries at most (fresher copies are whole
    /// sessions), besides a first entry of any size. Default 4 MiB.
    package static let maxPromiseStateBytes = 4 << 20

    /// This message, or its parts when it lists more entries than one part holds.
    /// Messages without entry lists come back unchanged.
    package func parts() -> [ReplicationMessage] {
        switch self {
        case .prepare(let p) where p.entries.count > Self.maxEntriesPerPart:
            return Self.chunks(p.entries, Self.maxEntriesPerPart).map {
                .prepare(PrepareRequest(oldOwner: p.oldOwner, oldOwnerID: p.oldOwnerID, entries: Array($0)))
            }
        case .nominate(let p) where p.entries.count > Self.maxEntriesPerPart:
            return Self.chunks(p.entries, Self.maxEntriesPerPart).map {
                .nominate(PrepareRequest(oldOwner: p.oldOwner, oldOwnerID: p.oldOwnerID, entries: Array($0)))
            }
        case .release(let r) where r.entries.count > Self.maxEntriesPerPart:
            return Self.chunks(r.entries, Self.maxEntriesPerPart).map { .release(ReleaseRequest(entries: Array($0))) }
        case .promise(let p):
            var parts: [ReplicationMessage] = []
            var current: [PromiseReply.Entry] = []
            var bytes = 0
            for e in p.entries {
                let size = e.fresher?.byteSize ?? 0
                if !current.isEmpty, current.count == Self.maxEntriesPerPart || bytes + size > Self.maxPromiseStateBytes {
                    parts.append(.promise(PromiseReply(oldOwner: p.oldOwner, oldOwnerID: p.oldOwnerID, sinceGrantMs: p.sinceGrantMs, entries: current)))
                    current = []
                    bytes = 0
                }
                current.append(e)
                bytes += size
            }
            if parts.isEmpty { return [self] }
            parts.append(.promise(PromiseReply(oldOwner: p.oldOwner, oldOwnerID: p.oldOwnerID, sinceGrantMs: p.sinceGrantMs, entries: current)))
            return parts
        default:
            return [self]
        }
    }

    static func chunks<T>(_ items: [T], _ size: Int) -> [ArraySlice<T>] {
        stride(from: 0, to: items.count, by: size).map { items[$0..<min(items.count, $0 + size)] }
    }
}
