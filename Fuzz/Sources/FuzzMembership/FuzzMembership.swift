import FuzzEntry
import SessionReplicationCore

/// One membership message. Any input must decode or throw `DecodeError`; what decodes
/// must encode and decode to the same message.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzMembership(_ start: UnsafePointer<UInt8>, _ count: Int) -> CInt {
    let input = [UInt8](UnsafeRawBufferPointer(start: start, count: count))
    guard let message = try? MembershipCodec.decode(input) else { return 0 }
    precondition((try? MembershipCodec.decode(MembershipCodec.encode(message))) == message, "round trip")
    return 0
}
