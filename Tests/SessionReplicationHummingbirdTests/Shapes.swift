/// The contract's JSON bodies, decoded strictly (integers must be JSON integers).
struct CreationBody: Decodable {
    static let keys: Set = ["id", "route", "owner", "epoch", "version", "etag", "createdAt", "lastAccessedAt", "maxInactiveInterval"]
    let id: String
    let route: String
    let owner: String
    let epoch: UInt64
    let version: UInt64
    let etag: String
    let createdAt: String
    let lastAccessedAt: String
    let maxInactiveInterval: Int64
}

struct SessionBody: Decodable {
    static let keys = CreationBody.keys.union(["attributes"])
    let id: String
    let epoch: UInt64
    let version: UInt64
    let etag: String
    let lastAccessedAt: String
    let attributes: [String: String]
}

struct WriteBody: Decodable {
    static let keys: Set = ["epoch", "version", "etag"]
    let epoch: UInt64
    let version: UInt64
    let etag: String
}

struct SyncBody: Decodable {
    static let keys = WriteBody.keys.union(["replicatedTo"])
    let epoch: UInt64
    let version: UInt64
    let etag: String
    let replicatedTo: [String]
}

struct MemberBody: Decodable, Equatable {
    static let keys: Set = ["name", "id", "address", "state", "incarnation", "self"]
    let name: String
    let id: String?
    let address: String
    let state: String
    let incarnation: UInt64
    let isSelf: Bool

    enum CodingKeys: String, CodingKey {
        case name, id, address, state, incarnation
        case isSelf = "self"
    }
}

struct StatusBody: Decodable {
    static let keys: Set = ["name", "id", "state", "leaseRemainingMs", "primaries", "backups", "underReplicated",
                            "queues", "lagMsP99", "stateTransfer"]
    struct Transfer: Decodable {
        let pending: Int
        let done: Int
    }
    let name: String
    let id: String
    let state: String
    let leaseRemainingMs: Int
    let primaries: Int
    let backups: Int
    let underReplicated: Int
    let queues: [String: Int]
    let lagMsP99: [String: Double]
    let stateTransfer: Transfer
}

struct CopyBody: Decodable {
    static let keys: Set = ["role", "epoch", "version", "etag", "owner", "replicaSet", "lastAccessedAt"]
    let role: String
    let epoch: UInt64?
    let version: UInt64?
    let etag: String?
    let owner: String?
    let replicaSet: [String]
    let lastAccessedAt: String?
}
