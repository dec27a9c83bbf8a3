import SessionReplicationCore
import Vapor

/// How Vapor's `SessionData` (a `[String: String]`) maps to a cluster session's
/// attributes: each key is one attribute of the same name whose value is the string's
/// UTF-8 bytes. One changed key is one changed attribute, so the delta the owner
/// replicates carries that key alone, and the HTTP API reads the same values
/// (`GET /sessions/{id}/attributes/{key}`).
enum SessionDataMapping {
    /// The attributes holding `data`: one per key, the value's UTF-8 bytes. Throws
    /// `invalid-attribute-name` when a key cannot be an attribute name (empty, over 256
    /// bytes, or holding a control character).
    static func attributes(_ data: [String: String]) throws -> [String: [UInt8]] {
        var out: [String: [UInt8]] = [:]
        out.reserveCapacity(data.count)
        for (key, value) in data {
            try checkKey(key)
            out[key] = Array(value.utf8)
        }
        return out
    }

    /// The session data of `attributes`: every attribute whose value is valid UTF-8.
    /// Others (written by another client through the HTTP API) are left out, and since
    /// writes only touch the keys a request changed, they are never overwritten.
    static func data(_ attributes: [String: [UInt8]]) -> [String: String] {
        var out: [String: String] = [:]
        out.reserveCapacity(attributes.count)
        for (name, bytes) in attributes {
            if let value = String(validating: bytes, as: UTF8.self) { out[name] = value }
        }
        return out
    }

    /// What a request changed: the keys whose value differs from `base` (what the request
    /// read) and the keys of `base` it removed. Keys neither read nor written are not
    /// named, so a key another request wrote meanwhile keeps that request's value.
    struct Changes: Equatable {
        var updated: [String: String] = [:]
        var removed: [String] = []
        var isEmpty: Bool { updated.isEmpty && removed.isEmpty }
    }

    static func changes(from base: [String: String], to new: [String: String]) -> Changes {
        var changes = Changes()
        for (key, value) in new where base[key] != value { changes.updated[key] = value }
        for key in base.keys where new[key] == nil { changes.removed.append(key) }
        changes.removed.sort()
        return changes
    }

    /// Applies `changes` to a change scope; throws `invalid-attribute-name` (nothing
    /// applied: the node discards a scope whose body throws).
    static func apply(_ changes: Changes, to scope: inout SessionScope) throws {
        for (key, value) in changes.updated {
            try checkKey(key)
            scope.set(key, Array(value.utf8))
        }
        for key in changes.removed { scope.remove(key) }
    }

    static func checkKey(_ key: String) throws {
        guard AttributeName.isValid(key) else {
            throw SessionError(.invalidAttributeName,
                               "a session key becomes an attribute name: 1-256 bytes of UTF-8 without control characters")
        }
    }
}
