import FuzzEntry
import SessionReplication

/// A configuration file's text. Any input must parse or throw `ConfigurationError`
/// (never trap), whatever it holds: YAML of any shape, sizes, durations, keys, addresses.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzConfig(_ start: UnsafePointer<UInt8>, _ count: Int) -> CInt {
    let text = String(decoding: UnsafeRawBufferPointer(start: start, count: count), as: UTF8.self)
    if let config = try? ClusterConfiguration.parse(yaml: text, file: "fuzz.yaml") {
        _ = config.warnings
    }
    return 0
}
