#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import NIOCore
import NIOPosix

/// Turns a configured address (an IP literal or a DNS host name) into the IP addresses
/// it names, through the system resolver (`getaddrinfo`, so `/etc/hosts`, DNS and search
/// domains apply as for any program on the host).
enum HostResolver {
    /// The IP addresses `host` names, in the resolver's order (IPv4 and IPv6, each once):
    /// a literal is returned as it is (canonical form) without asking the resolver. A name
    /// is resolved on NIO's blocking-I/O thread pool, so no event loop waits on it.
    /// Throws `ResolutionError` naming the host when it resolves to nothing.
    static func resolve(_ host: String) async throws -> [String] {
        if let literal = try? SocketAddress(ipAddress: host, port: 0) { return [literal.ipAddress!] }
        return try await NIOThreadPool.singleton.runIfActive { try lookUp(host) }
    }

    /// A name that resolved to nothing, with the resolver's reason.
    struct ResolutionError: Error, CustomStringConvertible {
        /// The name asked for.
        var host: String
        /// `gai_strerror`'s text.
        var reason: String
        var description: String { "cannot resolve \"\(host)\": \(reason)" }
    }

    private static func lookUp(_ host: String) throws -> [String] {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        #if canImport(Darwin)
        hints.ai_socktype = SOCK_DGRAM
        #else
        hints.ai_socktype = Int32(SOCK_DGRAM.rawValue)
        #endif
        var list: UnsafeMutablePointer<addrinfo>?
        let status = getaddrinfo(host, nil, &hints, &list)
        guard status == 0 else { throw ResolutionError(host: host, reason: String(cString: gai_strerror(status))) }
        defer { freeaddrinfo(list) }
        var out: [String] = []
        var cursor = list
        while let info = cursor {
            defer { cursor = info.pointee.ai_next }
            guard let raw = info.pointee.ai_addr else { continue }
            let address: SocketAddress?
            switch Int32(info.pointee.ai_family) {
            case AF_INET:
                address = raw.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { SocketAddress($0.pointee, host: host) }
            case AF_INET6:
                address = raw.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { SocketAddress($0.pointee, host: host) }
            default:
                address = nil
            }
            if let ip = address?.ipAddress, !out.contains(ip) { out.append(ip) }
        }
        guard !out.isEmpty else { throw ResolutionError(host: host, reason: "no IPv4 or IPv6 address") }
        return out
    }
}
