import NIOCore
import SessionReplicationCore

/// Builds and parses replication frames: header, body, seal. TCP frames carry a 4-byte
/// little-endian length prefix; datagrams do not.
struct FrameCodec: Sendable {
    let sealer: FrameSealer
    let selfName: String
    let limits: WireLimits

    /// Encodes one frame into `buffer`.
    func encode(lane: UInt16, firstSequence: UInt64, lowWatermark: UInt64, body: [UInt8], datagram: Bool,
                into buffer: inout ByteBuffer) {
        let counter = sealer.nextCounter()
        var flags: FrameHeader.Flags = datagram ? [.datagram] : []
        if sealer.sealing { flags.insert(.sealed) }
        let bodyLength = body.count + (sealer.sealing ? 16 : 0)
        let header = FrameHeader(flags: flags, senderName: selfName, clusterTag: sealer.clusterTag, sender: sealer.selfID,
                                 keyFingerprint: sealer.currentFingerprint, counter: counter, lane: lane,
                                 firstSequence: firstSequence, lowWatermark: lowWatermark, bodyLength: UInt32(bodyLength))
        var w = ByteWriter(capacity: header.encodedSize)
        header.encode(into: &w)
        buffer.reserveCapacity(minimumWritableBytes: 4 + w.bytes.count + bodyLength)
        if !datagram { buffer.writeInteger(UInt32(w.bytes.count + bodyLength), endianness: .little) }
        buffer.writeBytes(w.bytes)
        if sealer.sealing {
            sealer.seal(body: body, headerBytes: w.bytes, counter: counter, into: &buffer)
        } else {
            buffer.writeBytes(body)
        }
    }

    /// Decodes one frame (without length prefix). Checks cluster, seal and body; replay
    /// is checked by the caller, which holds the per-sender windows.
    func decode(_ buffer: ByteBuffer, datagram: Bool) -> Result<(FrameHeader, FrameBody), FrameRejection> {
        buffer.withUnsafeReadableBytes { raw -> Result<(FrameHeader, FrameBody), FrameRejection> in
            var r = ByteReader(raw)
            let header: FrameHeader
            do {
                header = try FrameHeader.decode(&r, maxBodyBytes: limits.maxFrameBytes)
            } catch let error as DecodeError {
                if case .tooLarge = error { return .failure(.oversized) }
                return .failure(.malformed)
            } catch {
                return .failure(.malformed)
            }
            guard header.clusterTag == sealer.clusterTag else { return .failure(.wrongCluster) }
            guard header.flags.contains(.datagram) == datagram else { return .failure(.malformed) }
            guard header.senderName != selfName, header.sender != sealer.selfID else { return .failure(.selfSent) }
            let headerBytes = UnsafeRawBufferPointer(rebasing: raw[0..<r.offset])
            let bodyBytes = UnsafeRawBufferPointer(rebasing: raw[r.offset...])
            let decoded: Result<FrameBody, DecodeError>
            if sealer.sealing {
                guard header.flags.contains(.sealed) else { return .failure(.sealMismatch) }
                guard let plain = sealer.open(body: bodyBytes, header: header, headerBytes: headerBytes) else { return .failure(.badSeal) }
                decoded = plain.withUnsafeBytes { p in Result { () throws(DecodeError) in try FrameBody.decode(p, limits: limits) } }
            } else {
                guard !header.flags.contains(.sealed) else { return .failure(.sealMismatch) }
                decoded = Result { () throws(DecodeError) in try FrameBody.decode(bodyBytes, limits: limits) }
            }
            switch decoded {
            case .success(let body): return .success((header, body))
            case .failure(.tooLarge): return .failure(.oversized)
            case .failure: return .failure(.malformed)
            }
        }
    }
}
