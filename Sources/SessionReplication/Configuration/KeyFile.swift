import Foundation
#if canImport(Glibc)
import Glibc
#endif

extension ClusterKeys {
    /// 32 bytes from the system's CSPRNG: a fresh cluster key.
    public static func generateKey() -> [UInt8] {
        var rng = SystemRandomNumberGenerator()
        return (0..<32).map { _ in UInt8.random(in: .min ... .max, using: &rng) }
    }

    /// Writes `key` as base64 and a newline to a new file at `path`, readable by its owner
    /// only (mode 0600), as `cluster.keyFile` reads it. Refuses an existing file unless
    /// `replace`; then the file is replaced whole (written aside and renamed). Throws a
    /// `KeyFileError` naming the path and the system's reason.
    public static func writeKeyFile(_ key: [UInt8], to path: String, replace: Bool = false) throws(KeyFileError) {
        let text = Array((Data(key).base64EncodedString() + "\n").utf8)
        let target = replace ? path + ".tmp-\(getpid())" : path
        let fd = open(target, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw KeyFileError(path: path, reason: String(cString: strerror(errno))) }
        let written = text.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        let failure = written == text.count ? nil : String(cString: strerror(errno))
        close(fd)
        if let failure {
            unlink(target)
            throw KeyFileError(path: path, reason: failure)
        }
        if replace, rename(target, path) != 0 {
            let reason = String(cString: strerror(errno))
            unlink(target)
            throw KeyFileError(path: path, reason: reason)
        }
    }
}

/// A key file could not be written.
public struct KeyFileError: Error, CustomStringConvertible, Sendable {
    /// The file.
    public var path: String
    /// The system's reason (`File exists`, `Permission denied`, ...).
    public var reason: String
    /// `cannot write key file PATH: REASON`.
    public var description: String { "cannot write key file \(path): \(reason)" }
}
