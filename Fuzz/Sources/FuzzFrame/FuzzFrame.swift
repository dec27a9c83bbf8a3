import FuzzEntry
import SessionReplicationCore

/// A frame as a receiver reads it: header, then the body message by message (and whole).
/// Any input must decode or throw `DecodeError`; a crash or a sanitizer report is a bug.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzFrame(_ start: UnsafePointer<UInt8>, _ count: Int) -> CInt {
    let raw = UnsafeRawBufferPointer(start: start, count: count)
    let limits = WireLimits()
    var r = ByteReader(raw)
    if (try? FrameHeader.decode(&r, maxBodyBytes: limits.maxFrameBytes)) != nil {
        let body = UnsafeRawBufferPointer(rebasing: raw[r.offset...])
        _ = try? FrameBody.decodeEach(body, limits: limits)
    }
    // The body decoder on its own, so bodies need no valid header in front.
    if let each = try? FrameBody.decodeEach(raw, limits: limits) {
        for m in each.data { precondition(m.message.isSequenced, "a control message among the data") }
        for m in each.control { precondition(!m.message.isSequenced, "a data message among the control") }
        // What decoded encodes and decodes to the same.
        for m in each.data + each.control {
            precondition((try? MessageCodec.decode(MessageCodec.encode(m.message))) == m.message, "round trip")
        }
    }
    return 0
}
