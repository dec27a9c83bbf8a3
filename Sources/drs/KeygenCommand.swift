import ArgumentParser
import Foundation
import SessionReplication

/// `drs keygen [--out FILE]`: a fresh cluster key (32 random bytes, base64) on standard
/// output, or in a new file of mode 0600 for `cluster.keyFile`.
struct KeygenCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "keygen", abstract: "Make a fresh cluster key (base64 of 32 random bytes).",
        discussion: """
        Give it to every node as `cluster.key`, as `cluster.keyFile` (the file --out writes, \
        mode 0600) or as DRS_CLUSTER_KEY. To rotate, move the old key into `cluster.keyring` \
        on every node, then make the new one `cluster.key` node by node; drop the old one once \
        every node seals with the new one.
        """)

    @Option(help: "Write the key to this new file (mode 0600) instead of standard output.")
    var out: String?

    @Flag(help: "Replace the file given with --out if it exists.")
    var force = false

    func run() async throws {
        let key = ClusterKeys.generateKey()
        guard let out else {
            print(Data(key).base64EncodedString())
            return
        }
        do {
            try ClusterKeys.writeKeyFile(key, to: out, replace: force)
        } catch {
            printError("drs keygen: \(error)\(error.reason == "File exists" ? " (--force replaces it)" : "")")
            throw ExitCode(1)
        }
        print("wrote a new cluster key to \(out) (mode 0600); name it in the configuration as `keyFile: \(out)`")
    }
}
