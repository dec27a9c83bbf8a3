import Foundation
import NIOCore
import SessionReplicationCore
import Yams

/// A problem in a cluster configuration, naming the file, the field and what was expected.
/// Printed as `file: field: message`, e.g.
/// `cluster-configs/x.yaml: replication.retryCount: expected a whole number >= 0, found "abc"`.
public struct ConfigurationError: Error, CustomStringConvertible, Sendable {
    /// The file as it was named to `load(path:)` or `parse(yaml:file:)`; `<config>` by default.
    public var file: String
    /// Dotted path of the offending field (`replication.retryCount`, `nodes[1].httpPort`,
    /// list indices from 0); empty when the whole file is at fault (unreadable, not YAML).
    public var field: String
    /// What is expected and what was found.
    public var message: String

    /// Creates an error; `field` may be empty.
    public init(file: String, field: String, message: String) {
        self.file = file
        self.field = field
        self.message = message
    }

    /// `file: field: message`, or `file: message` when `field` is empty.
    public var description: String { field.isEmpty ? "\(file): \(message)" : "\(file): \(field): \(message)" }
}

extension ClusterConfiguration {
    /// Reads, parses and validates the YAML file at `path` (docs/contracts.md); errors name `path`.
    /// Every key can also be set from `environment` (default: the process's), which wins
    /// over the file: `DRS_` and the key's path in upper snake case (`DRS_CLUSTER_KEY`,
    /// `DRS_REPLICATION_MODE`, `DRS_HTTP_TLS_CERTIFICATE`; list items cannot). Relative
    /// paths in it (`cluster.keyFile`, `http.tls.*`) are taken from `path`'s folder.
    /// Throws a `ConfigurationError` when the file is unreadable, not YAML, or invalid.
    public static func load(path: String, environment: [String: String] = ProcessInfo.processInfo.environment) throws(ConfigurationError) -> ClusterConfiguration {
        let text: String
        do { text = try String(contentsOfFile: path, encoding: .utf8) } catch {
            throw ConfigurationError(file: path, field: "", message: "cannot read the file: \(error.localizedDescription)")
        }
        let folder = (path as NSString).deletingLastPathComponent
        return try parse(yaml: text, file: path, environment: environment, directory: folder.isEmpty ? "." : folder)
    }

    /// Parses and validates a configuration; every key but `cluster.id` and `nodes` is optional
    /// and defaults as documented on the settings types. `environment` overrides keys as
    /// `load` says (default none); relative paths are taken from `directory` (default the
    /// current one). Throws a `ConfigurationError` naming `file` and the field on invalid
    /// YAML, unknown keys, wrong types, an unreadable `cluster.keyFile`, or failed `validate`.
    public static func parse(yaml: String, file: String = "<config>", environment: [String: String] = [:],
                             directory: String = ".") throws(ConfigurationError) -> ClusterConfiguration {
        let root: Node?
        do { root = try compose(yaml: yaml) } catch {
            throw ConfigurationError(file: file, field: "", message: "not valid YAML: \(ConfigSyntax.describe(yamlError: error))")
        }
        let config = try ConfigReader(file: file, environment: environment, directory: directory).configuration(root)
        try config.validate(file: file)
        return config
    }

    /// Checks the rules of docs/design.md (Replication), and docs/contracts.md on a parsed or hand-built configuration.
    /// Throws the first `ConfigurationError` found, naming `file` (default `<config>`) and the field.
    public func validate(file: String = "<config>") throws(ConfigurationError) {
        func check(_ ok: Bool, _ field: String, _ message: @autoclosure () -> String) throws(ConfigurationError) {
            if !ok { throw ConfigurationError(file: file, field: field, message: message()) }
        }
        func positive(_ value: Duration, _ field: String) throws(ConfigurationError) {
            try check(value > .zero, field, "expected a duration > 0, found \(ConfigSyntax.format(value))")
        }
        func nonNegative(_ value: Duration, _ field: String) throws(ConfigurationError) {
            try check(value >= .zero, field, "expected a duration >= 0, found \(ConfigSyntax.format(value))")
        }
        func atLeast(_ minimum: Int, _ value: Int, _ field: String) throws(ConfigurationError) {
            try check(value >= minimum, field, "expected a whole number >= \(minimum), found \(value)")
        }

        // cluster
        let idOK = (1...64).contains(clusterID.utf8.count) && clusterID.unicodeScalars.allSatisfy { $0.value > 0x20 && $0.value != 0x7F }
        try check(idOK, "cluster.id", "expected 1 to 64 bytes without spaces or control characters, found \"\(clusterID)\"")
        let keyField = keys.keyFile == nil ? "cluster.key" : "cluster.keyFile"
        if let key = keys.current {
            try check(key.count == 32, keyField, "expected base64 of exactly 32 bytes, found \(key.count) bytes")
            try check(!keys.insecure, "cluster.insecure", "`insecure: true` contradicts `\(keyField)`; remove one of them")
        } else {
            try check(keys.insecure, "cluster.key", "expected base64 of exactly 32 bytes (make one with `drs keygen`; or give `keyFile`, or DRS_CLUSTER_KEY), or `insecure: true` on loopback, found nothing")
        }
        for (i, old) in keys.keyring.enumerated() {
            try check(old.count == 32, "cluster.keyring[\(i)]", "expected base64 of exactly 32 bytes, found \(old.count) bytes")
        }
        // nodes
        try check(!nodes.isEmpty, "nodes", "expected at least one node, found none")
        var names: [String: Int] = [:]
        var bound: [(machine: String, host: String, port: Int, field: String)] = []
        for (i, node) in nodes.enumerated() {
            let at = "nodes[\(i)]"
            try check(NodeName.isValid(node.name), "\(at).name", "expected a name matching [a-z0-9][a-z0-9-]{0,31}, found \"\(node.name)\"")
            if let first = names[node.name] {
                try check(false, "\(at).name", "duplicate node name \"\(node.name)\" (also nodes[\(first)].name)")
            }
            names[node.name] = i
            try check(ConfigSyntax.normalizedAddress(node.address) != nil || ConfigSyntax.isHostName(node.address), "\(at).address",
                      "expected an IPv4 or IPv6 literal such as 127.0.0.11 or ::1, or a DNS host name such as drs-0.drs.example.svc, found \"\(node.address)\"")
            if let bind = node.bind {
                try check(ConfigSyntax.normalizedAddress(bind) != nil, "\(at).bind",
                          "expected an IPv4 or IPv6 literal to listen on such as 0.0.0.0, :: or 10.0.0.5, found \"\(bind)\"")
            }
            // Ports clash only between nodes on one machine: loopback and wildcard addresses
            // are this machine; otherwise nodes with one address (literal or name) share one.
            let literal = ConfigSyntax.normalizedAddress(node.address)
            let local = ConfigSyntax.isLoopback(node.address) || literal.map(ConfigSyntax.isWildcard) == true
            let machine = local ? "this machine" : (literal ?? node.address.lowercased())
            // Where the sockets listen on it: a literal in canonical form, or a name as written.
            let host = ConfigSyntax.normalizedAddress(node.listenAddress) ?? node.listenAddress.lowercased()
            for (key, port) in [("httpPort", node.httpPort), ("replicationPort", node.replicationPort), ("membershipPort", node.membershipPort)] {
                let field = "\(at).\(key)"
                try check((0...65535).contains(port), field, "expected a port from 0 to 65535, found \(port)")
                guard port != 0 else { continue }
                // A wildcard address (0.0.0.0, ::) takes the port on every address.
                if let other = bound.first(where: { $0.machine == machine && $0.port == port && ($0.host == host || ConfigSyntax.isWildcard($0.host) || ConfigSyntax.isWildcard(host)) }) {
                    try check(false, field, "port clash: \(node.listenAddress) port \(port) is also used by \(other.field)")
                }
                bound.append((machine, host, port, field))
            }
        }

        // replication (docs/design.md (Replication))
        let r = replication
        if case .count(let n) = r.replicas {
            try atLeast(0, n, "replication.replicas")
            try check(r.mode != .synchronous || n > 0, "replication.replicas", "synchronous mode needs at least 1 replica, found 0")
        }
        if let m = r.minSyncReplicas {
            try atLeast(1, m, "replication.minSyncReplicas")
            if case .count(let n) = r.replicas {
                try check(m <= n, "replication.minSyncReplicas", "expected at most replicas (\(n)), found \(m)")
            }
        }
        try check(r.mode != .synchronous || r.writeFrequency == .endOfService, "replication.writeFrequency",
                  "synchronous mode needs end-of-service, found \(ConfigSyntax.name(of: r.writeFrequency))")
        try atLeast(0, r.retryCount, "replication.retryCount")
        try positive(r.writeInterval, "replication.writeInterval")
        try positive(r.retryInterval, "replication.retryInterval")
        try positive(r.syncTimeout, "replication.syncTimeout")
        try positive(r.repairInterval, "replication.repairInterval")
        try nonNegative(r.takeoverCooldown, "replication.takeoverCooldown")
        try positive(r.handoverTimeout, "replication.handoverTimeout")
        try nonNegative(r.drainTimeout, "replication.drainTimeout")
        try atLeast(1, r.maxQueueBytes, "replication.maxQueueBytes")
        try check(ConfigSyntax.udpPayload.contains(r.udpMaxPayload), "replication.udpMaxPayload",
                  "expected a whole number from 512 to 65000, found \(r.udpMaxPayload)")
        try atLeast(1, r.udpWindow, "replication.udpWindow")
        try atLeast(1, r.udpRate, "replication.udpRate")
        try atLeast(1, r.reorderFrames, "replication.reorderFrames")
        try nonNegative(r.reorderDelay, "replication.reorderDelay")

        // membership (docs/design.md (Membership and failover))
        try positive(membership.probeInterval, "membership.probeInterval")
        try positive(membership.lease, "membership.lease")
        try nonNegative(membership.tombstoneTTL, "membership.tombstoneTTL")
        try check(membership.promotion != .majority || nodes.count >= 3, "membership.promotion",
                  "majority needs at least 3 nodes (voters), found \(nodes.count)")

        // sessions (docs/design.md (Sessions))
        let s = sessions
        try positive(s.maxInactiveInterval, "sessions.maxInactiveInterval")
        try nonNegative(s.backupGrace, "sessions.backupGrace")
        if let access = s.accessReplicationInterval { try positive(access, "sessions.accessReplicationInterval") }
        for (i, pattern) in s.transientAttributes.enumerated() {
            try check(!pattern.isEmpty, "sessions.transientAttributes[\(i)]", "expected a non-empty name pattern, found \"\"")
        }
        try atLeast(1, s.maxAttributeBytes, "sessions.maxAttributeBytes")
        try atLeast(1, s.maxSessionBytes, "sessions.maxSessionBytes")
        try check(s.maxAttributeBytes <= s.maxSessionBytes, "sessions.maxAttributeBytes",
                  "expected at most maxSessionBytes (\(ConfigSyntax.format(size: s.maxSessionBytes))), found \(ConfigSyntax.format(size: s.maxAttributeBytes))")
        try atLeast(1, s.maxSessions, "sessions.maxSessions")
        try atLeast(0, s.maxAttributes, "sessions.maxAttributes")
        if let budget = s.maxBytes {
            try check(budget >= s.maxSessionBytes, "sessions.maxBytes",
                      "expected at least maxSessionBytes (\(ConfigSyntax.format(size: s.maxSessionBytes))), found \(ConfigSyntax.format(size: budget))")
        }
        if let (field, message) = s.wireProblem() {
            try check(false, "sessions.\(field)", message)
        }

        // http (docs/design.md (Wire format and security), and docs/contracts.md)
        let tokenChars = Set("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
        try check(!http.cookieName.isEmpty && http.cookieName.allSatisfy(tokenChars.contains), "http.cookieName",
                  "expected a cookie name (letters, digits, !#$%&'*+-.^_`|~), found \"\(http.cookieName)\"")
        try positive(http.idleTimeout, "http.idleTimeout")
        if let t = http.requestTimeout { try positive(t, "http.requestTimeout") }
        try atLeast(1, http.maxConnections, "http.maxConnections")
        if let tls = http.tls {
            for (field, path) in [("http.tls.certificate", tls.certificate), ("http.tls.key", tls.key)] {
                try check(FileManager.default.isReadableFile(atPath: path), field, "expected a readable PEM file, found \"\(path)\" unreadable or missing")
            }
        }
        if let token = http.token {
            try check(!token.isEmpty, "http.token", "expected a non-empty bearer token, found \"\"")
        } else if let exposed = nodes.firstIndex(where: ConfigSyntax.isExposed) {
            try check(false, "http.token", "required when the HTTP API binds beyond loopback (\(ConfigSyntax.exposure(nodes[exposed], at: exposed)) is), found nothing")
        }

        // Beyond loopback anyone on the network can send frames: they must be sealed, with
        // a key nobody else has read.
        if let exposed = nodes.firstIndex(where: ConfigSyntax.isExposed) {
            let reason = "\(ConfigSyntax.exposure(nodes[exposed], at: exposed)) is beyond loopback"
            try check(!keys.insecure, "cluster.insecure", "refused: \(reason), where frames must be sealed; give a key from `drs keygen` (cluster.key, cluster.keyFile or DRS_CLUSTER_KEY)")
            if let key = keys.current {
                try check(!KnownKeys.isPublished(key), keyField, "refused: this key is published (shipped in the drs repository, or one repeated byte) and \(reason); make a fresh one with `drs keygen`")
            }
            for (i, old) in keys.keyring.enumerated() {
                try check(!KnownKeys.isPublished(old), "cluster.keyring[\(i)]", "refused: this key is published (shipped in the drs repository, or one repeated byte) and \(reason); drop it from the keyring")
            }
        }
    }

    /// Settings that are valid but probably not what was meant, each as `field: explanation`.
    /// Empty for a configuration without surprises; never throws.
    public var warnings: [String] {
        var out: [String] = []
        if replication.transport == .udp, replication.mode != .bestEffort {
            out.append("replication.transport: udp is ignored in \(replication.mode.rawValue) mode; deltas travel over TCP")
        }
        if replication.minSyncReplicas != nil, replication.mode != .synchronous {
            out.append("replication.minSyncReplicas: ignored in \(replication.mode.rawValue) mode; it applies to synchronous only")
        }
        if case .count(let n) = replication.replicas, n > nodes.count - 1 {
            out.append("replication.replicas: \(n) backups asked but only \(nodes.count - 1) other nodes; sessions get at most \(max(0, nodes.count - 1))")
        }
        if keys.insecure {
            out.append("cluster.insecure: frames travel unsealed and unauthenticated; use only for local experiments")
        }
        if let key = keys.current, KnownKeys.isPublished(key) {
            out.append("\(keys.keyFile == nil ? "cluster.key" : "cluster.keyFile"): this key is published (anyone who read the drs repository has it); fine on loopback, refused beyond it; make a fresh one with `drs keygen`")
        }
        if let path = keys.keyFile, let mode = (try? FileManager.default.attributesOfItem(atPath: path))?[.posixPermissions] as? Int, mode & 0o077 != 0 {
            out.append("cluster.keyFile: \(path) is readable by other users (mode \(String(mode, radix: 8))); `chmod 600` it")
        }
        return out
    }
}

/// Syntax of configuration values: durations, sizes, addresses.
enum ConfigSyntax {
    static let udpPayload = 512...65000

    /// `200ms`, `10s`, `1.5s`, `30m`, `2h`; `nil` for anything else (a plain number included).
    static func duration(_ text: String) -> Duration? {
        let units: [(String, Double)] = [("ms", 1e6), ("s", 1e9), ("m", 60e9), ("h", 3600e9)]
        guard let (unit, scale) = units.first(where: { text.hasSuffix($0.0) }) else { return nil }
        let number = text.dropLast(unit.count)
        let parts = number.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count <= 2, parts.allSatisfy({ !$0.isEmpty && $0.allSatisfy(\.isASCIIDigit) }),
              let value = Double(number) else { return nil }
        let nanoseconds = (value * scale).rounded()
        guard nanoseconds < 9e18 else { return nil }
        return .nanoseconds(Int64(nanoseconds))
    }

    /// Bytes from `4096`, `512B`, `64KiB`, `1MiB`, `2GiB`; `nil` on anything else or overflow.
    static func size(_ text: String) -> Int? {
        let units: [(String, Int)] = [("KiB", 1 << 10), ("MiB", 1 << 20), ("GiB", 1 << 30), ("B", 1)]
        let (unit, scale) = units.first { text.hasSuffix($0.0) } ?? ("", 1)
        let number = text.dropLast(unit.count).trimmingCharacters(in: .whitespaces).replacingOccurrences(of: "_", with: "")
        guard !number.isEmpty, number.allSatisfy(\.isASCIIDigit), let value = Int(number) else { return nil }
        let (bytes, overflow) = value.multipliedReportingOverflow(by: scale)
        return overflow ? nil : bytes
    }

    /// The shortest exact form of `duration` (`200ms`, `10s`, `30m`); fractional milliseconds otherwise.
    static func format(_ duration: Duration) -> String {
        let ns = duration.nanosecondsClamped
        for (unit, scale) in [("h", Int64(3600e9)), ("m", Int64(60e9)), ("s", Int64(1e9)), ("ms", Int64(1e6))] where ns % scale == 0 {
            return ns == 0 ? "0s" : "\(ns / scale)\(unit)"
        }
        return "\(Double(ns) / 1e6)ms"
    }

    /// One line for a Yams error: position and problem, without the snippet Yams appends.
    static func describe(yamlError error: any Error) -> String {
        switch error as? YamlError {
        case .scanner(let context, let problem, let mark, _), .parser(let context, let problem, let mark, _),
             .composer(let context, let problem, let mark, _):
            return "line \(mark.line), column \(mark.column): \(problem)" + (context.map { " (\($0.text) at line \($0.mark.line))" } ?? "")
        case .duplicatedKeysInMapping(let keys, let context):
            return "line \(context.mark.line): duplicate key \(keys.map { "`\($0)`" }.joined(separator: ", "))"
        default:
            return String(describing: error)
        }
    }

    /// `size` in the largest binary unit dividing it (`4MiB`), else in bytes.
    static func format(size: Int) -> String {
        for (unit, scale) in [("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)] where size != 0 && size % scale == 0 {
            return "\(size / scale)\(unit)"
        }
        return "\(size)B"
    }

    /// The config spelling of a write frequency.
    static func name(of frequency: WriteFrequency) -> String { writeFrequencies.first { $0.1 == frequency }!.0 }
    static let writeFrequencies: [(String, WriteFrequency)] = [("end-of-service", .endOfService), ("manual", .manual), ("time-based", .timeBased)]

    /// The environment variable that sets the key at `path`: `DRS_` and the path in upper
    /// snake case (`sessions.maxAttributeBytes` is `DRS_SESSIONS_MAX_ATTRIBUTE_BYTES`).
    static func environmentName(_ path: String) -> String {
        var out = "DRS_"
        for c in path {
            if c == "." { out.append("_") } else if c.isUppercase { out.append("_"); out.append(c) } else { out.append(contentsOf: c.uppercased()) }
        }
        return out
    }

    /// `path` as given when absolute, else inside `directory`.
    static func resolve(_ path: String, in directory: String) -> String {
        path.hasPrefix("/") || directory == "." ? path : directory + "/" + path
    }

    /// What is wrong with a file the configuration names.
    struct Problem: Error {
        var message: String
        init(_ message: String) { self.message = message }
    }

    /// Most bytes a key file may hold: one base64 key and some whitespace.
    static let maxKeyFileBytes = 4096

    /// The 32-byte key in the regular file at `path` (base64, surrounding whitespace
    /// ignored); the problem as text otherwise. Reads at most `maxKeyFileBytes`.
    static func readKeyFile(_ path: String) -> Result<[UInt8], Problem> {
        guard let attributes = try? FileManager.default.attributesOfItem(atPath: path) else {
            return .failure(Problem("cannot read \"\(path)\": no such file or no permission"))
        }
        guard attributes[.type] as? FileAttributeType == .typeRegular else { return .failure(Problem("\"\(path)\" is not a regular file")) }
        guard let size = attributes[.size] as? Int, size <= maxKeyFileBytes else {
            return .failure(Problem("\"\(path)\" is larger than \(maxKeyFileBytes) bytes; expected one base64 key from `drs keygen`"))
        }
        guard let data = FileManager.default.contents(atPath: path) else { return .failure(Problem("cannot read \"\(path)\"")) }
        let text = String(decoding: data.prefix(maxKeyFileBytes), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        guard let key = Data(base64Encoded: text), key.count == 32 else {
            return .failure(Problem("expected \"\(path)\" to hold base64 of exactly 32 bytes (`drs keygen --out \(path)`), found something else"))
        }
        return .success([UInt8](key))
    }

    /// The canonical text of an IPv4 or IPv6 literal, or `nil` when `address` is not one.
    static func normalizedAddress(_ address: String) -> String? { (try? SocketAddress(ipAddress: address, port: 0))?.ipAddress }
    static func isWildcard(_ host: String) -> Bool { host == "0.0.0.0" || host == "::" }
    static func isLoopback(_ address: String) -> Bool {
        guard let host = normalizedAddress(address) else {
            // A name may resolve to anything: only `localhost` counts as loopback.
            return address.lowercased() == "localhost" || !isHostName(address)  // a bad address is reported as such
        }
        return host.hasPrefix("127.") || host == "::1"
    }
    /// Whether `node` is reachable beyond loopback: its address or its listen address is.
    static func isExposed(_ node: NodeEndpoint) -> Bool { !isLoopback(node.address) || !isLoopback(node.listenAddress) }
    /// Names the field that exposes `node` (the `index`th), for an error message.
    static func exposure(_ node: NodeEndpoint, at index: Int) -> String {
        isLoopback(node.address) ? "nodes[\(index)].bind \(node.listenAddress)" : "nodes[\(index)].address \(node.address)"
    }
    /// Whether `text` is a DNS host name (RFC 1123): dot-separated labels of letters,
    /// digits and inner hyphens, 1-63 characters each, 253 in all, not all digits at the
    /// end (so a mistyped IPv4 literal is not taken for a name).
    static func isHostName(_ text: String) -> Bool {
        let name = text.hasSuffix(".") ? String(text.dropLast()) : text
        guard !name.isEmpty, name.utf8.count <= 253 else { return false }
        let labels = name.split(separator: ".", omittingEmptySubsequences: false)
        for label in labels {
            guard (1...63).contains(label.utf8.count), label.first != "-", label.last != "-",
                  label.utf8.allSatisfy({ $0 == UInt8(ascii: "-") || (48...57).contains($0) || (65...90).contains($0) || (97...122).contains($0) })
            else { return false }
        }
        return !labels.last!.allSatisfy(\.isASCIIDigit)
    }
}

private extension Character {
    var isASCIIDigit: Bool { ("0"..."9").contains(self) }
}

/// How to read one kind of value from a YAML node, and how to say what was expected.
private struct Kind<T> {
    var expected: String
    var read: (Node) -> T?
    /// Describes a rejected node; the default quotes it, keys must not be echoed.
    var found: (Node) -> String = Kind.describe

    static func describe(_ node: Node) -> String {
        switch node {
        case .scalar(let s) where Kind.isNull(node): return s.string.isEmpty ? "nothing" : s.string
        case .scalar(let s): return "\"\(s.string.count > 60 ? String(s.string.prefix(57)) + "..." : s.string)\""
        case .mapping: return "a mapping"
        case .sequence: return "a list"
        case .alias: return "an alias"
        }
    }

    static func isNull(_ node: Node) -> Bool {
        guard case .scalar(let s) = node, s.style == .plain || s.style == .any else { return false }
        return ["", "~", "null", "Null", "NULL"].contains(s.string)
    }

    /// The text of a non-null scalar.
    static func text(_ node: Node) -> String? {
        guard case .scalar(let s) = node, !isNull(node) else { return nil }
        return s.string
    }
}

extension Kind where T == String {
    static var string: Kind { Kind(expected: "a string", read: text) }
}

extension Kind where T == Bool {
    static var bool: Kind {
        Kind(expected: "true or false") { node in
            switch text(node) {
            case "true", "True", "TRUE": true
            case "false", "False", "FALSE": false
            default: nil
            }
        }
    }
}

extension Kind where T == Int {
    static func int(_ range: ClosedRange<Int>) -> Kind {
        let bounds = range.upperBound == .max ? ">= \(range.lowerBound)" : "from \(range.lowerBound) to \(range.upperBound)"
        return Kind(expected: "a whole number \(bounds)") { node in
            text(node).flatMap { Int($0.replacingOccurrences(of: "_", with: "")) }.flatMap { range.contains($0) ? $0 : nil }
        }
    }
    static var port: Kind { int(0...65535) }
    static var size: Kind { Kind(expected: "a size in bytes, or with a unit B, KiB, MiB or GiB (such as 64KiB)") { text($0).flatMap(ConfigSyntax.size) } }
}

extension Kind where T == Duration {
    static var duration: Kind { Kind(expected: "a duration with a unit ms, s, m or h (such as 200ms, 1.5s, 30m)") { text($0).flatMap(ConfigSyntax.duration) } }
}

extension Kind where T == [UInt8] {
    /// A 32-byte key in base64; a rejected value is described by its length only.
    static var key: Kind {
        Kind(
            expected: "base64 of exactly 32 bytes (`head -c32 /dev/urandom | base64`)",
            read: { text($0).flatMap { Data(base64Encoded: $0) }.flatMap { $0.count == 32 ? [UInt8]($0) : nil } },
            found: { node in text(node).flatMap { Data(base64Encoded: $0) }.map { "\($0.count) bytes" } ?? (text(node) == nil ? describe(node) : "text that is not base64") }
        )
    }
}

extension Kind where T == ReplicaCount {
    static var replicas: Kind {
        Kind(expected: "a whole number >= 0 or `all`") { node in
            text(node) == "all" ? ReplicaCount.all : Kind<Int>.int(0...Int.max).read(node).map(ReplicaCount.count)
        }
    }
}

extension Kind {
    static func oneOf(_ choices: [(String, T)]) -> Kind {
        Kind(expected: "one of " + choices.map(\.0).joined(separator: ", ")) { node in
            text(node).flatMap { name in choices.first { $0.0 == name }?.1 }
        }
    }
}

extension Kind where T: RawRepresentable & CaseIterable, T.RawValue == String {
    static var choice: Kind { oneOf(T.allCases.map { ($0.rawValue, $0) }) }
}

/// One mapping of the file: rejects unknown keys and reads typed values, naming exact paths.
private struct Section {
    let file: String
    let path: String
    private var values: [String: Node] = [:]

    /// `node` nil means the section is absent (all defaults). A key set in `environment`
    /// (`DRS_` and its path in upper snake case) replaces the file's value.
    /// Keys in `ignoringFile` keep no value from the file (the environment replaces them).
    init(_ node: Node?, path: String, file: String, keys: [String], environment: [String: String] = [:],
         ignoringFile: Set<String> = []) throws(ConfigurationError) {
        self.file = file
        self.path = path
        try read(node, keys: keys)
        for key in ignoringFile { values[key] = nil }
        for key in keys {
            guard let text = environment[ConfigSyntax.environmentName(field(key))] else { continue }
            values[key] = (try? compose(yaml: text)) ?? Node.scalar(.init(text))
        }
    }

    private mutating func read(_ node: Node?, keys: [String]) throws(ConfigurationError) {
        guard let node, !Kind<Void>.isNull(node) else { return }
        guard case .mapping(let mapping) = node else {
            throw ConfigurationError(file: file, field: path, message: "expected a mapping with keys \(keys.joined(separator: ", ")), found \(Kind<Void>.describe(node))")
        }
        for (key, value) in mapping {
            guard let name = Kind<Void>.text(key) else {
                throw ConfigurationError(file: file, field: path, message: "expected plain key names, found \(Kind<Void>.describe(key))")
            }
            guard keys.contains(name) else {
                throw ConfigurationError(file: file, field: field(name), message: "unknown key `\(field(name))`; expected one of \(keys.joined(separator: ", "))")
            }
            values[name] = value
        }
    }

    func field(_ key: String) -> String { path.isEmpty ? key : "\(path).\(key)" }
    func node(_ key: String) -> Node? { values[key] }

    func read<T>(_ node: Node, _ field: String, _ kind: Kind<T>) throws(ConfigurationError) -> T {
        if let value = kind.read(node) { return value }
        throw ConfigurationError(file: file, field: field, message: "expected \(kind.expected), found \(kind.found(node))")
    }

    /// The value of `key`, or `nil` when absent.
    func get<T>(_ key: String, _ kind: Kind<T>) throws(ConfigurationError) -> T? {
        guard let node = values[key] else { return nil }
        return try read(node, field(key), kind)
    }

    /// The value of `key`; throws when absent.
    func required<T>(_ key: String, _ kind: Kind<T>) throws(ConfigurationError) -> T {
        guard let value = try get(key, kind) else {
            throw ConfigurationError(file: file, field: field(key), message: "required, expected \(kind.expected), found nothing")
        }
        return value
    }

    /// Overwrites `target` when `key` is present.
    func set<T>(_ target: inout T, _ key: String, _ kind: Kind<T>) throws(ConfigurationError) {
        if let value = try get(key, kind) { target = value }
    }

    /// Overwrites an optional `target` when `key` is present; `null` clears it.
    func set<T>(_ target: inout T?, _ key: String, _ kind: Kind<T>) throws(ConfigurationError) {
        guard let node = values[key] else { return }
        if Kind<T>.isNull(node) { target = nil } else { target = try read(node, field(key), kind) }
    }

    /// The items of the list at `key` with their paths (`key[i]`), or `nil` when absent.
    func list(_ key: String) throws(ConfigurationError) -> [(field: String, node: Node)]? {
        guard let node = values[key] else { return nil }
        guard case .sequence(let items) = node else {
            throw ConfigurationError(file: file, field: field(key), message: "expected a list, found \(Kind<Void>.describe(node))")
        }
        return items.enumerated().map { ("\(field(key))[\($0.offset)]", $0.element) }
    }

    func list<T>(_ key: String, _ kind: Kind<T>) throws(ConfigurationError) -> [T]? {
        guard let items = try list(key) else { return nil }
        var values: [T] = []
        for item in items { values.append(try read(item.node, item.field, kind)) }
        return values
    }
}

/// Builds a `ClusterConfiguration` from the YAML tree, types and keys only (`validate` does the rest).
private struct ConfigReader {
    let file: String
    var environment: [String: String] = [:]
    var directory = "."

    func section(_ node: Node?, _ path: String, _ keys: [String], ignoringFile: Set<String> = []) throws(ConfigurationError) -> Section {
        try Section(node, path: path, file: file, keys: keys, environment: environment, ignoringFile: ignoringFile)
    }

    func configuration(_ root: Node?) throws(ConfigurationError) -> ClusterConfiguration {
        let top = try Section(root, path: "", file: file, keys: ["cluster", "nodes", "replication", "membership", "sessions", "http"])

        // A key from the environment replaces every key source of the file (`key`,
        // `keyFile`, `insecure`): `drs cluster up` hands its nodes a fresh key this way.
        let keyFromEnvironment = environment["DRS_CLUSTER_KEY"] != nil || environment["DRS_CLUSTER_KEY_FILE"] != nil
        let c = try section(top.node("cluster"), "cluster", ["id", "key", "keyFile", "keyring", "insecure"],
                            ignoringFile: keyFromEnvironment ? ["key", "keyFile", "insecure"] : [])
        var keys = ClusterKeys(current: try c.get("key", .key), keyring: try c.list("keyring", .key) ?? [])
        try c.set(&keys.insecure, "insecure", .bool)
        if let path = try c.get("keyFile", .string) {
            guard keys.current == nil else {
                throw ConfigurationError(file: file, field: "cluster.keyFile", message: "give either `key` or `keyFile`, found both")
            }
            let resolved = ConfigSyntax.resolve(path, in: directory)
            switch ConfigSyntax.readKeyFile(resolved) {
            case .success(let key): keys.current = key
            case .failure(let problem): throw ConfigurationError(file: file, field: "cluster.keyFile", message: problem.message)
            }
            keys.keyFile = resolved
        }
        var config = ClusterConfiguration(clusterID: try c.required("id", .string), keys: keys, nodes: [])

        guard let nodes = try top.list("nodes") else {
            throw ConfigurationError(file: file, field: "nodes", message: "required, expected a list of nodes ({name, address, bind, httpPort, replicationPort, membershipPort}), found nothing")
        }
        for item in nodes {
            let n = try section(item.node, item.field, ["name", "address", "bind", "httpPort", "replicationPort", "membershipPort", "role"])
            var node = NodeEndpoint(name: try n.required("name", .string))
            try n.set(&node.address, "address", .string)
            try n.set(&node.bind, "bind", .string)
            try n.set(&node.httpPort, "httpPort", .port)
            try n.set(&node.replicationPort, "replicationPort", .port)
            try n.set(&node.membershipPort, "membershipPort", .port)
            try n.set(&node.role, "role", .choice)
            config.nodes.append(node)
        }

        let r = try section(top.node("replication"), "replication", [
            "replicas", "role", "mode", "minSyncReplicas", "transport", "writeFrequency", "writeInterval", "writeContents",
            "retryCount", "retryInterval", "syncTimeout", "onSyncTimeout", "repairInterval", "affinity",
            "takeoverCooldown", "handoverTimeout", "drainTimeout", "maxQueueBytes", "udpMaxPayload", "udpWindow", "udpRate", "reorderFrames", "reorderDelay",
        ])
        try r.set(&config.replication.replicas, "replicas", .replicas)
        try r.set(&config.replication.role, "role", .choice)
        try r.set(&config.replication.mode, "mode", .choice)
        try r.set(&config.replication.minSyncReplicas, "minSyncReplicas", .int(1...Int.max))
        try r.set(&config.replication.transport, "transport", .choice)
        try r.set(&config.replication.writeFrequency, "writeFrequency", .oneOf(ConfigSyntax.writeFrequencies))
        try r.set(&config.replication.writeInterval, "writeInterval", .duration)
        try r.set(&config.replication.writeContents, "writeContents", .choice)
        try r.set(&config.replication.retryCount, "retryCount", .int(0...Int.max))
        try r.set(&config.replication.retryInterval, "retryInterval", .duration)
        try r.set(&config.replication.syncTimeout, "syncTimeout", .duration)
        try r.set(&config.replication.onSyncTimeout, "onSyncTimeout", .choice)
        try r.set(&config.replication.repairInterval, "repairInterval", .duration)
        try r.set(&config.replication.affinity, "affinity", .choice)
        try r.set(&config.replication.takeoverCooldown, "takeoverCooldown", .duration)
        try r.set(&config.replication.handoverTimeout, "handoverTimeout", .duration)
        try r.set(&config.replication.drainTimeout, "drainTimeout", .duration)
        try r.set(&config.replication.maxQueueBytes, "maxQueueBytes", .size)
        try r.set(&config.replication.udpMaxPayload, "udpMaxPayload", .int(ConfigSyntax.udpPayload))
        try r.set(&config.replication.udpWindow, "udpWindow", .int(1...Int.max))
        try r.set(&config.replication.udpRate, "udpRate", .int(1...Int.max))
        try r.set(&config.replication.reorderFrames, "reorderFrames", .int(1...Int.max))
        try r.set(&config.replication.reorderDelay, "reorderDelay", .duration)

        let m = try section(top.node("membership"), "membership", ["probeInterval", "lease", "promotion", "tombstoneTTL"])
        try m.set(&config.membership.probeInterval, "probeInterval", .duration)
        try m.set(&config.membership.lease, "lease", .duration)
        try m.set(&config.membership.promotion, "promotion", .choice)
        try m.set(&config.membership.tombstoneTTL, "tombstoneTTL", .duration)

        let s = try section(top.node("sessions"), "sessions", [
            "maxInactiveInterval", "backupGrace", "transientAttributes", "maxAttributeBytes", "maxSessionBytes",
            "maxSessions", "maxAttributes", "maxBytes", "accessReplicationInterval",
        ])
        try s.set(&config.sessions.maxInactiveInterval, "maxInactiveInterval", .duration)
        try s.set(&config.sessions.backupGrace, "backupGrace", .duration)
        config.sessions.transientAttributes = try s.list("transientAttributes", .string) ?? []
        try s.set(&config.sessions.maxAttributeBytes, "maxAttributeBytes", .size)
        try s.set(&config.sessions.maxSessionBytes, "maxSessionBytes", .size)
        try s.set(&config.sessions.maxSessions, "maxSessions", .int(1...Int.max))
        try s.set(&config.sessions.maxAttributes, "maxAttributes", .int(0...Int.max))
        try s.set(&config.sessions.maxBytes, "maxBytes", .size)
        try s.set(&config.sessions.accessReplicationInterval, "accessReplicationInterval", .duration)

        let h = try section(top.node("http"), "http", ["cookieName", "secureCookie", "token", "idleTimeout", "maxConnections", "tls"])
        try h.set(&config.http.cookieName, "cookieName", .string)
        try h.set(&config.http.secureCookie, "secureCookie", .bool)
        try h.set(&config.http.token, "token", .string)
        try h.set(&config.http.idleTimeout, "idleTimeout", .duration)
        try h.set(&config.http.maxConnections, "maxConnections", .int(1...Int.max))
        let t = try section(h.node("tls"), "http.tls", ["certificate", "key"])
        let certificate = try t.get("certificate", .string), tlsKey = try t.get("key", .string)
        switch (certificate, tlsKey) {
        case (nil, nil): break
        case (let cert?, let key?):
            config.http.tls = HTTPTLSFiles(certificate: ConfigSyntax.resolve(cert, in: directory), key: ConfigSyntax.resolve(key, in: directory))
        case (nil, _):
            throw ConfigurationError(file: file, field: "http.tls.certificate", message: "required with http.tls.key, expected a PEM file path, found nothing")
        case (_, nil):
            throw ConfigurationError(file: file, field: "http.tls.key", message: "required with http.tls.certificate, expected a PEM file path, found nothing")
        }
        return config
    }
}
