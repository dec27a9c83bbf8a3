import FuzzEntry
import SessionReplicationCore

/// One replication message. Any input must decode or throw `DecodeError`; what decodes
/// must encode and decode to the same message, with no stamp near the top of its range.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzMessage(_ start: UnsafePointer<UInt8>, _ count: Int) -> CInt {
    let input = [UInt8](UnsafeRawBufferPointer(start: start, count: count))
    guard let message = try? MessageCodec.decode(input) else { return 0 }
    precondition((try? MessageCodec.decode(MessageCodec.encode(message))) == message, "round trip")
    return 0
}
