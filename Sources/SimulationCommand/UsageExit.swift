import ArgumentParser
import Foundation

extension ParsableCommand {
    /// Ends the process for `error`, thrown while parsing or running this command: a usage
    /// error (ArgumentParser's validation failure, or its exit code 64) prints the message
    /// and usage as ArgumentParser would and exits 2, the code the `drs` command contract
    /// gives bad usage; any other error exits as ArgumentParser decides (1 by default, or
    /// the `ExitCode` thrown). Shared by `drs` and `drs-simulate`.
    public static func exitMappingUsageToTwo(_ error: any Error) -> Never {
        let code = exitCode(for: error)
        if code == .validationFailure || code.rawValue == 64 {
            let message = fullMessage(for: error)
            if !message.isEmpty { FileHandle.standardError.write(Data((message + "\n").utf8)) }
            Foundation.exit(2)
        }
        exit(withError: error)
    }
}
