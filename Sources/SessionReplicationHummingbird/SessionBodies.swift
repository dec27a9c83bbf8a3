import SessionReplication
import SessionReplicationCore

/// The JSON bodies of the contract, field for field.
enum SessionBodies {
    /// `{"id","route","owner","epoch","version","etag","createdAt","lastAccessedAt","maxInactiveInterval"}`:
    /// `route` and `owner` both name the owner; `epoch` is the epoch counter;
    /// `maxInactiveInterval` is in whole seconds (rounded down).
    static func creation(_ state: SessionState, owner: String) -> [(String, JSONValue)] {
        [
            ("id", .string(state.id.hex)),
            ("route", .string(owner)),
            ("owner", .string(owner)),
            ("epoch", .uint(state.stamp.epoch.counter)),
            ("version", .uint(state.stamp.version)),
            ("etag", .string(state.stamp.etag)),
            ("createdAt", .string(RFC3339.string(state.createdAt))),
            ("lastAccessedAt", .string(RFC3339.string(state.lastAccessedAt))),
            ("maxInactiveInterval", .int(state.maxInactiveInterval.components.seconds)),
        ]
    }

    /// The creation body plus `"attributes": {name: base64}` in name order.
    static func session(_ state: SessionState, owner: String) -> JSONValue {
        let attributes = state.attributes.sorted { $0.key < $1.key }.map { ($0.key, JSONValue.string(Base64.encode($0.value))) }
        return .object(creation(state, owner: owner) + [("attributes", .object(attributes))])
    }

    /// `{"epoch","version","etag"}`.
    static func write(_ stamp: Stamp) -> [(String, JSONValue)] {
        [("epoch", .uint(stamp.epoch.counter)), ("version", .uint(stamp.version)), ("etag", .string(stamp.etag))]
    }

    /// `{"epoch","version","etag","replicatedTo"}`: the backups named by `durability`.
    static func sync(_ stamp: Stamp, durability: Durability) -> JSONValue {
        let names: [String] = if case .replicated(let names) = durability { names } else { [] }
        return .object(write(stamp) + [("replicatedTo", .array(names.map(JSONValue.string)))])
    }

    /// `[{"name","id","address","state","incarnation","self"}]` sorted by name.
    static func members(_ members: [MemberInfo]) -> JSONValue {
        .array(members.sorted { $0.name < $1.name }.map { member in
            .object([
                ("name", .string(member.name)),
                ("id", .optional(member.id)),
                ("address", .string(member.address)),
                ("state", .string(member.state)),
                ("incarnation", .uint(member.incarnation)),
                ("self", .bool(member.isSelf)),
            ])
        })
    }

    /// `{"name","id","state","leaseRemainingMs","primaries","backups","underReplicated",
    /// "queues":{peer:depth},"lagMsP99":{peer:ms},"stateTransfer":{"pending","done"}}`.
    static func status(_ status: NodeStatus) -> JSONValue {
        .object([
            ("name", .string(status.name)),
            ("id", .string(status.id)),
            ("state", .string(status.state)),
            ("leaseRemainingMs", .int(Int64(status.leaseRemainingMs))),
            ("primaries", .int(Int64(status.primaries))),
            ("backups", .int(Int64(status.backups))),
            ("underReplicated", .int(Int64(status.underReplicated))),
            ("queues", .object(status.queues.sorted { $0.key < $1.key }.map { ($0.key, .int(Int64($0.value))) })),
            ("lagMsP99", .object(status.lagMsP99.sorted { $0.key < $1.key }.map { ($0.key, .double($0.value)) })),
            ("stateTransfer", .object([
                ("pending", .int(Int64(status.stateTransferPending))),
                ("done", .int(Int64(status.stateTransferDone))),
            ])),
        ])
    }

    /// `{"role","epoch","version","etag","owner","replicaSet","lastAccessedAt"}` for this
    /// node's own copy. An owned or backup copy fills every field. An ended session
    /// answers `role: "none"` with the tombstone's epoch, version and etag and `null`
    /// owner and lastAccessedAt; an unknown one `role: "none"` with `null` for all but
    /// `replicaSet: []`.
    static func copy(_ lookup: SessionLookup, selfName: String) -> JSONValue {
        func held(_ role: String, _ state: SessionState, _ owner: String) -> JSONValue {
            .object([("role", .string(role))] + write(state.stamp) + [
                ("owner", .string(owner)),
                ("replicaSet", .array(state.replicaSet.map(JSONValue.string))),
                ("lastAccessedAt", .string(RFC3339.string(state.lastAccessedAt))),
            ])
        }
        let none: [(String, JSONValue)] = [("owner", .null), ("replicaSet", .array([])), ("lastAccessedAt", .null)]
        switch lookup {
        case .owned(let state): return held("owner", state, selfName)
        case .backup(let state, let owner): return held("backup", state, owner)
        case .ended(let stamp): return .object([("role", .string("none"))] + write(stamp) + none)
        case .unknown:
            return .object([("role", .string("none")), ("epoch", .null), ("version", .null), ("etag", .null)] + none)
        }
    }
}
